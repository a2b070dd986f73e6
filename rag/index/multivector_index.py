"""Token vectors of many documents, with PLAID-style candidate generation and exact MaxSim.

Storage: the token vectors of all documents in one contiguous array, `storage` "float16" or
"int8" (each token's vector scaled by its own largest magnitude to [-127, 127], the float32
scale kept beside it), plus `offsets` (document i owns rows offsets[i]:offsets[i+1]). On disk:
`tokens.npy`, `scales.npy` (int8), `offsets.npy`, `centroids.npy`, `codes.npy`, `ids.json` and
`manifest.json`; the arrays are memory-mapped on load and `save` only creates new files.

Candidate generation (PLAID-style centroid lookup, i.e. an IVF over token vectors; no residual
compression):
1. k-means (faiss, spherical, fixed seed) over a sample of token vectors gives `centroids`
   (None: about 4 * sqrt(tokens), a power of two); every token is assigned its nearest centroid,
   and each centroid lists its tokens.
2. Per query, each query token probes its `nprobe` nearest centroids. Only the token vectors
   listed under the probed centroids are scored (against every query token); a document's
   approximate MaxSim is, per query token, its best among those tokens, summed: a lower bound.
3. The best `candidates` documents (None: 4 * k) by that bound are scored exactly from the
   memory-mapped token array, and the best k returned.
Small indexes (fewer than `MIN_TRAIN_TOKENS` tokens, or no more documents than `candidates`) are
scored exactly.

Additions are assigned to the existing centroids; when the token count has grown 4x since
training, the next search or save retrains and reassigns every token (no re-embedding). Removal
marks documents dead (tombstones); they are never returned, and `save` writes only the live
documents (compaction), so a saved index holds no dead rows.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.core.errors import ConfigError, IncompatibleIndexError, IndexStoreError, InvalidArgumentError
from rag.embed.multivector import maxsim_packed
from rag.index.faiss_types import import_faiss
from rag.index.files import read_arrays, read_json, write_json

__all__ = ["STORAGES", "MultiVectorIndex", "centroid_count"]

logger = logging.getLogger(__name__)

FORMAT = "rag.multivector/1"
STORAGES = ("float16", "int8")
MIN_TRAIN_TOKENS = 2048
"""Below this many tokens no centroids are trained: every search is exact (cheap at that size)."""
SAMPLE_PER_CENTROID = 64
_BLOCK = 2048  # documents per block when scoring many


def centroid_count(tokens: int) -> int:
    """The number of centroids used for `tokens` token vectors when none is set: ~4 sqrt(tokens), a power of two."""
    wanted = 2 ** round(math.log2(4 * math.sqrt(max(tokens, 1))))
    return max(1, min(wanted, tokens // 39))  # FAISS wants 39 training points per centroid


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The concatenation of arange(start, end) for each pair."""
    lengths = np.asarray(ends, dtype=np.int64) - starts
    total = int(lengths.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    shift = np.repeat(np.asarray(starts, dtype=np.int64) - (np.cumsum(lengths) - lengths), lengths)
    return np.arange(total, dtype=np.int64) + shift


class MultiVectorIndex:
    """Documents as sets of token vectors under string ids, searched by late interaction (MaxSim).

    `dimension` may be None (the first `add` fixes it). `metadata` is stored in the manifest as
    given (the retriever keeps its index settings there). `nprobe` and `candidates` are search
    defaults that `search` can override.
    """

    def __init__(
        self,
        dimension: int | None = None,
        storage: str = "float16",
        centroids: int | None = None,
        nprobe: int = 4,
        candidates: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if storage not in STORAGES:
            raise ConfigError(f"MultiVectorIndex storage must be one of {STORAGES}, got {storage!r}")
        if centroids is not None and centroids < 1:
            raise ConfigError(f"MultiVectorIndex centroids must be None or at least 1, got {centroids}")
        if nprobe < 1 or (candidates is not None and candidates < 1):
            raise ConfigError(f"MultiVectorIndex nprobe and candidates must be at least 1, got {nprobe}, {candidates}")
        self.dimension = dimension
        self.storage = storage
        self.centroids = centroids
        self.nprobe = nprobe
        self.candidates = candidates
        self.metadata = dict(metadata or {})
        self.ids: list[str] = []
        """Every document's id, dead ones included, in row order."""
        self.alive = np.zeros(0, dtype=bool)
        self.tokens = np.zeros((0, dimension or 0), dtype=np.float16 if storage == "float16" else np.int8)
        self.scales: np.ndarray | None = np.zeros(0, dtype=np.float32) if storage == "int8" else None
        self.offsets = np.zeros(1, dtype=np.int64)
        self.centroid_vectors: np.ndarray | None = None
        self.codes = np.zeros(0, dtype=np.int32)
        """The centroid of each token, for the first len(codes) tokens (later ones are assigned lazily)."""
        self.trained_on = 0
        self._rows: dict[str, int] = {}
        self._structure: tuple[np.ndarray, np.ndarray] | None = None  # centroid -> token rows (CSR)
        self._lock = threading.RLock()  # concurrent searches may find training or the lists to build

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._rows

    @property
    def token_count(self) -> int:
        """Token vectors stored, those of removed documents included until the next save."""
        return int(self.offsets[-1])

    def add(self, ids: Sequence[str], token_vectors: Sequence[np.ndarray]) -> None:
        """Add each new, unique id with its (tokens x dimension) float array of normalised token vectors."""
        if len(ids) != len(token_vectors):
            raise InvalidArgumentError(f"MultiVectorIndex.add got {len(ids)} ids for {len(token_vectors)} token arrays")
        duplicates = [i for i, n in Counter(ids).items() if n > 1 or i in self._rows]
        if duplicates:
            raise IndexStoreError(f"MultiVectorIndex.add: ids already in the index or repeated: {duplicates[:5]}")
        if not len(ids):
            return
        arrays = [
            self._check(np.asarray(t, dtype=np.float32).reshape(-1, np.shape(t)[-1]), "add") for t in token_vectors
        ]
        if self.dimension is None:
            self.dimension = arrays[0].shape[1]
            self.tokens = self.tokens.reshape(0, self.dimension)
        flat = np.concatenate(arrays)
        lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        start = len(self.ids)
        self._rows.update((item_id, start + n) for n, item_id in enumerate(ids))
        self.ids.extend(ids)
        self.alive = np.concatenate([self.alive, np.ones(len(ids), dtype=bool)])
        self.offsets = np.concatenate([self.offsets, self.offsets[-1] + np.cumsum(lengths)])
        if self.storage == "int8":
            scales = np.maximum(np.abs(flat).max(axis=1, initial=0) / 127, np.finfo(np.float32).tiny)
            self.tokens = np.concatenate([self.tokens, np.rint(flat / scales[:, None]).astype(np.int8)])
            self.scales = np.concatenate([self.scales, scales.astype(np.float32)])
        else:
            self.tokens = np.concatenate([self.tokens, flat.astype(np.float16)])
        self._structure = None

    def remove(self, ids: Collection[str]) -> None:
        """Mark these documents dead (unknown ids are ignored); `save` leaves them out."""
        for item_id in set(ids):
            row = self._rows.pop(item_id, None)
            if row is not None:
                self.alive[row] = False

    def search(
        self,
        query: np.ndarray,
        k: int,
        candidates: int | None = None,
        nprobe: int | None = None,
        allowed: np.ndarray | None = None,
    ) -> list[tuple[str, float]]:
        """The `k` best live documents for one query's token vectors: (id, MaxSim), best first, ties by id. Given
        `allowed` (row numbers: the documents that pass a filter), only those are shortlisted and scored; when the
        shortlist holds fewer than `k` of them, every allowed document is scored, so `min(k, allowed)` come back."""
        query = self._check(np.asarray(query, dtype=np.float32), "search")
        if not len(self) or k < 1:
            return []
        eligible = self.alive
        if allowed is not None:
            eligible = np.zeros_like(self.alive)
            eligible[allowed] = True
            eligible &= self.alive
        docs = self.shortlist(query, candidates or self.candidates or 4 * k, nprobe or self.nprobe, eligible)
        if allowed is not None and len(docs) < k:
            docs = np.flatnonzero(eligible)
        scores = self.score(query, docs)
        ranked = sorted(zip((self.ids[d] for d in docs), scores.tolist(), strict=True), key=lambda p: (-p[1], p[0]))
        return ranked[:k]

    def shortlist(self, query: np.ndarray, count: int, nprobe: int, eligible: np.ndarray | None = None) -> np.ndarray:
        """Sorted row numbers of at most `count` live (and `eligible`) documents to score exactly (all of them when
        few).

        Only the tokens in each query token's `nprobe` nearest centroids are scored; a document's
        approximate MaxSim takes, per query token, its best among those tokens (a lower bound).
        """
        eligible = self.alive if eligible is None else eligible
        live = np.flatnonzero(eligible)
        if len(live) <= count or not self.prepare():
            return live
        centroids = self.centroid_vectors
        assert centroids is not None
        similarity = query @ centroids.T  # query tokens x centroids
        if nprobe < len(centroids):
            probed = np.unique(np.argpartition(-similarity, nprobe - 1, axis=1)[:, :nprobe])
        else:
            probed = np.arange(len(centroids))
        list_ptr, list_rows = self._lists()
        rows = np.sort(list_rows[_ranges(list_ptr[probed], list_ptr[probed + 1])])
        owners = np.searchsorted(self.offsets, rows, side="right") - 1
        rows, owners = rows[eligible[owners]], owners[eligible[owners]]
        docs, firsts = np.unique(owners, return_index=True)
        if len(docs) <= count:
            return docs
        approx = np.zeros(len(docs), dtype=np.float32)
        bounds = np.append(firsts, len(rows))
        for at in range(0, len(docs), _BLOCK):
            stop = min(at + _BLOCK, len(docs))
            token_scores = self._decode(rows[bounds[at] : bounds[stop]]) @ query.T  # tokens x query tokens
            segments = bounds[at:stop] - bounds[at]
            approx[at:stop] = np.maximum.reduceat(token_scores, segments, axis=0).sum(axis=1)
        return np.sort(docs[np.argpartition(-approx, count - 1)[:count]])

    def score(self, query: np.ndarray, docs: np.ndarray) -> np.ndarray:
        """Exact MaxSim of the query against documents `docs` (row numbers), read from the token array."""
        out = np.zeros(len(docs), dtype=np.float32)
        for at in range(0, len(docs), _BLOCK):
            block = np.asarray(docs[at : at + _BLOCK], dtype=np.int64)
            starts, ends = self.offsets[block], self.offsets[block + 1]
            out[at : at + len(block)] = maxsim_packed(query, self._decode(_ranges(starts, ends)), ends - starts)
        return out

    def prepare(self) -> bool:
        """Train centroids (again after 4x growth) and assign every token one; False when too few tokens.

        Searches and `save` do this when needed; call it to pay the cost up front.
        """
        with self._lock:
            total = self.token_count
            if total < MIN_TRAIN_TOKENS:
                self.centroid_vectors, self.codes, self._structure = None, np.zeros(0, dtype=np.int32), None
                return False
            if self.centroid_vectors is None or total >= 4 * self.trained_on:
                self._train()
            if len(self.codes) < total:
                self.codes = np.concatenate([self.codes, self._assign(np.arange(len(self.codes), total))])
                self._structure = None
            return True

    def save(self, directory: Path) -> None:
        """Write the live documents as new files in `directory` (created if needed; files never overwritten)."""
        prepared = self.prepare()
        live = np.flatnonzero(self.alive)
        starts, ends = self.offsets[live], self.offsets[live + 1]
        compact = len(live) < len(self.ids)
        rows = _ranges(starts, ends) if compact else slice(None)
        arrays = {
            "tokens.npy": self.tokens[rows],
            "offsets.npy": np.concatenate([[0], np.cumsum(ends - starts)]).astype(np.int64),
        }
        if self.scales is not None:
            arrays["scales.npy"] = self.scales[rows]
        if prepared and self.centroid_vectors is not None:
            arrays["centroids.npy"] = self.centroid_vectors
            arrays["codes.npy"] = self.codes[rows]
        manifest = {
            "format": FORMAT,
            "dimension": self.dimension,
            "storage": self.storage,
            "count": len(live),
            "tokens": int((ends - starts).sum()),
            "centroids": self.centroids,
            "trained_on": self.trained_on,
            "metadata": self.metadata,
        }
        directory.mkdir(parents=True, exist_ok=True)
        try:
            for name, array in arrays.items():
                with open(directory / name, "xb") as f:
                    np.save(f, np.ascontiguousarray(array), allow_pickle=False)
            write_json(directory / "ids.json", [self.ids[d] for d in live])
            write_json(directory / "manifest.json", manifest)
        except FileExistsError as exc:
            raise IndexStoreError(f"MultiVectorIndex.save: {exc.filename} exists; save needs an empty folder") from exc
        logger.debug("saved %d documents, %d token vectors to %s", len(live), manifest["tokens"], directory)

    @classmethod
    def load(cls, directory: Path, **search_settings: Any) -> MultiVectorIndex:
        """Open an index written by `save`, arrays memory-mapped read-only; `search_settings`: nprobe, candidates."""
        manifest = read_json(directory / "manifest.json")
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise IndexStoreError(f"{directory} is not a multi-vector index (expected format {FORMAT!r})")
        index = cls(manifest["dimension"], manifest["storage"], manifest["centroids"], **search_settings)
        index.metadata = manifest.get("metadata") or {}
        index.ids = list(read_json(directory / "ids.json"))

        def array(name: str) -> np.ndarray:
            return read_arrays(directory, [name.removesuffix(".npy")])[name.removesuffix(".npy")]

        index.offsets = np.asarray(array("offsets.npy"), dtype=np.int64)
        if manifest["count"]:
            index.tokens = array("tokens.npy")
            index.scales = array("scales.npy") if index.storage == "int8" else None
        if (directory / "centroids.npy").exists():
            index.centroid_vectors = np.asarray(array("centroids.npy"), dtype=np.float32)
            index.codes = array("codes.npy")
            index.trained_on = manifest["trained_on"]
        if not (len(index.ids) == manifest["count"] == len(index.offsets) - 1) or index.offsets[-1] != len(
            index.tokens
        ):
            raise IndexStoreError(
                f"multi-vector index in {directory} is inconsistent: counts disagree with the manifest"
            )
        index.alive = np.ones(len(index.ids), dtype=bool)
        index._rows = {item_id: row for row, item_id in enumerate(index.ids)}
        return index

    def _check(self, vectors: np.ndarray, action: str) -> np.ndarray:
        if vectors.ndim != 2:
            raise InvalidArgumentError(
                f"MultiVectorIndex.{action} needs (tokens x dimension) arrays, got shape {vectors.shape}"
            )
        if self.dimension is not None and vectors.shape[1] != self.dimension:
            raise IncompatibleIndexError(
                f"MultiVectorIndex.{action}: token vectors have dimension {vectors.shape[1]}, the index holds "
                f"dimension {self.dimension}; the model differs from the one the index was built with: rebuild it"
            )
        return vectors

    def _decode(self, rows: np.ndarray) -> np.ndarray:
        tokens = np.asarray(self.tokens[rows], dtype=np.float32)
        return tokens if self.scales is None else tokens * self.scales[rows][:, None]

    def _train(self) -> None:
        faiss = import_faiss()
        total = self.token_count
        k = min(self.centroids or centroid_count(total), total)
        rng = np.random.default_rng(0)
        sample = np.sort(rng.choice(total, size=min(total, k * SAMPLE_PER_CENTROID), replace=False))
        logger.info("training %d centroids on %d of %d token vectors", k, len(sample), total)
        kmeans = faiss.Kmeans(self.dimension, k, niter=10, seed=0, spherical=True, max_points_per_centroid=10**9)
        kmeans.train(np.ascontiguousarray(self._decode(sample)))
        self.centroid_vectors = np.asarray(kmeans.centroids, dtype=np.float32)
        self.trained_on = total
        self.codes = np.zeros(0, dtype=np.int32)
        self._structure = None

    def _assign(self, rows: np.ndarray) -> np.ndarray:
        faiss = import_faiss()
        assert self.centroid_vectors is not None
        flat = faiss.IndexFlatIP(self.dimension)
        flat.add(self.centroid_vectors)
        out = np.zeros(len(rows), dtype=np.int32)
        for at in range(0, len(rows), 65_536):
            _, nearest = flat.search(np.ascontiguousarray(self._decode(rows[at : at + 65_536])), 1)
            out[at : at + 65_536] = nearest[:, 0]
        return out

    def _lists(self) -> tuple[np.ndarray, np.ndarray]:
        """(list_ptr, list_rows): the token rows of centroid c are list_rows[list_ptr[c]:list_ptr[c + 1]]."""
        with self._lock:
            if self._structure is None:
                assert self.centroid_vectors is not None
                codes = np.asarray(self.codes)
                rows = np.argsort(codes, kind="stable")
                self._structure = (np.searchsorted(codes[rows], np.arange(len(self.centroid_vectors) + 1)), rows)
            return self._structure
