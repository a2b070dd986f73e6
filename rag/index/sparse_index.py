"""An inverted index of sparse vectors (learned term weights), scored by their inner product with a query.

Rows are documents (by id), columns are the dimensions of the vectors: for SPLADE, the token ids
of the model's vocabulary. Rows are kept in CSR order, so adding appends rows and removing drops
them, with nothing re-encoded; the column-major view that search reads (each term's posting list)
is derived at the first search and kept until the next change.

On disk the index is a folder of plain arrays (`data.npy`, `indices.npy`, `indptr.npy`),
`ids.json` and `manifest.json` (format, count, dimension and the caller's `metadata`, such as the
model that made the vectors). Arrays are memory-mapped on load; nothing is pickled.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Collection, Container, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
from scipy import sparse

from rag.core.errors import IndexStoreError, InvalidArgumentError
from rag.index.files import read_arrays, read_json, write_arrays, write_json

__all__ = ["SparseIndex", "SparseVectors", "check_new_ids", "id_ranks", "top_k"]

logger = logging.getLogger(__name__)

FORMAT = "rag.sparse/1"
_ARRAYS = ("data", "indices", "indptr")

SparseVectors: TypeAlias = sparse.sparray | sparse.spmatrix | np.ndarray
"""Rows of vectors: a scipy sparse array or matrix, or a dense 2-D array (1-D for one vector)."""


def check_new_ids(owner: str, ids: Sequence[str], existing: Container[str]) -> None:
    """Refuse ids that are already in `existing` or repeated in `ids`."""
    duplicates = [i for i, n in Counter(ids).items() if n > 1 or i in existing]
    if duplicates:
        raise IndexStoreError(f"{owner}: ids already in the index or repeated: {duplicates[:5]}")


def top_k(
    ids: Sequence[str], rows: np.ndarray, scores: np.ndarray, k: int, id_rank: np.ndarray | None = None
) -> list[tuple[str, float]]:
    """The `k` best `(ids[row], score)` pairs of the candidate `rows` (`scores` aligned), best first, ties by id.

    `id_rank` (from `id_ranks(ids)`) lets numpy order the candidates instead of Python's sort.
    """
    if k <= 0:
        return []
    if rows.size > k:
        kth = np.partition(scores, rows.size - k)[rows.size - k]  # the k-th largest score
        keep = scores >= kth  # every tie of the k-th score stays, so ids decide among them
        rows, scores = rows[keep], scores[keep]
    if id_rank is not None:
        order = np.lexsort((id_rank[rows], -scores))[:k]
        return list(zip(map(ids.__getitem__, rows[order].tolist()), scores[order].tolist(), strict=True))
    best = sorted(zip(scores.tolist(), rows.tolist(), strict=True), key=lambda pair: (-pair[0], ids[pair[1]]))[:k]
    return [(ids[row], score) for score, row in best]


def id_ranks(ids: Sequence[str]) -> np.ndarray:
    """Each row's position among the ids in sorted order (what `top_k` breaks ties with)."""
    ranks = np.empty(len(ids), dtype=np.int64)
    ranks[sorted(range(len(ids)), key=ids.__getitem__)] = np.arange(len(ids))
    return ranks


class SparseIndex:
    """Sparse vectors of `dimension` columns by id, searched by inner product.

    `metadata` (plain JSON data) is saved in the manifest and restored by `load`.
    """

    def __init__(self, dimension: int, metadata: dict[str, Any] | None = None) -> None:
        if dimension < 1:
            raise InvalidArgumentError(f"SparseIndex dimension must be at least 1, got {dimension}")
        self.dimension = dimension
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.ids: list[str] = []
        self.matrix = sparse.csr_array((0, dimension), dtype=np.float32)
        self._rows: dict[str, int] = {}
        self._postings: sparse.csr_array | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._rows

    @property
    def nnz(self) -> int:
        """Number of stored (document, term) weights."""
        return int(self.matrix.nnz)

    def add(self, ids: Sequence[str], vectors: SparseVectors) -> None:
        """Add one row of `vectors` per id, under new, unique ids."""
        rows = self._as_rows(vectors, "add")
        if len(ids) != rows.shape[0]:
            raise InvalidArgumentError(f"SparseIndex.add got {len(ids)} ids for {rows.shape[0]} vectors")
        check_new_ids("SparseIndex.add", ids, self._rows)
        self.matrix = sparse.vstack([self.matrix, rows], format="csr", dtype=np.float32)
        self.ids.extend(ids)
        self._reindex()

    def remove(self, ids: Collection[str]) -> None:
        """Drop the rows with these ids (unknown ids are ignored)."""
        drop = [self._rows[i] for i in set(ids) if i in self._rows]
        if not drop:
            return
        keep = np.ones(len(self.ids), dtype=bool)
        keep[drop] = False
        self.matrix = sparse.csr_array(self.matrix[np.flatnonzero(keep)], dtype=np.float32)
        self.ids = [i for i, k in zip(self.ids, keep, strict=True) if k]
        self._reindex()

    def scores(self, query: SparseVectors) -> np.ndarray:
        """Inner product of every row (in `ids` order) with one query vector."""
        row = self._one(query, "scores")
        out = np.zeros(len(self.ids), dtype=np.float32)
        if self.ids:
            product = (row @ self._inverted()).tocsr()
            out[product.indices] = product.data
        return out

    def search(self, query: SparseVectors, k: int) -> list[tuple[str, float]]:
        """The `k` best (id, score) pairs among rows sharing a term with `query`, best first, ties by id."""
        return self.search_batch(self._one(query, "search"), k)[0]

    def search_batch(
        self, queries: SparseVectors, k: int, allowed: np.ndarray | None = None
    ) -> list[list[tuple[str, float]]]:
        """`search` for each row of `queries`, with one sparse product for them all; given `allowed` (row
        numbers), only those rows are candidates (a filter applied exactly, inside the search)."""
        rows = self._as_rows(queries, "search_batch")
        if k <= 0 or not self.ids:
            return [[] for _ in range(rows.shape[0])]
        product = (rows @ self._inverted()).tocsr()  # queries x documents, only documents sharing a term
        keep = None
        if allowed is not None:
            keep = np.zeros(len(self.ids), dtype=bool)
            keep[allowed] = True
        results = []
        for s, e in itertools.pairwise(product.indptr):
            found, scores = product.indices[s:e], product.data[s:e]
            if keep is not None:
                found, scores = found[keep[found]], scores[keep[found]]
            results.append(top_k(self.ids, found, scores, k, self._id_rank()))
        return results

    def save(self, directory: Path) -> None:
        """Write the index as new files in `directory` (created if needed; files never overwritten)."""
        directory.mkdir(parents=True, exist_ok=True)
        m = self.matrix
        manifest = {
            "format": FORMAT,
            "count": len(self.ids),
            "dimension": self.dimension,
            "nnz": int(m.nnz),
            "metadata": self.metadata,
        }
        try:
            write_arrays(directory, {"data": m.data, "indices": m.indices, "indptr": m.indptr})
            write_json(directory / "ids.json", self.ids)
            write_json(directory / "manifest.json", manifest)
        except FileExistsError as exc:
            raise IndexStoreError(f"SparseIndex.save: {exc.filename} exists; save needs an empty folder") from exc
        logger.debug("saved sparse index of %d rows (%d weights) to %s", len(self.ids), m.nnz, directory)

    @classmethod
    def load(cls, directory: Path) -> SparseIndex:
        """Open an index written by `save`; the arrays are memory-mapped read-only."""
        manifest = read_json(directory / "manifest.json")
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise IndexStoreError(f"{directory} is not a sparse index (expected format {FORMAT!r})")
        arrays = read_arrays(directory, _ARRAYS)
        ids = list(read_json(directory / "ids.json"))
        n, dimension = len(ids), manifest.get("dimension")
        sizes = (manifest.get("count"), manifest.get("nnz"), len(arrays["indptr"]))
        if not isinstance(dimension, int) or dimension < 1 or sizes != (n, len(arrays["data"]), n + 1):
            raise IndexStoreError(f"sparse index in {directory} is inconsistent: sizes disagree with the manifest")
        index = cls(dimension, manifest.get("metadata") or {})
        index.ids = ids
        index.matrix = sparse.csr_array(
            (arrays["data"], arrays["indices"], arrays["indptr"]), shape=(n, index.dimension), copy=False
        )
        index._reindex()
        return index

    def _as_rows(self, vectors: SparseVectors, what: str) -> sparse.csr_array:
        rows = sparse.csr_array(np.atleast_2d(vectors) if isinstance(vectors, np.ndarray) else vectors)
        if rows.ndim != 2 or rows.shape[1] != self.dimension:
            raise InvalidArgumentError(
                f"SparseIndex.{what}: vectors of shape {rows.shape} do not have {self.dimension} columns"
            )
        rows = rows.astype(np.float32, copy=True)  # a copy: the caller's vectors are never modified
        rows.eliminate_zeros()
        return rows

    def _one(self, query: SparseVectors, what: str) -> sparse.csr_array:
        row = self._as_rows(query, what)
        if row.shape[0] != 1:
            raise InvalidArgumentError(
                f"SparseIndex.{what} takes one query vector, got {row.shape[0]}; use search_batch"
            )
        return row

    def _reindex(self) -> None:
        self._rows = {doc_id: row for row, doc_id in enumerate(self.ids)}
        self._postings = None
        self._ranks: np.ndarray | None = None

    def _id_rank(self) -> np.ndarray:
        if self._ranks is None:
            self._ranks = id_ranks(self.ids)
        return self._ranks

    def _inverted(self) -> sparse.csr_array:
        """The matrix transposed into CSR: one posting list (documents and weights) per term."""
        if self._postings is None:
            self._postings = sparse.csr_array(self.matrix.T)
        return self._postings
