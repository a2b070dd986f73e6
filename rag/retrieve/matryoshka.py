"""Matryoshka funnel retrieval: search a short prefix of each embedding, rescore the shortlist in full.

Models trained with Matryoshka representation learning (WordLlama `l2_supercat`: 64, 128 and 256
dimensions) keep most of their quality in the first dimensions of each vector. The funnel keeps each
chunk's normalized embedding twice (`FunnelIndex`):

- its first `search_dim` dimensions, renormalized, in a FAISS index (`rag.index.faiss_index`, any
  `factory`), the only part held in memory;
- the whole vector as a `precision` ("float32" or "float16") row of `rows.npy`, memory-mapped on load.

A query searches the short index for `top_k * rescore_multiplier` candidates, then ranks them by the
cosine of its first `rescore_dim` dimensions (None: all of them) with theirs, read from the rows
(`rag.index.rescore`); that cosine is the hit's score. It works with any model; one that was not
trained for truncation (MiniLM) needs a longer `search_dim` or a bigger multiplier for the same recall.

Importing this module imports neither torch, sentence-transformers nor faiss.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rag.core.errors import ConfigError, IncompatibleIndexError, IndexStoreError, InvalidArgumentError
from rag.core.filters import Filter
from rag.core.types import Chunk, ChunkLookup, Hit
from rag.embed.dense import SentenceTransformerEmbedder
from rag.index.faiss_index import FaissIndex
from rag.index.files import read_arrays, read_json, write_arrays, write_json
from rag.index.rescore import rescore
from rag.retrieve.base import BatchRetriever, Retriever

__all__ = ["ROW_PRECISIONS", "FunnelIndex", "MatryoshkaRetriever"]

logger = logging.getLogger(__name__)

FORMAT = "rag.matryoshka/1"
ROW_PRECISIONS = ("float32", "float16")
SETTINGS_FILE = "retriever.json"


def truncated(vectors: np.ndarray, dimension: int) -> np.ndarray:
    """The first `dimension` columns of `vectors`, each row renormalized to length 1 (zero rows stay zero)."""
    part = np.asarray(vectors, dtype=np.float32)[:, :dimension]
    norms = np.sqrt(np.einsum("ij,ij->i", part, part))[:, None]
    return np.ascontiguousarray(part / np.maximum(norms, 1e-12))


class FunnelIndex:
    """Normalized vectors under string ids: FAISS over their first `search_dim` dimensions, full rows on disk.

    `search` returns cosines at `rescore_dim` dimensions (None: all), best first, padded with -inf.
    """

    def __init__(
        self,
        search_dim: int,
        precision: str = "float32",
        factory: str = "Flat",
        rescore_multiplier: int = 4,
        rescore_dim: int | None = None,
    ) -> None:
        if search_dim < 1:
            raise ConfigError(f"search_dim must be at least 1, got {search_dim}")
        if precision not in ROW_PRECISIONS:
            raise ConfigError(f"Matryoshka row precision must be one of {ROW_PRECISIONS}, got {precision!r}")
        if rescore_multiplier < 1:
            raise ConfigError(f"rescore_multiplier must be at least 1, got {rescore_multiplier}")
        if rescore_dim is not None and rescore_dim < search_dim:
            raise ConfigError(f"rescore_dim must be None or at least search_dim ({search_dim}), got {rescore_dim}")
        self.search_dim = search_dim
        self.precision = precision
        self.rescore_multiplier = rescore_multiplier
        self.rescore_dim = rescore_dim
        self.dimension: int | None = None
        self.short = FaissIndex(search_dim, "ip", factory)
        self.rows = np.zeros((0, 0), dtype=precision)

    @property
    def ids(self) -> list[str]:
        """The ids, in row order."""
        return self.short.ids

    def __len__(self) -> int:
        return len(self.short)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self.short

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add one normalized row of `vectors` (n x dimension) under each new, unique id."""
        vectors = self._check(vectors, "add")
        if self.dimension is None:
            self.dimension = vectors.shape[1]
            self.rows = self.rows.reshape(0, self.dimension)
        self.short.add(ids, truncated(vectors, self.search_dim))  # refuses repeated ids before any change
        self.rows = np.concatenate([self.rows, vectors.astype(self.precision)])

    def remove(self, ids: Collection[str]) -> None:
        """Drop the rows with these ids (unknown ids are ignored)."""
        drop = set(ids)
        keep = np.fromiter((i not in drop for i in self.short.ids), dtype=bool, count=len(self.short))
        if keep.all():
            return
        self.short.remove(drop)
        self.rows = self.rows[keep]

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, list[list[str]]]:
        """The `k` best rows for each normalized query: cosines (queries x min(k, len)) and ids, best first. Given
        `allowed` (row numbers: the chunks that pass a filter), the short search keeps to those rows (see
        `FaissStore.search_allowed`), so `min(k, len(allowed))` rows always come back."""
        queries = self._check(queries, "search")
        k = min(k, len(self) if allowed is None else len(allowed))
        if k <= 0:
            return np.zeros((len(queries), 0), dtype=np.float32), [[] for _ in range(len(queries))]
        # the query prefix's length scales all its short scores alike, so it needs no renormalising
        short = queries[:, : self.search_dim]
        fetch = k * self.rescore_multiplier
        if allowed is None:
            _, candidates = self.short.search_rows(short, fetch)
        else:
            _, candidates = self.short.search_allowed(short, fetch, allowed)
        dimension = self.rescore_dim or self.dimension
        assert dimension is not None and self.dimension is not None  # set by the first add
        if dimension > self.dimension:
            raise ConfigError(f"rescore_dim {dimension} is more than the {self.dimension} dimensions of the index")
        if dimension == self.dimension:  # stored rows are normalized: the inner product is the cosine
            scores, rows = rescore(queries, candidates, self.rows, k)
        else:
            prefix = truncated(queries, dimension)
            scores, rows = rescore(prefix, candidates, self.rows[:, :dimension], k, metric="cosine")
        ids = self.ids
        return scores, [[ids[r] for r in row if r >= 0] for row in rows.tolist()]

    def save(self, directory: Path) -> None:
        """Write the index as new files in `directory` (created if needed; files never overwritten)."""
        directory.mkdir(parents=True, exist_ok=True)
        manifest = {
            "format": FORMAT,
            "dimension": self.dimension,
            "search_dim": self.search_dim,
            "precision": self.precision,
            "count": len(self),
        }
        try:
            write_arrays(directory, {"rows": self.rows})
            write_json(directory / "manifest.json", manifest)
        except FileExistsError as exc:
            raise IndexStoreError(f"FunnelIndex.save: {exc.filename} exists; save needs an empty folder") from exc
        self.short.save(directory / "short")

    @classmethod
    def load(cls, directory: Path, rescore_multiplier: int = 4, rescore_dim: int | None = None) -> FunnelIndex:
        """Open an index written by `save`; the full rows are memory-mapped read-only."""
        manifest = read_json(directory / "manifest.json")
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise IndexStoreError(f"{directory} is not a Matryoshka funnel index (expected format {FORMAT!r})")
        index = cls(manifest["search_dim"], manifest["precision"], "Flat", rescore_multiplier, rescore_dim)
        index.short = FaissIndex.load(directory / "short")
        rows = read_arrays(directory, ["rows"])["rows"]
        if not len(index.short) == manifest["count"] == len(rows):
            raise IndexStoreError(f"Matryoshka index in {directory} is inconsistent: counts disagree with the manifest")
        index.dimension = manifest["dimension"]
        index.rows = rows if len(rows) else rows.reshape(0, index.dimension or 0)
        return index

    def _check(self, vectors: np.ndarray, action: str) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise InvalidArgumentError(f"FunnelIndex.{action} needs a 2-d array of vectors, got shape {vectors.shape}")
        if vectors.shape[1] < self.search_dim:
            raise ConfigError(
                f"search_dim {self.search_dim} is more than the {vectors.shape[1]} dimensions of the model's "
                "vectors; use a smaller search_dim"
            )
        if self.dimension is not None and vectors.shape[1] != self.dimension:
            raise IncompatibleIndexError(
                f"FunnelIndex.{action}: vectors have dimension {vectors.shape[1]}, the index holds dimension "
                f"{self.dimension}; the embedding model differs from the one the index was built with: rebuild it"
            )
        return vectors


class MatryoshkaRetriever(BatchRetriever):
    """Ranks chunks by cosine with the query, through a short-dimension search and a full-dimension rescore.

    `model`, `search_dim`, `precision` (of the stored full rows) and `factory` (of the short FAISS
    index) shape the stored state; `rescore_dim`, `rescore_multiplier`, `top_k`, `batch_size` and
    `device` (the embedding model's) only change how queries run.
    """

    query_settings: ClassVar[frozenset[str]] = Retriever.query_settings | {"rescore_dim", "rescore_multiplier"}

    def __init__(
        self,
        model: str = "dleemiller/word-llama-l2-supercat",
        search_dim: int = 64,
        rescore_dim: int | None = None,
        rescore_multiplier: int = 8,
        top_k: int = 20,
        batch_size: int = 32,
        device: str = "auto",
        precision: str = "float32",
        factory: str = "Flat",
    ) -> None:
        if top_k < 1:
            raise ConfigError(f"MatryoshkaRetriever top_k must be at least 1, got {top_k}")
        self.model = model
        self.top_k = top_k
        self._funnel_args: dict[str, Any] = {
            "search_dim": search_dim,
            "precision": precision,
            "factory": factory,
            "rescore_multiplier": rescore_multiplier,
            "rescore_dim": rescore_dim,
        }
        FunnelIndex(**self._funnel_args)  # check the settings now, not at the first load
        self._embedder = SentenceTransformerEmbedder(model, device=device, batch_size=batch_size, normalize=True)
        self._index: FunnelIndex | None = None
        self._chunks: ChunkLookup | None = None

    @property
    def embedder(self) -> SentenceTransformerEmbedder:
        """The model that encodes queries and documents (loaded on first use)."""
        return self._embedder

    def warm_up(self) -> None:
        """Load the embedding model."""
        self._embedder.load()

    def load(self, directory: Path | None, chunks: ChunkLookup) -> None:
        """Open the index saved in `directory`, or start empty when it is None."""
        if directory is None:
            self._index = FunnelIndex(**self._funnel_args)
        else:
            self._check_settings(directory)
            query_args = {k: self._funnel_args[k] for k in ("rescore_multiplier", "rescore_dim")}
            self._index = FunnelIndex.load(directory, **query_args)
        self._chunks = chunks

    def save(self, directory: Path) -> None:
        """Write the index into `directory`, as new files, with the settings it was built with."""
        self._loaded()[0].save(directory)
        write_json(directory / SETTINGS_FILE, self.index_settings())

    def add(self, chunks: Sequence[Chunk]) -> None:
        """Embed and index new chunks, in batches; ids already indexed (or repeated) are skipped."""
        fresh = self._new_texts(chunks)
        if fresh:
            logger.info("embedding %d chunks with %s", len(fresh), self.model)
            self._loaded()[0].add(list(fresh), self._embedder.encode_documents(list(fresh.values())))

    def run_batch(
        self, queries: Sequence[str], top_k: int | None = None, filters: Filter | None = None
    ) -> list[list[Hit]]:
        """The hits of each query: queries encoded in batches and searched in one call."""
        if not len(self._loaded()[0]) or not queries:
            return [[] for _ in queries]
        return self.search_vectors(self.encode_queries(queries), top_k, filters)

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        """The normalized full-length query vectors that `search_vectors` takes."""
        return self._embedder.encode_queries(queries)

    def search_vectors(
        self, vectors: np.ndarray, top_k: int | None = None, filters: Filter | None = None
    ) -> list[list[Hit]]:
        """The hits of each query vector, best first (ties by id); with `filters`, among the chunks that pass."""
        index = self._loaded()[0]
        if not len(index):
            return [[] for _ in range(len(vectors))]
        return self._ranked_hits(*index.search(vectors, top_k or self.top_k, self._allowed_rows(filters)))

    def _check_settings(self, directory: Path) -> None:
        stored, wanted = read_json(directory / SETTINGS_FILE), self.index_settings()
        if stored == wanted:
            return
        key = next((k for k in wanted if not isinstance(stored, dict) or stored.get(k) != wanted[k]), "settings")
        built = stored.get(key) if isinstance(stored, dict) else stored
        raise IncompatibleIndexError(
            f"the Matryoshka index in {directory} was built with {key}={built!r} but MatryoshkaRetriever has "
            f"{key}={wanted.get(key)!r}; use the setting it was built with or rebuild the index"
        )
