"""Shared set-up for indexer tests: a model-free pipeline and consistency checks."""

from __future__ import annotations

import json
from pathlib import Path

from rag.core.pipeline import IndexingSettings, Pipeline
from rag.ingest.chunkers.recursive import RecursiveChunker
from rag.store.chunk_store import ChunkStore
from rag.store.index_folder import IndexFolder
from tests.fakes import HashRetriever

ALLOWED = ["tests.fakes.HashRetriever"]


def fake_pipeline(dim: int = 64, delay: float = 0.0, chunk_size: int = 120) -> Pipeline:
    return Pipeline(
        {"vec": HashRetriever(dim=dim, delay=delay)},
        inputs={"query": ["vec.query"], "top_k": ["vec.top_k"]},
        outputs={"hits": "vec.hits"},
        indexing=IndexingSettings(chunker=RecursiveChunker(chunk_size=chunk_size, chunk_overlap=20, unit="chars")),
        name="fake",
    )


def paragraph(topic: str, n: int = 3) -> str:
    return "\n\n".join(f"{topic} paragraph {i}: the {topic} facts number {i} are written here." for i in range(n))


def make_corpus(folder: Path, count: int = 5) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"doc{i}.md").write_text(f"# Doc {i}\n\n" + paragraph(f"topic{i}"))


def check_consistent(index: Path, folder_files: set[str] | None = None) -> ChunkStore:
    """The chunk store and the retriever hold exactly the same chunks, with no duplicates."""
    generation = IndexFolder(index).require_current()
    store = ChunkStore.load(generation)
    ids = json.loads((generation / "components" / "vec" / "ids.json").read_text())
    assert len(ids) == len(set(ids)), "duplicate chunks in the retriever"
    assert set(ids) == set(store.chunks), "retriever and chunk store disagree"
    from_files = [c for record in store.files.values() for c in record.chunk_ids]
    assert sorted(from_files) == sorted(store.chunks), "files table and chunks disagree"
    assert {c.path for c in store.chunks.values()} <= set(store.files)
    if folder_files is not None:
        assert set(store.files) == folder_files
    return store
