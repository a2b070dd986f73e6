"""A FAISS vector index that keeps its vectors, so rows can be added and removed without re-embedding.

The ids and float32 vectors are the stored state; the FAISS index is built from them when first
searched and extended on `add`. `remove` drops rows and discards the FAISS index, which is rebuilt
from the kept vectors at the next search: a full rebuild, cheap for the exact `Flat` index at the
sizes this project targets. Other FAISS factory strings (e.g. "HNSW32") plug in through `factory`;
only "Flat" is tested today.

On disk: `vectors.npy` (memory-mapped on load), `ids.json` and `manifest.json` (format,
dimension, metric, factory, count). Nothing is pickled.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.core.errors import ConfigError, IndexNotFoundError, IndexStoreError, MissingDependencyError

__all__ = ["METRICS", "FaissIndex"]

logger = logging.getLogger(__name__)

FORMAT = "rag.faiss/1"
METRICS = ("ip", "l2")


class FaissIndex:
    """Vectors under string ids, searched with FAISS.

    `metric` is "ip" (inner product; cosine for normalized vectors) or "l2". Scores are always
    "higher is better": the inner product, or the negated squared L2 distance. `dimension` may be
    None, in which case the first `add` fixes it.
    """

    def __init__(self, dimension: int | None = None, metric: str = "ip", factory: str = "Flat") -> None:
        if metric not in METRICS:
            raise ConfigError(f"FaissIndex metric must be one of {METRICS}, got {metric!r}")
        self.dimension = dimension
        self.metric = metric
        self.factory = factory
        self.ids: list[str] = []
        self.vectors = np.zeros((0, dimension or 0), dtype=np.float32)
        self._rows: dict[str, int] = {}
        self._faiss: Any = None

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._rows

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add one row of `vectors` (n x dimension) under each new, unique id."""
        vectors = self._check(vectors, "add")
        if self.dimension is None:
            self.dimension = vectors.shape[1]
            self.vectors = self.vectors.reshape(0, self.dimension)
        if len(ids) != len(vectors):
            raise ValueError(f"FaissIndex.add got {len(ids)} ids for {len(vectors)} vectors")
        duplicates = [i for i, n in Counter(ids).items() if n > 1 or i in self._rows]
        if duplicates:
            raise IndexStoreError(f"FaissIndex.add: ids already in the index or repeated: {duplicates[:5]}")
        self._rows.update((item_id, len(self.ids) + n) for n, item_id in enumerate(ids))
        self.ids.extend(ids)
        self.vectors = np.concatenate([self.vectors, vectors])
        if self._faiss is not None and len(vectors):
            self._faiss.add(vectors)

    def remove(self, ids: Collection[str]) -> None:
        """Drop the rows with these ids (unknown ids are ignored); the FAISS index is rebuilt lazily."""
        drop = [self._rows[i] for i in set(ids) if i in self._rows]
        if not drop:
            return
        keep = np.ones(len(self.ids), dtype=bool)
        keep[drop] = False
        self.vectors = self.vectors[keep]
        self.ids = [i for i, k in zip(self.ids, keep, strict=True) if k]
        self._rows = {item_id: row for row, item_id in enumerate(self.ids)}
        self._faiss = None

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[list[str]]]:
        """The `k` best rows for each query: scores (queries x k', best first) and their ids.

        `k'` is `min(k, len(self))`, so an empty index gives empty rows. Approximate factories may
        find fewer than `k'` rows for a query: its id list is then shorter than its score row.
        """
        queries = self._check(queries, "search")
        k = min(k, len(self.ids))
        if k <= 0:
            return np.zeros((len(queries), 0), dtype=np.float32), [[] for _ in range(len(queries))]
        scores, rows = self._built().search(queries, k)
        if self.metric == "l2":
            scores = -scores
        return scores, [[self.ids[r] for r in row if r >= 0] for row in rows]

    def save(self, directory: Path) -> None:
        """Write the index as new files in `directory` (created if needed; files never overwritten)."""
        directory.mkdir(parents=True, exist_ok=True)
        manifest = {
            "format": FORMAT,
            "dimension": self.dimension,
            "metric": self.metric,
            "factory": self.factory,
            "count": len(self.ids),
        }
        try:
            with open(directory / "vectors.npy", "xb") as f:
                np.save(f, np.ascontiguousarray(self.vectors), allow_pickle=False)
            for name, value in (("ids.json", self.ids), ("manifest.json", manifest)):
                with open(directory / name, "x", encoding="utf-8") as f:
                    json.dump(value, f, ensure_ascii=False)
        except FileExistsError as exc:
            raise IndexStoreError(f"FaissIndex.save: {exc.filename} exists; save needs an empty folder") from exc
        logger.debug("saved %d vectors to %s", len(self.ids), directory)

    @classmethod
    def load(cls, directory: Path) -> FaissIndex:
        """Open an index written by `save`; the vectors are memory-mapped read-only."""
        manifest = _read_json(directory / "manifest.json")
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise IndexStoreError(f"{directory} is not a FAISS index (expected format {FORMAT!r})")
        index = cls(manifest["dimension"], manifest["metric"], manifest["factory"])
        index.ids = list(_read_json(directory / "ids.json"))
        vectors = np.load(directory / "vectors.npy", mmap_mode="r", allow_pickle=False)
        if len(index.ids) != manifest["count"] or vectors.shape[0] != len(index.ids):
            raise IndexStoreError(f"FAISS index in {directory} is inconsistent: counts disagree with the manifest")
        if index.ids:
            index.vectors = vectors
        index._rows = {item_id: row for row, item_id in enumerate(index.ids)}
        return index

    def _check(self, vectors: np.ndarray, action: str) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"FaissIndex.{action} needs a 2-d array of vectors, got shape {vectors.shape}")
        if self.dimension is not None and vectors.shape[1] != self.dimension:
            raise IndexStoreError(
                f"FaissIndex.{action}: vectors have dimension {vectors.shape[1]}, the index holds "
                f"dimension {self.dimension}; the embedding model differs from the one the index was built with"
            )
        return vectors

    def _built(self) -> Any:
        if self._faiss is None:
            try:
                import faiss
            except ImportError as exc:
                raise MissingDependencyError("faiss-cpu", "faiss", "vector search with FAISS") from exc
            metric = faiss.METRIC_INNER_PRODUCT if self.metric == "ip" else faiss.METRIC_L2
            try:
                index = faiss.index_factory(self.dimension, self.factory, metric)
            except RuntimeError as exc:
                raise ConfigError(f"FAISS cannot build an index from factory {self.factory!r}: {exc}") from exc
            vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
            if not index.is_trained:
                index.train(vectors)
            index.add(vectors)
            self._faiss = index
        return self._faiss


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as exc:
        raise IndexNotFoundError(f"no FAISS index file {path}; build the index first") from exc
    except (OSError, ValueError) as exc:
        raise IndexStoreError(f"cannot read {path}: {exc}") from exc
