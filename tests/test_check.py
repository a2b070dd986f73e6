"""`rag check`: an index verified against itself and its folder, and repaired (rag.check)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rag.api import RAG
from rag.check import check_index
from rag.cli import main
from rag.core.pipeline import IndexingSettings, Pipeline
from rag.ingest.chunkers.recursive import RecursiveChunker
from rag.retrieve.bm25 import BM25Retriever
from rag.store.index_folder import IndexFolder
from tests.indexing_helpers import ALLOWED, check_consistent, fake_pipeline, make_corpus


def built(tmp_path: Path, count: int = 4) -> tuple[Path, Path]:
    docs, index = tmp_path / "docs", tmp_path / "indexes" / "idx"
    make_corpus(docs, count)
    RAG(index, fake_pipeline()).index(docs)
    return docs, index


def kinds(report: object) -> list[tuple[str, str]]:
    return [(p.check, p.repair) for p in report.problems]  # type: ignore[attr-defined]


def test_a_fresh_index_is_ok_and_the_cli_says_so(tmp_path: Path) -> None:
    _, index = built(tmp_path)
    report = check_index(index, allowed=ALLOWED)
    assert report.ok and report.counts["files"] == 4 and report.counts["retrievers"]["vec"] == report.counts["chunks"]
    result = CliRunner().invoke(
        main, ["check", "--index", "idx", "--index-dir", str(index.parent), "--allow", ALLOWED[0], "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["ok"] is True


def test_drift_from_the_folder_is_found_and_reindexed(tmp_path: Path) -> None:
    docs, index = built(tmp_path)
    (docs / "new.md").write_text("# New\n\nA new page about comets.")
    (docs / "doc0.md").write_text("# Doc 0\n\nRewritten about asteroids.")
    (docs / "doc1.md").unlink()
    os.utime(docs / "doc2.md", (1, 1))  # touched, same content: not drift
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 broken")
    RAG(index, fake_pipeline()).index(docs)  # the broken PDF is recorded as unreadable...
    (docs / "later.md").write_text("# Later\n\nWritten after the run.")  # ...and this one is new
    (docs / "doc3.md").write_text("# Doc 3\n\nChanged after the run.")
    report = check_index(index, allowed=ALLOWED)
    assert kinds(report) == [("folder", "reindex")]
    assert report.drift == {"new": ["later.md"], "changed": ["doc3.md"], "gone": []}
    assert [f["path"] for f in report.unreadable] == ["broken.pdf"]
    repaired = check_index(index, allowed=ALLOWED, repair=True)
    assert repaired.ok and [p.check for p in repaired.before] == ["folder"]
    assert repaired.repaired is not None and repaired.repaired.added == 1 and repaired.repaired.changed == 1
    check_consistent(index)


def test_a_retriever_that_lost_chunks_is_rebuilt(tmp_path: Path) -> None:
    _, index = built(tmp_path)
    component = IndexFolder(index).require_current() / "components" / "vec"
    ids = json.loads((component / "ids.json").read_text())
    os.remove(component / "ids.json")  # generations share files by hard links: write a new file, never in place
    (component / "ids.json").write_text(json.dumps([*ids[1:], "ghost"]))
    result = CliRunner().invoke(
        main, ["check", "--index", "idx", "--index-dir", str(index.parent), "--allow", ALLOWED[0]]
    )
    assert result.exit_code == 1
    assert "retriever vec: 1 chunk(s) missing, 1 unknown, 0 repeated (repair: rebuild)" in result.output
    assert "rag check --repair" in result.output
    result = CliRunner().invoke(
        main, ["check", "--index", "idx", "--index-dir", str(index.parent), "--allow", ALLOWED[0], "--repair"]
    )
    assert result.exit_code == 0, result.output
    assert "repaired: rebuilt from the folder" in result.output and result.output.endswith("ok\n")
    check_consistent(index)


def test_a_damaged_chunk_store_and_leftovers_are_problems(tmp_path: Path) -> None:
    _, index = built(tmp_path)
    generation = IndexFolder(index).require_current()
    (index / "tmp-000009-killed").mkdir()
    chunks = generation / "chunks.parquet"
    data = chunks.read_bytes()
    os.remove(chunks)
    chunks.write_bytes(data[: len(data) // 2])
    report = check_index(index, allowed=ALLOWED)
    assert kinds(report) == [("pointer", "reindex"), ("chunks", "rebuild")]
    assert "tmp-000009-killed" in report.problems[0].detail
    repaired = check_index(index, allowed=ALLOWED, repair=True)
    assert repaired.ok and not (index / "tmp-000009-killed").exists()


def test_a_real_bm25_index_missing_a_file_record_is_found(tmp_path: Path) -> None:
    docs, index = tmp_path / "docs", tmp_path / "idx"
    make_corpus(docs, 3)
    pipeline = Pipeline(
        {"bm25": BM25Retriever()},
        inputs={"query": ["bm25.query"]},
        outputs={"hits": "bm25.hits"},
        indexing=IndexingSettings(chunker=RecursiveChunker(chunk_size=120, chunk_overlap=20, unit="chars")),
        name="bm25",
    )
    RAG(index, pipeline).index(docs)
    assert check_index(index).ok
    generation = IndexFolder(index).require_current()
    files = pq.read_table(generation / "files.parquet")
    os.remove(generation / "files.parquet")
    pq.write_table(files.slice(1), generation / "files.parquet")  # one file's record lost, its chunks kept
    report = check_index(index)
    assert ("chunks", "rebuild") in kinds(report) and ("manifest", "rebuild") in kinds(report)
    assert check_index(index, repair=True).ok


def test_an_index_whose_folder_is_gone_cannot_be_repaired(tmp_path: Path) -> None:
    docs, index = built(tmp_path)
    for path in docs.iterdir():
        path.unlink()
    docs.rmdir()
    report = check_index(index, allowed=ALLOWED, repair=True)
    assert [p.check for p in report.problems] == ["folder", "repair"]
    assert "rag index FOLDER --index idx --rebuild" in report.problems[1].detail


def test_no_index_is_an_error_not_a_repair(tmp_path: Path) -> None:
    from rag.core.errors import IndexNotFoundError

    with pytest.raises(IndexNotFoundError, match="no index at"):
        check_index(tmp_path / "nothing")
    result = CliRunner().invoke(main, ["check", "--index", "nothing", "--index-dir", str(tmp_path)])
    assert result.exit_code == 1 and "error: no index at" in result.output and "--repair" not in result.output


def test_a_damaged_pointer_is_rebuilt_with_the_newest_readable_generations_pipeline(tmp_path: Path) -> None:
    _, index = built(tmp_path)
    (index / "CURRENT").write_text("gen-000042")
    report = check_index(index, allowed=ALLOWED)
    assert kinds(report) == [("pointer", "rebuild")]
    repaired = check_index(index, allowed=ALLOWED, repair=True)  # from the newest generation it can read
    assert repaired.ok and repaired.repaired is not None and repaired.repaired.added == 4
    check_consistent(index)


def test_the_damaged_errors_advice_works_rag_index_rebuild(tmp_path: Path) -> None:
    docs, index = tmp_path / "docs", tmp_path / "indexes" / "idx"
    make_corpus(docs, 3)
    runner = CliRunner()
    where = ["--index", "idx", "--index-dir", str(index.parent)]
    assert runner.invoke(main, ["index", str(docs), *where, "--pipeline", "bm25"]).exit_code == 0
    (index / "CURRENT").write_text("gen-000042")
    damaged = runner.invoke(main, ["query", "topic1", *where])
    assert damaged.exit_code == 1 and "rag index PATH --rebuild" in damaged.output
    rebuilt = runner.invoke(main, ["index", str(docs), *where, "--rebuild"])  # the stored pipeline: bm25
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "doc1.md" in runner.invoke(main, ["query", "topic1", *where]).output
