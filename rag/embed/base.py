"""`Embedder`: the contract of a dense text embedder, written once.

An embedder turns texts into one float32 row each: `encode_queries` for search queries and `encode_documents`
for the texts that are indexed, so models with query and document prompts get them. `SentenceTransformerEmbedder`
is the one rag ships; a `DenseRetriever` exposes its own as `.embedder`. The server's `/v1/embeddings` and the
LangChain `RagEmbeddings` take any object that keeps this contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Embedder"]


@runtime_checkable
class Embedder(Protocol):
    """A dense text embedder (see the module docstring)."""

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """One float32 row per query."""
        ...

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """One float32 row per document text."""
        ...
