"""The contract every retriever keeps, as one check each retriever's tests run (`round_trip`), on shared chunks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from rag.core.types import Chunk
from rag.retrieve.base import Retriever


class DictLookup:
    """A ChunkLookup over a dict."""

    def __init__(self, chunks: Sequence[Chunk]) -> None:
        self.chunks = {c.id: c for c in chunks}

    def get(self, ids: Sequence[str]) -> list[Chunk]:
        return [self.chunks[i] for i in ids]


def chunk(chunk_id: str, text: str) -> Chunk:
    return Chunk(id=chunk_id, path=f"{chunk_id}.txt", text=text, start=0, end=len(text), metadata={"title": chunk_id})


CHUNKS = [
    chunk("cats", "Cats are small domesticated felines that purr and chase mice."),
    chunk("dogs", "Dogs are loyal companions that bark and fetch sticks."),
    chunk("rust", "The Rust compiler checks memory safety at compile time."),
    chunk("ocean", "The ocean covers most of the planet and holds whales and sharks."),
    chunk("piano", "A piano has 88 keys and hammers that strike strings."),
]
QUERIES = ["cats chase mice", "dogs bark and fetch", "whales in the ocean"]


def round_trip(make: Callable[[], Retriever], tmp_path: Path) -> Retriever:
    """Run the retriever contract on `CHUNKS` with retrievers from `make()` (built with top_k=3).

    An empty index answers nothing; `add` is idempotent; `save` then `load` into a fresh retriever gives the same
    answers (best first, scores descending, at most top_k); `run_batch` equals `run`; a removed chunk is never
    returned, also after another save and load. Returns the retriever loaded last (one chunk removed).
    """
    lookup = DictLookup(CHUNKS)
    retriever = make()
    retriever.load(None, lookup)
    assert len(retriever) == 0 and retriever.run(query="cats")["hits"] == []
    retriever.add(CHUNKS)
    retriever.add(CHUNKS[:2])  # already indexed: nothing changes, nothing is embedded again
    retriever.save(tmp_path / "gen1")

    fresh = make()
    fresh.load(tmp_path / "gen1", lookup)
    assert len(fresh) == len(CHUNKS)
    hits = fresh.run(query=QUERIES[0])["hits"]
    assert hits[0].chunk == CHUNKS[0] and 0 < len(hits) <= 3
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert fresh.run_batch(QUERIES, 3) == [fresh.run(query=q, top_k=3)["hits"] for q in QUERIES]

    fresh.remove(["cats"])
    assert all(h.id != "cats" for h in fresh.run(query=QUERIES[0], top_k=10)["hits"])
    fresh.save(tmp_path / "gen2")
    again = make()
    again.load(tmp_path / "gen2", lookup)
    assert len(again) == len(CHUNKS) - 1
    assert [h.id for h in again.run(query=QUERIES[1], top_k=1)["hits"]] == ["dogs"]
    return again
