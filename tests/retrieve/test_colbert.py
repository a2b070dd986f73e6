import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import rag.retrieve.colbert
from rag.core.errors import ConfigError, IncompatibleIndexError, IndexStoreError
from rag.core.pipeline import IndexingSettings, Pipeline
from rag.ingest.chunkers.recursive import RecursiveChunker
from rag.retrieve.colbert import ColBERTRetriever
from tests.indexing_helpers import check_consistent, make_corpus
from tests.retrieve.contract import CHUNKS, DictLookup, chunk, round_trip
from tests.retrieve.test_dense_retriever import PASSAGES

pytest.importorskip("faiss")


class WordVectors:
    """One token vector per word: a fixed random unit vector per distinct word (32 dimensions)."""

    dim = 32
    embedded: ClassVar[list[str]] = []
    query_batches: ClassVar[list[int]] = []

    def __init__(self, model: str, **settings: object) -> None:
        self.model = model

    def load(self) -> None:
        pass

    def _tokens(self, text: str) -> np.ndarray:
        words = re.findall(r"\w+", text.lower())
        rows = [np.random.default_rng(zlib.crc32(w.encode())).standard_normal(self.dim) for w in words]
        rows = np.array(rows, dtype=np.float32).reshape(-1, self.dim)
        return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)

    def encode_queries(self, texts: Sequence[str]) -> list[np.ndarray]:
        WordVectors.query_batches.append(len(texts))
        return [self._tokens(t) for t in texts]

    def encode_documents(self, texts: Sequence[str]) -> list[np.ndarray]:
        WordVectors.embedded.extend(texts)
        return [self._tokens(t) for t in texts]


@pytest.fixture
def words(monkeypatch):
    monkeypatch.setattr(rag.retrieve.colbert, "MultiVectorEmbedder", WordVectors)
    monkeypatch.setattr(WordVectors, "embedded", [])
    monkeypatch.setattr(WordVectors, "query_batches", [])
    return WordVectors


def test_full_contract_round_trip(tmp_path, words):
    round_trip(lambda: ColBERTRetriever(top_k=3), tmp_path)
    assert sorted(words.embedded) == sorted(c.text for c in CHUNKS)  # each chunk embedded once
    lookup = DictLookup(CHUNKS)
    stored = ColBERTRetriever(storage="float16")
    stored.load(None, lookup)
    stored.add(CHUNKS)
    hits = stored.run(query="cats chase mice")["hits"]
    assert hits[0].score == pytest.approx(3.0, abs=1e-2)  # every query word found: MaxSim 1 each


def test_run_batch_embeds_the_queries_together_and_matches_run(words):
    retriever = ColBERTRetriever(top_k=2, storage="int8")
    retriever.load(None, DictLookup(CHUNKS))
    retriever.add(CHUNKS)
    queries = ["whales in the ocean", "piano keys", "memory safety"]
    batch = retriever.run_batch(queries)
    assert words.query_batches == [3]
    assert batch == [retriever.run(q)["hits"] for q in queries]
    assert [hits[0].id for hits in batch] == ["ocean", "piano", "rust"]
    assert retriever.run_batch([]) == []


def test_ties_are_broken_by_id(words):
    twins = [chunk(i, "identical words") for i in ("b", "c", "a")]
    retriever = ColBERTRetriever()
    retriever.load(None, DictLookup(twins))
    retriever.add(twins)
    assert [h.id for h in retriever.run(query="identical words")["hits"]] == ["a", "b", "c"]


def test_index_settings_keep_query_time_settings_out():
    retriever = ColBERTRetriever(model="m", top_k=3, batch_size=8, device="cpu", query_length=16, nprobe=2)
    assert retriever.index_settings() == {
        "model": "m",
        "document_length": 256,
        "keep_special_tokens": False,
        "skip_punctuation": True,
        "storage": "float16",
        "centroids": None,
    }


@pytest.mark.parametrize(
    ("built", "used", "message"),
    [
        ({"model": "a"}, {"model": "b"}, "model='a'"),
        ({"storage": "int8"}, {"storage": "float16"}, "storage='int8'"),
        ({"document_length": 100}, {}, "document_length=100"),
    ],
)
def test_an_index_built_with_other_settings_is_refused(tmp_path, words, built, used, message):
    first = ColBERTRetriever(**built)
    first.load(None, DictLookup(CHUNKS))
    first.add(CHUNKS)
    first.save(tmp_path)
    with pytest.raises(IncompatibleIndexError, match=message):
        ColBERTRetriever(**used).load(tmp_path, DictLookup(CHUNKS))
    ColBERTRetriever(**built, nprobe=1, candidates=5, query_length=8).load(tmp_path, DictLookup(CHUNKS))


def test_token_vectors_of_another_dimension_are_refused(tmp_path, words, monkeypatch):
    retriever = ColBERTRetriever()
    retriever.load(None, DictLookup(CHUNKS))
    retriever.add(CHUNKS)
    retriever.save(tmp_path)
    monkeypatch.setattr(WordVectors, "dim", 16)  # same settings, a model that now gives 16 dimensions
    reopened = ColBERTRetriever()
    reopened.load(tmp_path, DictLookup(CHUNKS))
    with pytest.raises(IncompatibleIndexError, match="dimension 16"):
        reopened.run(query="cats")


def test_an_empty_index_answers_without_loading_the_model(tmp_path):
    retriever = ColBERTRetriever(model=str(tmp_path / "no-such-model"))
    retriever.load(None, DictLookup([]))
    assert retriever.run(query="anything")["hits"] == []
    assert retriever.run_batch(["a", "b"]) == [[], []]


def test_use_before_load_is_an_error():
    with pytest.raises(IndexStoreError, match="load"):
        len(ColBERTRetriever())


@pytest.mark.parametrize(
    "settings",
    [{"device": "tpu"}, {"top_k": 0}, {"storage": "float32"}, {"nprobe": 0}, {"centroids": 0}, {"query_length": 0}],
)
def test_bad_settings_are_config_errors(settings):
    with pytest.raises(ConfigError):
        ColBERTRetriever(**settings)


def colbert_pipeline() -> Pipeline:
    return Pipeline(
        {"vec": ColBERTRetriever(device="cpu", top_k=3)},
        inputs={"query": ["vec.query"], "top_k": ["vec.top_k"]},
        outputs={"hits": "vec.hits"},
        indexing=IndexingSettings(chunker=RecursiveChunker(chunk_size=120, chunk_overlap=20, unit="chars")),
        name="colbert-test",
    )


@pytest.mark.integration
@pytest.mark.slow
class TestMiniLM:
    def test_kitten_query_ranks_the_cat_passage_first(self, tmp_path):
        retriever = ColBERTRetriever(device="cpu")
        retriever.load(None, DictLookup(PASSAGES))
        retriever.add(PASSAGES)
        retriever.save(tmp_path)
        reopened = ColBERTRetriever(device="cpu")
        reopened.load(tmp_path, DictLookup(PASSAGES))
        hits = reopened.run(query="What do kittens like to do?")["hits"]
        assert hits[0].id == "cat"
        assert hits[0].score > hits[1].score
        assert reopened.run_batch(["volcanic eruption", "interest rates"])[1][0].id == "stocks"

    def test_an_incremental_update_embeds_only_the_changed_file(self, tmp_path):
        from rag.api import RAG
        from rag.indexer import index_folder

        corpus: Path = tmp_path / "docs"
        make_corpus(corpus, count=3)
        first = index_folder(corpus, tmp_path / "idx", colbert_pipeline())
        assert first.chunks_embedded == first.chunks_total
        check_consistent(tmp_path / "idx", {"doc0.md", "doc1.md", "doc2.md"})
        (corpus / "doc1.md").write_text((corpus / "doc1.md").read_text() + "\n\nZebras graze on the savanna.")
        second = index_folder(corpus, tmp_path / "idx", colbert_pipeline())
        assert second.changed == 1 and 1 <= second.chunks_embedded < first.chunks_embedded
        check_consistent(tmp_path / "idx")
        hits = RAG(tmp_path / "idx", colbert_pipeline()).query("zebras on the savanna", top_k=1)
        assert hits[0].chunk.path == "doc1.md" and "Zebras" in hits[0].chunk.text
