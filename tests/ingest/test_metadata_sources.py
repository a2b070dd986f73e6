"""Metadata from outside a file, end to end through the real indexer and `RAG.query(filters=...)`: sidecar files
(`NAME.meta.json`, `NAME.meta.yaml`) and the pipeline's path rules (`indexing.metadata`), their precedence over and
under front matter, and exact incremental indexing (a metadata-only change commits new fields, embeds nothing)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rag.api import RAG
from rag.check import check_index
from rag.core.pipeline import IndexingSettings, Pipeline
from rag.core.types import Chunk
from rag.indexer import IndexReport
from rag.ingest.chunkers.recursive import RecursiveChunker
from rag.ingest.walk import walk_folder
from rag.retrieve.bm25 import BM25Retriever
from rag.store.chunk_store import ChunkStore
from rag.store.index_folder import IndexFolder

RULES = [{"match": "contracts/**", "fields": {"kind": "contract", "team": "legal"}}]


def pipeline(rules: Any = (), max_file_mb: float = 20.0) -> Pipeline:
    return Pipeline(
        {"bm25": BM25Retriever()},
        inputs=["query", "top_k"],
        indexing=IndexingSettings(
            chunker=RecursiveChunker(chunk_size=200, chunk_overlap=0, unit="chars"),
            metadata=rules,
            max_file_mb=max_file_mb,
        ),
        name="sidecars",
    )


def found(rag: RAG, filters: str | dict[str, Any]) -> list[str]:
    """The paths of the chunks that pass `filters` (every document says "terms"; a field no chunk has any more
    matches nothing)."""
    hits = rag.query("terms", top_k=50, filters=filters, allow_unknown_fields=True)
    return sorted({hit.chunk.path for hit in hits})


@pytest.fixture
def embedded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the chunks given to a retriever to index (embed), in this test."""
    given: list[str] = []
    add = BM25Retriever.add

    def counting(self: BM25Retriever, chunks: Sequence[Chunk]) -> None:
        given.extend(chunk.id for chunk in chunks)
        add(self, chunks)

    monkeypatch.setattr(BM25Retriever, "add", counting)
    return given


def store_of(index: Path) -> ChunkStore:
    return ChunkStore.load(IndexFolder(index).require_current())


def nothing_changed(report: IndexReport, files: int) -> bool:
    return not report.committed and report.unchanged == files and report.chunks_embedded == 0


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    (folder / "contracts").mkdir(parents=True)
    (folder / "report.txt").write_text("Quarterly report: terms of the quarter.")
    (folder / "report.txt.meta.json").write_text(json.dumps({"owner": "ana", "year": 2026, "tags": ["q3", "fin"]}))
    (folder / "notes.md").write_text("---\nkind: memo\nstatus: draft\n---\n# Notes\n\nterms in notes")
    (folder / "notes.md.meta.yaml").write_text("status: final\nreviewed: 2026-02-01\nnested: {a: 1}\n")
    (folder / "contracts" / "acme.md").write_text("# Acme\n\nterms of the acme contract")
    (folder / "contracts" / "beta.md").write_text("---\nkind: amendment\n---\n# Beta\n\nterms of beta")
    (folder / "contracts" / "beta.md.meta.yml").write_text("team: sales\n")
    (folder / "plain.txt").write_text("plain terms, nothing else")
    return folder


def test_sidecar_and_rule_fields_reach_filters_with_their_precedence(docs: Path, tmp_path: Path) -> None:
    rag = RAG(tmp_path / "idx", pipeline(RULES))
    report = rag.index(docs)
    assert report.added == 5 and report.failed == 0 and report.skipped == []
    assert set(store_of(tmp_path / "idx").files) == {
        "report.txt",
        "notes.md",
        "contracts/acme.md",
        "contracts/beta.md",
        "plain.txt",
    }  # no sidecar is a document
    assert found(rag, "owner == ana and year >= 2026 and tags in [fin]") == ["report.txt"]
    assert found(rag, "status == final") == ["notes.md"]  # the sidecar over the front matter
    assert found(rag, "kind == memo and reviewed >= 2026-01-15") == ["notes.md"]  # front matter kept, dates typed
    assert found(rag, "kind == contract") == ["contracts/acme.md"]  # beta's front matter over the rule
    assert found(rag, "kind == amendment and team == sales") == ["contracts/beta.md"]  # its sidecar over the rule
    assert found(rag, "team == legal") == ["contracts/acme.md"]
    assert found(rag, "nested exists") == []  # a mapping is no field, as in front matter
    assert found(rag, "path matches '*.json'") == []


def test_a_sidecar_title_is_the_document_title(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "scan.txt").write_text("terms scanned")
    (docs / "scan.txt.meta.json").write_text('{"title": "Master services agreement"}')
    (docs / "other.txt").write_text("other terms")
    rag = RAG(tmp_path / "idx", pipeline([{"match": "*.txt", "fields": {"title": "a rule cannot retitle"}}]))
    rag.index(docs)
    assert found(rag, "title == 'Master services agreement'") == ["scan.txt"]
    assert found(rag, "title == other") == ["other.txt"]  # the document's own title wins over a rule's


def test_a_sidecar_only_change_reindexes_metadata_without_embedding(
    docs: Path, tmp_path: Path, embedded: list[str]
) -> None:
    rag = RAG(tmp_path / "idx", pipeline())
    rag.index(docs)
    ids = {path: record.chunk_ids for path, record in store_of(tmp_path / "idx").files.items()}
    assert len(embedded) == 5
    embedded.clear()
    (docs / "report.txt.meta.json").write_text('{"owner": "bo", "year": 2026}')  # changed
    (docs / "plain.txt.meta.yaml").write_text("owner: bo\n")  # added
    (docs / "notes.md.meta.yaml").unlink()  # deleted: its front matter speaks again
    report = rag.index(docs)
    assert (report.changed, report.unchanged, report.added, report.removed) == (3, 2, 0, 0)
    assert report.committed and report.chunks_embedded == 0 and embedded == []
    assert {path: record.chunk_ids for path, record in store_of(tmp_path / "idx").files.items()} == ids
    assert found(rag, "owner == bo") == ["plain.txt", "report.txt"]
    assert found(rag, "owner == ana or tags exists") == []
    assert found(rag, "status == draft") == ["notes.md"] and found(rag, "reviewed exists") == []
    assert nothing_changed(rag.index(docs), 5)
    os.utime(docs / "report.txt.meta.json", ns=(1, 1))  # touched, same bytes: still nothing to do
    assert nothing_changed(rag.index(docs), 5)


def test_a_file_and_its_sidecar_changing_together_embed_only_the_new_text(
    docs: Path, tmp_path: Path, embedded: list[str]
) -> None:
    rag = RAG(tmp_path / "idx", pipeline())
    rag.index(docs)
    embedded.clear()
    (docs / "report.txt").write_text("Quarterly report: terms of the quarter.\n\nA new closing paragraph about owls.")
    (docs / "report.txt.meta.json").write_text('{"owner": "cy"}')
    report = rag.index(docs)
    assert report.changed == 1 and report.chunks_embedded == len(embedded) == 1
    assert all("owls" in chunk.text for chunk in store_of(tmp_path / "idx").get(embedded))
    assert found(rag, "owner == cy") == ["report.txt"]
    assert nothing_changed(rag.index(docs), 5)


@pytest.mark.parametrize(
    ("name", "content", "reason"),  # report.txt.meta.json is valid unless it is the one written
    [
        ("report.txt.meta.json", "[1, 2]", "sidecar report.txt.meta.json: not a JSON object (it holds a list)"),
        ("report.txt.meta.json", '{"owner": ', "sidecar report.txt.meta.json: not valid JSON at line 1"),
        ("report.txt.meta.yaml", "- a\n- b\n", "sidecar report.txt.meta.yaml: not a YAML mapping (it holds a list)"),
        ("report.txt.meta.yml", "owner: [unclosed\n", "sidecar report.txt.meta.yml: not valid YAML at line"),
        ("report.txt.meta.yaml", "# only a comment\n", "sidecar report.txt.meta.yaml: not a YAML mapping"),
        ("report.txt.meta.json", "", "sidecar report.txt.meta.json: empty file"),
        ("report.txt.meta.json", b"\xff\xfe\xfa", "sidecar report.txt.meta.json: not UTF-8 text"),
        ("report.txt.meta.json", "{" + " " * 3000 + "}", "sidecar report.txt.meta.json: file is 3,002 bytes"),
        ("report.txt.meta.yaml", "owner: bo\n", "sidecars report.txt.meta.json and report.txt.meta.yaml both"),
    ],
)
def test_a_broken_sidecar_fails_its_file_and_nothing_else(
    docs: Path, tmp_path: Path, name: str, content: str | bytes, reason: str
) -> None:
    rag = RAG(tmp_path / "idx", pipeline(max_file_mb=0.002))
    assert rag.index(docs).failed == 0
    if not reason.startswith("sidecars"):
        (docs / "report.txt.meta.json").unlink()  # the one written is the only one
    path = docs / name
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    report = rag.index(docs)
    assert report.failed == 1 and report.failures[0]["path"] == "report.txt"
    assert report.failures[0]["reason"].startswith(reason)
    if "over the limit" in report.failures[0]["reason"]:
        assert "max_file_mb" in report.failures[0]["reason"]
    assert "report.txt" not in store_of(tmp_path / "idx").files  # never served without its metadata
    assert found(rag, "owner exists") == []
    assert report.unchanged == 4 and found(rag, "status == final") == ["notes.md"]
    path.unlink()
    (docs / "report.txt.meta.json").write_text('{"owner": "dee"}')
    assert rag.index(docs).added == 1 and found(rag, "owner == dee") == ["report.txt"]


def test_a_broken_sidecar_of_a_new_file_and_an_orphan_sidecar(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.txt").write_text("good terms")
    (docs / "new.txt").write_text("new terms")
    (docs / "new.txt.meta.json").write_text('"just a string"')
    (docs / "gone.pdf.meta.json").write_text('{"owner": "nobody"}')
    rag = RAG(tmp_path / "idx", pipeline())
    report = rag.index(docs)
    assert report.added == 1 and report.failures == [
        {
            "path": "new.txt",
            "reason": "sidecar new.txt.meta.json: not a JSON object (it holds a string); write its fields as {...}",
        }
    ]
    assert report.skipped == [
        {"path": "gone.pdf.meta.json", "reason": "a sidecar without its file: gone.pdf is missing or not indexed"}
    ]
    assert found(rag, "owner exists") == []


def test_sidecars_go_with_their_file_whatever_include_and_exclude_say(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "skip").mkdir(parents=True)
    (docs / "a.md").write_text("# A\n\nterms")
    (docs / "a.md.meta.json").write_text('{"owner": "ana"}')
    (docs / "skip" / "b.md").write_text("# B\n\nterms")
    (docs / "skip" / "b.md.meta.json").write_text('{"owner": "bo"}')
    (docs / "data.json").write_text('{"x": 1}')
    sidecars: dict[str, Path] = {}
    walked = list(walk_folder(docs, ["*.md"], ["*.json", "skip/**"], sidecars=sidecars))
    assert [p.name for p in walked] == ["a.md"] and sidecars == {"a.md.meta.json": docs / "a.md.meta.json"}
    rag = RAG(tmp_path / "idx", pipeline())
    rag.pipeline.indexing = IndexingSettings(
        chunker=RecursiveChunker(chunk_size=200, chunk_overlap=0, unit="chars"), include=("*.md",), exclude=("*.json",)
    )
    rag.index(docs)
    assert found(rag, "owner exists") == ["a.md", "skip/b.md"]


def test_a_sidecar_link_out_of_the_folder_is_never_read(tmp_path: Path) -> None:
    docs, outside = tmp_path / "docs", tmp_path / "outside.json"
    docs.mkdir()
    outside.write_text('{"secret": "swordfish"}')
    (docs / "a.txt").write_text("terms")
    (docs / "a.txt.meta.json").symlink_to(outside)
    rag = RAG(tmp_path / "idx", pipeline())
    report = rag.index(docs)
    assert report.skipped == [
        {"path": "a.txt.meta.json", "reason": "a link to outside the indexed folder (symlinks: inside)"}
    ]
    assert found(rag, "secret exists") == [] and found(rag, "path == a.txt") == ["a.txt"]


def test_changed_path_rules_reindex_only_the_files_they_concern_without_embedding(
    docs: Path, tmp_path: Path, embedded: list[str]
) -> None:
    index = tmp_path / "idx"
    RAG(index, pipeline(RULES)).index(docs)
    embedded.clear()
    assert nothing_changed(RAG(index, pipeline(RULES)).index(docs), 5)
    rules = [*RULES, {"match": "contracts/acme.md", "fields": {"team": "ops"}}, {"match": "*.txt", "fields": {"x": 1}}]
    rag = RAG(index, pipeline(rules))
    report = rag.index(docs)
    # changed: acme (its rules' team), report.txt and plain.txt (x); beta and notes.md match the same rules as before
    assert (report.changed, report.unchanged, report.chunks_embedded, embedded) == (3, 2, 0, [])
    assert found(rag, "team == ops") == ["contracts/acme.md"] and found(rag, "x == 1") == ["plain.txt", "report.txt"]
    assert found(rag, "team == sales") == ["contracts/beta.md"]  # its sidecar still over the rules
    assert nothing_changed(RAG(index, pipeline(rules)).index(docs), 5)
    again = RAG(index)  # the pipeline the index was built with holds the new rules
    assert again.pipeline.indexing == pipeline(rules).indexing
    assert nothing_changed(again.index(docs), 5)
    rag = RAG(index, pipeline())  # no rules at all
    report = rag.index(docs)
    assert (report.changed, report.unchanged, report.chunks_embedded, embedded) == (4, 1, 0, [])
    assert found(rag, "kind exists") == ["contracts/beta.md", "notes.md"]  # front matter only
    assert found(rag, "team exists or x exists") == ["contracts/beta.md"]


def test_an_index_written_before_sidecars_loads_and_updates(docs: Path, tmp_path: Path) -> None:
    index = tmp_path / "idx"
    (docs / "report.txt.meta.json").unlink()
    (docs / "notes.md.meta.yaml").unlink()
    (docs / "contracts" / "beta.md.meta.yml").unlink()
    RAG(index, pipeline()).index(docs)
    files = IndexFolder(index).require_current() / "files.parquet"
    table = pq.read_table(files)
    pq.write_table(table.drop_columns(["metadata_sha256"]), files)  # as written before the column existed
    assert "metadata_sha256" not in pq.read_table(files).column_names
    rag = RAG(index, pipeline())
    assert nothing_changed(rag.index(docs), 5)
    (docs / "plain.txt.meta.json").write_text('{"owner": "ana"}')
    report = rag.index(docs)
    assert report.changed == 1 and report.chunks_embedded == 0 and found(rag, "owner == ana") == ["plain.txt"]
    assert nothing_changed(rag.index(docs), 5)


def test_rag_check_sees_a_sidecar_change_as_drift_and_no_sidecar_as_a_new_file(docs: Path, tmp_path: Path) -> None:
    index = tmp_path / "idx"
    RAG(index, pipeline(RULES)).index(docs)
    assert check_index(index).ok
    (docs / "notes.md.meta.yaml").write_text("status: archived\n")
    (docs / "plain.txt.meta.json").write_text('{"owner": "ana"}')
    report = check_index(index)
    assert report.drift == {"new": [], "changed": ["notes.md", "plain.txt"], "gone": []}
    assert check_index(index, repair=True).ok
    assert found(RAG(index), "status == archived") == ["notes.md"]


def test_the_ray_read_task_applies_the_fields_it_is_given(tmp_path: Path) -> None:
    from rag.core.limits import ReadLimits
    from rag.distributed.ray_engine import _read_and_chunk

    (tmp_path / "a.md").write_text("---\nkind: memo\nstatus: draft\n---\n# A\n\nterms")
    fields = json.dumps([{"kind": "contract", "team": "legal"}, {"status": "final"}])
    batch = pa.table({"n": [0], "path": [str(tmp_path / "a.md")], "fields": [fields]})
    chunker = (RecursiveChunker, RecursiveChunker(chunk_size=200, chunk_overlap=0, unit="chars").settings)
    [row] = _read_and_chunk(batch, str(tmp_path), chunker, ReadLimits()).to_pylist()
    metadata = json.loads(row["metadata"])
    assert {k: metadata[k] for k in ("kind", "team", "status")} == {"kind": "memo", "team": "legal", "status": "final"}
