"""Dense retrieval: chunks embedded with a sentence-transformers model, searched with FAISS.

Precision (`rag.embed.quantize`): "float32" and "float16" vectors, "int8" codes with calibrated
ranges (searched with the float query against the codes' bucket midpoints), or "binary": sign
bits searched by Hamming distance for `top_k * rescore_multiplier` candidates, rescored with the
float query against memory-mapped `rescore_precision` rows (`rag.index.faiss_binary`).
`factory` picks the FAISS structure (`rag.index.faiss_types`). `truncate_dim` keeps the first
dimensions of each embedding (Matryoshka), renormalized when `normalize` is set, which is what
sentence-transformers' `truncate_dim` does.

Importing this module imports neither torch, sentence-transformers nor faiss; the model is
loaded by `warm_up()` (or the first call that needs it) and faiss at the first search.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rag.core.errors import ConfigError, IncompatibleIndexError, IndexStoreError
from rag.core.filters import Filter
from rag.core.types import Chunk, ChunkLookup, Hit
from rag.embed.dense import SentenceTransformerEmbedder
from rag.embed.quantize import PRECISIONS
from rag.index import faiss_binary
from rag.index.faiss_binary import BinaryFaissIndex
from rag.index.faiss_index import FaissIndex
from rag.index.files import read_json
from rag.retrieve.base import BatchRetriever, Retriever

__all__ = ["DenseRetriever"]

logger = logging.getLogger(__name__)


class DenseRetriever(BatchRetriever):
    """Ranks chunks by the inner product of their embedding with the query's (cosine when normalized).

    `model`, `normalize`, `precision`, `truncate_dim`, `factory` and (binary) `rescore_precision`
    shape the stored vectors and so belong to `index_settings()` (`rescore_precision` only for
    binary). `top_k`, `batch_size`, `device` (the embedding model's), `query_backend` ("torch", "onnx" or
    "auto": what runs the model for queries, see `SentenceTransformerEmbedder`), `rescore_multiplier`,
    `nprobe`, `ef_search` and `index_device` (FAISS': "auto", "cpu" or "cuda") only change how queries run.
    """

    query_settings: ClassVar[frozenset[str]] = Retriever.query_settings | {
        "rescore_multiplier",
        "nprobe",
        "ef_search",
        "index_device",
        "query_backend",
    }

    def __init__(
        self,
        model: str = "sentence-transformers/all-MiniLM-L6-v2",
        top_k: int = 20,
        batch_size: int = 32,
        device: str = "auto",
        normalize: bool = True,
        precision: str = "float32",
        truncate_dim: int | None = None,
        factory: str = "Flat",
        rescore_multiplier: int = 4,
        rescore_precision: str = "float32",
        nprobe: int | None = None,
        ef_search: int | None = None,
        index_device: str = "auto",
        query_backend: str = "torch",
    ) -> None:
        if top_k < 1:
            raise ConfigError(f"DenseRetriever top_k must be at least 1, got {top_k}")
        if precision not in PRECISIONS:
            raise ConfigError(f"DenseRetriever precision must be one of {PRECISIONS}, got {precision!r}")
        if truncate_dim is not None and truncate_dim < 1:
            raise ConfigError(f"DenseRetriever truncate_dim must be None or at least 1, got {truncate_dim}")
        self.model = model
        self.top_k = top_k
        self.batch_size = batch_size
        self.device = device
        self.normalize = normalize
        self.precision = precision
        self.truncate_dim = truncate_dim
        self.factory = factory
        self._index_args: dict[str, Any] = {"factory": factory}
        self._search_args: dict[str, Any] = {
            "rescore_multiplier": rescore_multiplier,
            "nprobe": nprobe,
            "ef_search": ef_search,
            "device": index_device,
        }
        if precision == "binary":
            self._index_args["rescore_precision"] = rescore_precision
        else:
            self._index_args["precision"] = precision
        self._empty_index()  # check the index settings now, not at the first load
        self._embedder = SentenceTransformerEmbedder(
            model, device=device, batch_size=batch_size, normalize=normalize, query_backend=query_backend
        )
        self._index: FaissIndex | BinaryFaissIndex | None = None
        self._chunks: ChunkLookup | None = None

    def index_settings(self) -> dict[str, Any]:
        """The settings that shape the stored vectors."""
        settings = super().index_settings()
        if self.precision != "binary":
            del settings["rescore_precision"]
        return settings

    @property
    def embedder(self) -> SentenceTransformerEmbedder:
        """The model that encodes queries and documents (loaded on first use)."""
        return self._embedder

    def warm_up(self) -> None:
        """Load the embedding model."""
        self._embedder.load()

    def load(self, directory: Path | None, chunks: ChunkLookup) -> None:
        """Open the vectors saved in `directory`, or start empty when it is None."""
        self._index = self._empty_index() if directory is None else self._open(directory)
        self._chunks = chunks

    def add(self, chunks: Sequence[Chunk]) -> None:
        """Embed and index new chunks, in batches; ids already indexed (or repeated) are skipped."""
        fresh = self._new_texts(chunks)
        if fresh:
            logger.info("embedding %d chunks with %s", len(fresh), self.model)
            vectors = self._embedder.encode_documents(list(fresh.values()))
            self._loaded()[0].add(list(fresh), self._truncated(vectors))

    def run_batch(
        self, queries: Sequence[str], top_k: int | None = None, filters: Filter | None = None
    ) -> list[list[Hit]]:
        """The hits of each query: queries encoded in batches and searched in one call."""
        if not len(self._loaded()[0]) or not queries:
            return [[] for _ in queries]
        return self.search_vectors(self.encode_queries(queries), top_k, filters)

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        """The query vectors that `search_vectors` takes (truncated like the stored ones)."""
        return self._truncated(self._embedder.encode_queries(queries))

    def search_vectors(
        self, vectors: np.ndarray, top_k: int | None = None, filters: Filter | None = None
    ) -> list[list[Hit]]:
        """The hits of each query vector, best first (ties by id); with `filters`, an exact search of the chunks
        that pass them (see `FaissStore.search`)."""
        index = self._loaded()[0]
        if not len(index):
            return [[] for _ in range(len(vectors))]
        return self._ranked_hits(*index.search(vectors, top_k or self.top_k, self._allowed_rows(filters)))

    def _empty_index(self) -> FaissIndex | BinaryFaissIndex:
        if self.precision == "binary":
            return BinaryFaissIndex(**self._index_args, **self._search_args)
        return FaissIndex(metric="ip", **self._index_args, **self._search_args)

    def _open(self, directory: Path) -> FaissIndex | BinaryFaissIndex:
        manifest = read_json(directory / "manifest.json")
        if not isinstance(manifest, dict):
            raise IndexStoreError(f"{directory / 'manifest.json'} is not a dense index manifest")
        binary = manifest.get("format") == faiss_binary.FORMAT
        stored = "binary" if binary else manifest.get("precision", "float32")
        if stored != self.precision:
            raise IncompatibleIndexError(
                f"the dense index in {directory} holds {stored} vectors but DenseRetriever has "
                f"precision={self.precision!r}; use precision={stored!r} or rebuild the index"
            )
        kind = BinaryFaissIndex if binary else FaissIndex
        return kind.load(directory, **self._search_args)

    def _truncated(self, vectors: np.ndarray) -> np.ndarray:
        if self.truncate_dim is None or self.truncate_dim >= vectors.shape[1]:
            return vectors
        vectors = vectors[:, : self.truncate_dim]
        if self.normalize:
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(vectors, dtype=np.float32)
