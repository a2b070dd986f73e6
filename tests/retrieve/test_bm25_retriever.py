from collections.abc import Sequence

import pytest

from rag.core.errors import ConfigError, IndexStoreError
from rag.core.types import Chunk
from rag.retrieve.bm25 import BM25Retriever


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


def test_full_contract_round_trip(tmp_path):
    lookup = DictLookup(CHUNKS)
    retriever = BM25Retriever(top_k=3)
    retriever.load(None, lookup)
    assert len(retriever) == 0
    assert retriever.run(query="cats")["hits"] == []
    retriever.add(CHUNKS)
    retriever.save(tmp_path / "gen1")

    fresh = BM25Retriever(top_k=3)
    fresh.load(tmp_path / "gen1", lookup)
    assert len(fresh) == len(CHUNKS)
    hits = fresh.run(query="why do cats chase mice?")["hits"]
    assert hits[0].chunk == CHUNKS[0]
    assert hits[0].score > 0
    assert len(hits) <= 3

    fresh.remove(["cats"])
    assert all(h.id != "cats" for h in fresh.run(query="cats chase mice")["hits"])
    fresh.save(tmp_path / "gen2")
    again = BM25Retriever(top_k=3)
    again.load(tmp_path / "gen2", lookup)
    assert len(again) == len(CHUNKS) - 1
    assert [h.id for h in again.run(query="bark and fetch", top_k=1)["hits"]] == ["dogs"]


def test_ties_are_broken_by_id_and_top_k_is_respected():
    twins = [chunk(i, "identical words here") for i in ("b", "c", "a")]
    lookup = DictLookup([*twins, *CHUNKS])
    retriever = BM25Retriever()
    retriever.load(None, lookup)
    retriever.add([*twins, *CHUNKS])
    assert [h.id for h in retriever.run(query="identical words")["hits"]] == ["a", "b", "c"]
    assert [h.id for h in retriever.run(query="identical words", top_k=2)["hits"]] == ["a", "b"]


def test_chunks_already_indexed_are_skipped():
    retriever = BM25Retriever()
    retriever.load(None, DictLookup(CHUNKS))
    retriever.add(CHUNKS[:2])
    retriever.add([CHUNKS[1], CHUNKS[2], CHUNKS[2]])
    assert len(retriever) == 3


def test_stopwords_setting_changes_tokenization():
    lookup = DictLookup(CHUNKS)
    plain, filtered = BM25Retriever(), BM25Retriever(stopwords="english")
    for retriever in (plain, filtered):
        retriever.load(None, lookup)
        retriever.add(CHUNKS)
    assert plain.run(query="the")["hits"]
    assert filtered.run(query="the")["hits"] == []


def test_index_settings_leave_out_top_k():
    settings = BM25Retriever(top_k=5, k1=1.2).index_settings()
    assert settings == {"k1": 1.2, "b": 0.75, "epsilon": 0.25, "lowercase": True, "stopwords": None, "stemmer": None}


def test_use_before_load_is_an_error():
    with pytest.raises(IndexStoreError, match="load"):
        BM25Retriever().run(query="cats")


@pytest.mark.parametrize(
    "settings", [{"top_k": 0}, {"stopwords": "klingon"}, {"stemmer": "porter"}], ids=["top_k", "stopwords", "stemmer"]
)
def test_bad_settings_are_config_errors(settings):
    with pytest.raises(ConfigError):
        BM25Retriever(**settings)
