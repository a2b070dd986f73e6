"""The hostile folder (tests/ingest/hostile.py) indexed end to end: every entry gets its one expected outcome,
nothing outside the folder is read, and the CLI prints every name as it is."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from rag.api import RAG
from rag.cli import main
from rag.core.pipeline import IndexingSettings, Pipeline
from rag.core.serialization import dump_pipeline
from rag.ingest.chunkers.recursive import RecursiveChunker
from rag.store.chunk_store import ChunkStore
from tests.fakes import HashRetriever
from tests.indexing_helpers import ALLOWED
from tests.ingest.hostile import LIMITS, SECRET, build, rewrite_during_run


def hostile_pipeline() -> Pipeline:
    return Pipeline(
        {"vec": HashRetriever()},
        inputs={"query": ["vec.query"], "top_k": ["vec.top_k"]},
        outputs={"hits": "vec.hits"},
        indexing=IndexingSettings(chunker=RecursiveChunker(chunk_size=400, chunk_overlap=0, unit="chars"), **LIMITS),
        name="hostile",
    )


def test_every_entry_of_the_hostile_folder_gets_its_outcome(tmp_path: Path) -> None:
    entries = build(tmp_path)
    docs, index = tmp_path / "docs", tmp_path / "indexes" / "hostile"
    rag = RAG(index, hostile_pipeline())

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "reading" and done == 1:
            rewrite_during_run(docs)

    report = rag.index(docs, progress=progress)
    store = ChunkStore.load(rag.folder.require_current())
    failed = {f["path"]: f["reason"] for f in report.failures}
    skipped = {s["path"]: s["reason"] for s in report.skipped}
    texts = {path: " ".join(c.text for c in store.chunks.values() if c.path == path) for path in store.files}
    wrong = []
    for entry in entries:
        if entry.outcome == "indexed":
            got = f"indexed: {texts[entry.path][:80]!r}" if entry.path in texts else "not indexed"
            ok = entry.reason in texts.get(entry.path, "")
        else:
            reasons = failed if entry.outcome == "failed" else skipped
            got = f"{entry.outcome}: {reasons[entry.path]}" if entry.path in reasons else "not " + entry.outcome
            ok = entry.path in reasons and re.search(entry.reason, reasons[entry.path]) is not None
        if not ok:
            wrong.append(f"{entry.path!r}: expected {entry.outcome} ({entry.reason}), got {got}")
    assert not wrong, f"{len(wrong)} of {len(entries)} entries wrong:\n" + "\n".join(wrong)
    assert len(entries) >= 30
    assert set(texts) | set(failed) | set(skipped) == {e.path for e in entries}  # nothing else, nothing unreported
    assert all(SECRET not in c.text for c in store.chunks.values())  # 0 files from outside the folder
    assert store.files["cp1252.txt"] and "cp1252" in str([c.metadata for c in store.chunks.values()])

    (docs / "zzz-rewritten.md").write_text("version A")  # changed back: the next run must see it
    rag.index(docs)
    store = ChunkStore.load(rag.folder.require_current())
    assert [c.text for c in store.chunks.values() if c.path == "zzz-rewritten.md"] == ["version A"]


def test_the_cli_prints_hostile_names_as_they_are(tmp_path: Path) -> None:
    build(tmp_path)
    index_dir = tmp_path / "indexes"
    (tmp_path / "hostile.yaml").write_text(dump_pipeline(hostile_pipeline()))
    where = ["--index", "h", "--index-dir", str(index_dir), "--pipeline", str(tmp_path / "hostile.yaml")]
    where += ["--allow", ALLOWED[0]]
    result = CliRunner().invoke(main, ["index", str(tmp_path / "docs"), "--json", *where])
    assert result.exit_code == 0, result.output
    for query, name in (("bracketed name", "notes[/x].md"), ("markup name", "[red]red.md")):
        result = CliRunner().invoke(main, ["query", query, *where])
        assert result.exit_code == 0, result.output
        assert name in result.output
    result = CliRunner().invoke(main, ["query", "emoji code name", *where])
    assert "root:x:0:0.md" in result.output and "❌" not in result.output
    result = CliRunner().invoke(main, ["query", "newline name", "--top-k", "50", *where])
    assert "line\\x0abreak.md" in result.output
