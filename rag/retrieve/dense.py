"""Dense retrieval: chunks embedded with a sentence-transformers model, searched with FAISS.

Importing this module imports neither torch, sentence-transformers nor faiss; the model is
loaded by `warm_up()` (or the first call that needs it) and faiss at the first search.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from pathlib import Path

from rag.core.errors import ConfigError, IndexStoreError
from rag.core.types import Chunk, ChunkLookup, Hit
from rag.embed.dense import SentenceTransformerEmbedder
from rag.index.faiss_index import FaissIndex
from rag.retrieve.base import Retriever

__all__ = ["DenseRetriever"]

logger = logging.getLogger(__name__)


class DenseRetriever(Retriever):
    """Ranks chunks by the inner product of their embedding with the query's (cosine when normalized).

    `model` and `normalize` shape the stored vectors and so belong to `index_settings()`; `top_k`,
    `batch_size` and `device` only change how queries run.
    """

    def __init__(
        self,
        model: str = "sentence-transformers/all-MiniLM-L6-v2",
        top_k: int = 20,
        batch_size: int = 32,
        device: str = "auto",
        normalize: bool = True,
    ) -> None:
        if top_k < 1:
            raise ConfigError(f"DenseRetriever top_k must be at least 1, got {top_k}")
        self.model = model
        self.top_k = top_k
        self.batch_size = batch_size
        self.device = device
        self.normalize = normalize
        self._embedder = SentenceTransformerEmbedder(model, device=device, batch_size=batch_size, normalize=normalize)
        self._index: FaissIndex | None = None
        self._chunks: ChunkLookup | None = None

    def warm_up(self) -> None:
        """Load the embedding model."""
        self._embedder.load()

    def load(self, directory: Path | None, chunks: ChunkLookup) -> None:
        """Open the vectors saved in `directory`, or start empty when it is None."""
        self._index = FaissIndex(metric="ip") if directory is None else FaissIndex.load(directory)
        self._chunks = chunks

    def add(self, chunks: Sequence[Chunk]) -> None:
        """Embed and index new chunks, in batches; ids already indexed (or repeated) are skipped."""
        index, _ = self._loaded()
        fresh: dict[str, str] = {}
        for chunk in chunks:
            if chunk.id not in index:
                fresh.setdefault(chunk.id, chunk.text)
        if len(fresh) < len(chunks):
            logger.debug("DenseRetriever.add: skipped %d already indexed chunks", len(chunks) - len(fresh))
        if fresh:
            logger.info("embedding %d chunks with %s", len(fresh), self.model)
            index.add(list(fresh), self._embedder.encode_documents(list(fresh.values())))

    def remove(self, ids: Collection[str]) -> None:
        """Drop these chunks' vectors (unknown ids are ignored); nothing is re-embedded."""
        self._loaded()[0].remove(ids)

    def save(self, directory: Path) -> None:
        """Write the vectors into `directory`, as new files."""
        self._loaded()[0].save(directory)

    def __len__(self) -> int:
        return len(self._loaded()[0])

    def run(self, query: str, top_k: int | None = None) -> dict[str, list[Hit]]:
        """The `top_k` chunks whose embeddings best match `query`'s, best first (ties by id)."""
        index, lookup = self._loaded()
        if not len(index):
            return {"hits": []}
        scores, ids = index.search(self._embedder.encode_queries([query]), top_k or self.top_k)
        ranked = sorted(zip(ids[0], scores[0].tolist(), strict=False), key=lambda pair: (-pair[1], pair[0]))
        found = lookup.get([doc_id for doc_id, _ in ranked])
        return {"hits": [Hit(chunk, score) for chunk, (_, score) in zip(found, ranked, strict=True)]}

    def _loaded(self) -> tuple[FaissIndex, ChunkLookup]:
        if self._index is None or self._chunks is None:
            raise IndexStoreError("DenseRetriever has no index; call load(directory or None, chunks) first")
        return self._index, self._chunks
