"""`SentenceTransformerEmbedder.precomputed`: vectors computed elsewhere (a Ray cluster) stand in for the model."""

from __future__ import annotations

import numpy as np
import pytest

from rag.core.errors import ModelLoadError
from rag.embed.dense import SentenceTransformerEmbedder


def test_precomputed_vectors_are_returned_in_order_without_loading_the_model(tmp_path) -> None:
    embedder = SentenceTransformerEmbedder(str(tmp_path / "no-such-model"), device="cpu")
    table = {"a": np.array([1.0, 0.0], dtype=np.float32), "b": np.array([0.0, 1.0], dtype=np.float32)}
    with embedder.precomputed(table):
        assert embedder.dimension == 2
        np.testing.assert_array_equal(embedder.encode_documents(["b", "a", "b"]), np.array([[0, 1], [1, 0], [0, 1]]))
        with pytest.raises(ModelLoadError):  # a text without a vector is encoded by the model, here unloadable
            embedder.encode_documents(["c"])
    with pytest.raises(ModelLoadError):  # outside the block the model is used again
        embedder.encode_documents(["a"])
