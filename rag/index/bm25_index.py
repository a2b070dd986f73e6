"""A BM25 (Okapi) index that stores term counts, so documents can be added and removed.

Rows are documents (by id), columns are terms. Only raw term counts and document lengths are
stored; idf and the average document length are derived when the index is first searched after a
change (each count becomes its BM25 term score, a sparse matrix by term), so they are always those
of the current corpus, and a query is then the sum of its terms' columns. Scores equal
`rank_bm25.BM25Okapi(corpus, k1, b, epsilon).get_scores(query)`, including its idf floor (a
negative idf is replaced by `epsilon * mean idf`).

On disk the index is a folder of plain arrays (`data.npy`, `indices.npy`, `indptr.npy`,
`doc_lengths.npy`), `ids.json`, `vocabulary.json` (terms in column order) and `manifest.json`.
Arrays are memory-mapped on load; nothing is pickled.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy import sparse

from rag.core.errors import IndexStoreError, InvalidArgumentError
from rag.embed.bm25 import term_frequencies
from rag.index.files import read_arrays, read_json, write_arrays, write_json
from rag.index.sparse_index import check_new_ids, id_ranks, top_k

__all__ = ["BM25Index"]

logger = logging.getLogger(__name__)

FORMAT = "rag.bm25/1"
_ARRAYS = ("data", "indices", "indptr", "doc_lengths")


class BM25Index:
    """Term counts of tokenized documents, scored with BM25 Okapi at query time."""

    _ranks: np.ndarray | None
    """Each id's rank in sorted order (for tie-breaking), computed when first needed."""

    def __init__(self, k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25) -> None:
        self.k1 = k1
        self.b = b
        self.epsilon = epsilon
        self.ids: list[str] = []
        self.vocabulary: dict[str, int] = {}
        self.term_frequencies = sparse.csr_array((0, 0), dtype=np.int32)
        self.doc_lengths = np.zeros(0, dtype=np.int64)
        self._rows: dict[str, int] = {}
        self._cache: _Postings | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._rows

    def add(self, ids: Sequence[str], documents: Sequence[Sequence[str]]) -> None:
        """Add documents (token lists) under new, unique ids."""
        if len(ids) != len(documents):
            raise InvalidArgumentError(f"BM25Index.add got {len(ids)} ids for {len(documents)} documents")
        check_new_ids("BM25Index.add", ids, self._rows)
        new = term_frequencies(documents, self.vocabulary)
        old = self.term_frequencies
        old = sparse.csr_array((old.data, old.indices, old.indptr), shape=(old.shape[0], new.shape[1]))
        self.term_frequencies = sparse.vstack([old, new], format="csr")
        lengths = np.fromiter((len(d) for d in documents), dtype=np.int64, count=len(documents))
        self.doc_lengths = np.concatenate([self.doc_lengths, lengths])
        self.ids.extend(ids)
        self._reindex()

    def remove(self, ids: Collection[str]) -> None:
        """Drop the documents with these ids (unknown ids are ignored) and terms no longer used."""
        drop = [self._rows[i] for i in set(ids) if i in self._rows]
        if not drop:
            return
        keep = np.ones(len(self.ids), dtype=bool)
        keep[drop] = False
        tf = self.term_frequencies[np.flatnonzero(keep)]
        used = np.bincount(tf.indices, minlength=tf.shape[1]) > 0
        column = np.cumsum(used) - 1
        self.term_frequencies = sparse.csr_array(
            (tf.data, column[tf.indices].astype(np.int32), tf.indptr), shape=(tf.shape[0], int(used.sum()))
        )
        self.vocabulary = {t: int(column[c]) for t, c in self.vocabulary.items() if used[c]}
        self.doc_lengths = self.doc_lengths[keep]
        self.ids = [i for i, k in zip(self.ids, keep, strict=True) if k]
        self._reindex()

    def scores(self, query: Sequence[str]) -> np.ndarray:
        """BM25 score of every document (in `ids` order) for a tokenized query.

        A term repeated in the query counts once per occurrence; unknown terms add nothing.
        """
        return self._score(query)[0]

    def search(self, query: Sequence[str], k: int, rows: np.ndarray | None = None) -> list[tuple[str, float]]:
        """The `k` best (id, score) pairs among documents sharing a term with `query` (and, given `rows`, among
        those rows only: a filter applied exactly, inside the search).

        Best first, ties broken by id. Scores may be zero or negative on tiny corpora, where
        BM25 Okapi's idf of a term found in half the documents or more is zero or floored.
        """
        n = len(self.ids)
        if k <= 0 or not n:
            return []
        scores, postings = self._score(query)
        if not postings.size:
            return []
        if self._ranks is None:
            self._ranks = id_ranks(self.ids)
        if rows is not None:
            shares = np.zeros(n, dtype=bool)
            shares[postings] = True
            candidates = rows[shares[rows]]
            return top_k(self.ids, candidates, scores[candidates], k, self._ranks)
        k = min(k, n)
        kth = np.partition(scores, n - k)[n - k]  # the k-th largest score over all documents
        # when the k-th score is positive the best k all share a term (the others score 0); otherwise the
        # candidates must be exactly the documents sharing a term
        candidates = scores >= kth if kth > 0 else np.bincount(postings, minlength=n)
        rows = np.flatnonzero(candidates)
        return top_k(self.ids, rows, scores[rows], k, self._ranks)

    def _score(self, query: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Scores of every document, and the document rows of the postings read (repeated rows possible)."""
        n = len(self.ids)
        data, rows, starts = self._weights()
        touched, values = [], []
        for term, times in Counter(query).items():
            column = self.vocabulary.get(term)
            if column is not None:
                start, end = starts[column], starts[column + 1]
                touched.append(rows[start:end])
                values.append(data[start:end] if times == 1 else times * data[start:end])
        if not touched:
            return np.zeros(n), np.zeros(0, dtype=np.int64)
        postings = np.concatenate(touched)
        return np.bincount(postings, weights=np.concatenate(values), minlength=n), postings

    def save(self, directory: Path) -> None:
        """Write the index as new files in `directory` (created if needed; files never overwritten)."""
        directory.mkdir(parents=True, exist_ok=True)
        tf = self.term_frequencies
        arrays = {"data": tf.data, "indices": tf.indices, "indptr": tf.indptr, "doc_lengths": self.doc_lengths}
        terms = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        manifest = {"format": FORMAT, "count": len(self.ids), "vocabulary_size": len(terms)}
        try:
            write_arrays(directory, arrays)
            write_json(directory / "ids.json", self.ids)
            write_json(directory / "vocabulary.json", terms)
            write_json(directory / "manifest.json", manifest)
        except FileExistsError as exc:
            raise IndexStoreError(f"BM25Index.save: {exc.filename} already exists; save needs an empty folder") from exc
        logger.debug("saved BM25 index of %d documents to %s", len(self.ids), directory)

    @classmethod
    def load(cls, directory: Path, k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25) -> BM25Index:
        """Open an index written by `save`; the arrays are memory-mapped read-only."""
        manifest = read_json(directory / "manifest.json")
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise IndexStoreError(f"{directory} is not a BM25 index (expected format {FORMAT!r})")
        arrays = read_arrays(directory, _ARRAYS)
        index = cls(k1=k1, b=b, epsilon=epsilon)
        index.ids = list(read_json(directory / "ids.json"))
        terms = read_json(directory / "vocabulary.json")
        index.vocabulary = {t: c for c, t in enumerate(terms)}
        n, v = len(index.ids), len(terms)
        if (manifest.get("count"), manifest.get("vocabulary_size")) != (n, v) or len(arrays["indptr"]) != n + 1:
            raise IndexStoreError(f"BM25 index in {directory} is inconsistent: counts disagree with the manifest")
        index.term_frequencies = sparse.csr_array(
            (arrays["data"], arrays["indices"], arrays["indptr"]), shape=(n, v), copy=False
        )
        index.doc_lengths = arrays["doc_lengths"]
        index._reindex()
        return index

    def _reindex(self) -> None:
        self._rows = {doc_id: row for row, doc_id in enumerate(self.ids)}
        self._cache = None
        self._ranks = None

    def _weights(self) -> _Postings:
        """Each stored count's BM25 term score, by term column, cached until the index changes.

        The score of term t in document d is idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl)),
        idf floored at `epsilon * mean idf`; a query's score is the sum over its terms' columns.
        """
        if self._cache is None:
            n = len(self.ids)
            by_column = sparse.csc_array(self.term_frequencies)
            df = np.diff(by_column.indptr).astype(np.float64)  # every stored term occurs (counts > 0)
            idf = np.log(n - df + 0.5) - np.log(df + 0.5)
            floor = self.epsilon * idf.mean() if idf.size else 0.0
            idf[idf < 0] = floor
            avgdl = float(self.doc_lengths.sum()) / n if n else 0.0
            relative = self.doc_lengths / avgdl if avgdl > 0 else np.zeros(n)
            norm = self.k1 * (1 - self.b + self.b * relative)
            tf = by_column.data.astype(np.float64)
            columns = np.repeat(np.arange(by_column.shape[1]), np.diff(by_column.indptr))
            data = idf[columns] * tf * (self.k1 + 1) / (tf + norm[by_column.indices])
            self._cache = _Postings(data, by_column.indices, by_column.indptr.tolist())
        return self._cache


class _Postings(NamedTuple):
    """Term columns in CSC layout: column c's scores are `data[starts[c]:starts[c + 1]]`, its rows `rows[...]`."""

    data: np.ndarray
    rows: np.ndarray
    starts: list[int]  # a list: reading a Python int is cheaper than a numpy scalar, per query term
