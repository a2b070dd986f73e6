"""Every dense embedder rag ships keeps the one `Embedder` contract."""

from __future__ import annotations

from rag.embed.base import Embedder
from rag.embed.dense import SentenceTransformerEmbedder
from rag.retrieve.dense import DenseRetriever


def test_shipped_embedders_keep_the_contract() -> None:
    assert isinstance(SentenceTransformerEmbedder(), Embedder)
    assert isinstance(DenseRetriever().embedder, Embedder)  # what the server's /v1/embeddings serves
    assert not isinstance(object(), Embedder)
