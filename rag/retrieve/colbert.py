"""ColBERT-style multi-vector retrieval: token embeddings, centroid candidates, exact MaxSim.

Chunks are embedded token by token (`rag.embed.multivector`), stored compactly and memory-mapped
(`rag.index.multivector_index`), and ranked by late interaction (MaxSim) over a shortlist found
through token centroids. No trained ColBERT weights ship as a package here, so the default model is
all-MiniLM-L6-v2, whose token outputs were never trained for MaxSim; a PyLate or Stanford ColBERT
folder (or hub name) is used with its projection and marker tokens.

Importing this module imports neither torch, transformers nor faiss.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from rag.core.errors import ConfigError, IncompatibleIndexError
from rag.core.filters import Filter
from rag.core.types import Chunk, ChunkLookup, Hit
from rag.embed.multivector import MultiVectorEmbedder
from rag.index.multivector_index import STORAGES, MultiVectorIndex
from rag.retrieve.base import BatchRetriever, Retriever

__all__ = ["ColBERTRetriever"]

logger = logging.getLogger(__name__)


class ColBERTRetriever(BatchRetriever):
    """Ranks chunks by MaxSim between the query's and the chunk's token embeddings.

    `model`, `document_length`, `keep_special_tokens`, `skip_punctuation`, `storage` ("float16" or
    "int8") and `centroids` (None: sized from the corpus) shape the stored state and so belong to
    `index_settings()`. `top_k`, `batch_size`, `device`, `query_length`, `query_augmentation`
    ([MASK] padding; None: only for ColBERT-format models), `nprobe` (centroids probed per query
    token) and `candidates` (documents scored exactly per query; None: 4 * top_k) only change how
    queries run.
    """

    query_settings: ClassVar[frozenset[str]] = Retriever.query_settings | {
        "query_length",
        "query_augmentation",
        "nprobe",
        "candidates",
    }

    def __init__(
        self,
        model: str = "sentence-transformers/all-MiniLM-L6-v2",
        top_k: int = 10,
        batch_size: int = 32,
        device: str = "auto",
        query_length: int = 32,
        document_length: int = 256,
        query_augmentation: bool | None = None,
        keep_special_tokens: bool = False,
        skip_punctuation: bool = True,
        storage: str = "float16",
        centroids: int | None = None,
        nprobe: int = 4,
        candidates: int | None = None,
    ) -> None:
        if top_k < 1:
            raise ConfigError(f"ColBERTRetriever top_k must be at least 1, got {top_k}")
        if storage not in STORAGES:
            raise ConfigError(f"ColBERTRetriever storage must be one of {STORAGES}, got {storage!r}")
        self.model = model
        self.top_k = top_k
        self.storage = storage
        self._index_args: dict[str, Any] = {"storage": storage, "centroids": centroids}
        self._search_args: dict[str, Any] = {"nprobe": nprobe, "candidates": candidates}
        MultiVectorIndex(**self._index_args, **self._search_args)  # check the index settings now
        self._embedder = MultiVectorEmbedder(
            model,
            device=device,
            batch_size=batch_size,
            query_length=query_length,
            document_length=document_length,
            query_augmentation=query_augmentation,
            keep_special_tokens=keep_special_tokens,
            skip_punctuation=skip_punctuation,
        )
        self._index: MultiVectorIndex | None = None
        self._chunks: ChunkLookup | None = None

    def warm_up(self) -> None:
        """Load the token embedding model."""
        self._embedder.load()

    def load(self, directory: Path | None, chunks: ChunkLookup) -> None:
        """Open the token vectors saved in `directory`, or start empty when it is None."""
        self._index = self._empty() if directory is None else self._open(directory)
        self._chunks = chunks

    def add(self, chunks: Sequence[Chunk]) -> None:
        """Embed and index new chunks; ids already indexed (or repeated) are skipped."""
        fresh = self._new_texts(chunks)
        if fresh:
            logger.info("embedding the tokens of %d chunks with %s", len(fresh), self.model)
            self._loaded()[0].add(list(fresh), self._embedder.encode_documents(list(fresh.values())))

    def run_batch(
        self, queries: Sequence[str], top_k: int | None = None, filters: Filter | None = None
    ) -> list[list[Hit]]:
        """The hits of each query, in order; the queries are embedded together."""
        index = self._loaded()[0]
        if not len(index) or not queries:
            return [[] for _ in queries]
        allowed = self._allowed_rows(filters)
        encoded = self._embedder.encode_queries(list(queries))
        return [self._hits(index.search(tokens, top_k or self.top_k, allowed=allowed)) for tokens in encoded]

    def _empty(self) -> MultiVectorIndex:
        return MultiVectorIndex(**self._index_args, **self._search_args, metadata=self.index_settings())

    def _open(self, directory: Path) -> MultiVectorIndex:
        index = MultiVectorIndex.load(directory, **self._search_args)
        wanted = self.index_settings()
        for key in sorted(set(index.metadata) | set(wanted)):
            if index.metadata.get(key) != wanted.get(key):
                raise IncompatibleIndexError(
                    f"the multi-vector index in {directory} was built with {key}={index.metadata.get(key)!r} but "
                    f"ColBERTRetriever has {key}={wanted.get(key)!r}; use the same setting or rebuild the index"
                )
        return index
