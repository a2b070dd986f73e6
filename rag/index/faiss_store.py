"""What `FaissIndex` and `BinaryFaissIndex` share: ids, per-row arrays, a lazily built FAISS structure, files.

The ids and the arrays in `_ARRAYS` (one row an id) are the source of truth; the FAISS structure is
derived from them, kept trained across removals, and saved (as `faiss.index`) unless it is the
exact `_FLAT`. A subclass says how float vectors become rows and rows a FAISS structure.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from rag.core.errors import IndexStoreError, InvalidArgumentError
from rag.core.run_report import note
from rag.index import faiss_types
from rag.index.faiss_types import import_faiss
from rag.index.files import read_arrays, read_json, write_arrays, write_json
from rag.index.rescore import rescore, score_block

__all__ = ["FaissStore"]

logger = logging.getLogger(__name__)

_ALLOWED_BLOCK = 8192
"""Rows scored at once by a filtered (exact) search."""
_SUBSET_SHARE = 0.05
"""Up to this share of the rows passing a filter, they are scored exactly; above it, the index over-fetches."""
_EXACT_ROWS = faiss_types.MIN_APPROXIMATE
"""On an approximate structure (IVF, HNSW, and any binary one: its Hamming shortlist is approximate too), fewer rows
than this passing a filter are scored exactly whatever their share: what every preset does with an index of that
size (it costs about as much as the approximate search, and loses nothing)."""


class FaissStore(ABC):
    """Rows under string ids, searched with a FAISS structure built from them when first needed."""

    _FORMAT: ClassVar[str]  # the manifest's "format"
    _KIND: ClassVar[str]  # what load errors call the index
    _BINARY: ClassVar[bool]  # a FAISS binary index
    _FLAT: ClassVar[str]  # the exact factory, rebuilt rather than saved
    _ARRAYS: ClassVar[tuple[str, ...]]  # the attributes holding the rows, saved as NAME.npy
    _SETTINGS: ClassVar[tuple[str, ...]]  # constructor arguments kept in the manifest

    def __init__(
        self,
        dimension: int | None,
        factory: str,
        nprobe: int | None,
        ef_search: int | None,
        rescore_multiplier: int,
        device: str,
    ) -> None:
        self.dimension = dimension
        self.factory = factory
        self.nprobe = nprobe
        self.ef_search = ef_search
        self.rescore_multiplier = rescore_multiplier
        self.device = faiss_types.check_device(device)
        self.ids: list[str] = []
        self.ranges: np.ndarray | None = None
        """int8 rows only: the (2, dimension) calibration ranges (min, max); set by the first `add` if None."""
        self._rows: dict[str, int] = {}
        self._faiss: Any = None  # in step with the rows, or None
        self._built_as = ""  # factory string self._faiss was built from
        self._saved: tuple[Path, str] | None = None  # faiss.index file in step with the rows, and its factory
        self._trained: tuple[str, Any] | None = None  # an empty trained index to rebuild from
        self._clear()

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._rows

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add one row of `vectors` (n x dimension, float) under each new, unique id."""
        vectors = self._check(vectors, "add")
        if len(ids) != len(vectors):
            raise InvalidArgumentError(f"{type(self).__name__}.add got {len(ids)} ids for {len(vectors)} vectors")
        duplicates = [i for i, n in Counter(ids).items() if n > 1 or i in self._rows]
        if duplicates:
            raise IndexStoreError(f"{type(self).__name__}.add: ids already in the index or repeated: {duplicates[:5]}")
        if self.dimension is None:
            self.dimension = vectors.shape[1]
            self._clear()
        if not len(vectors):
            return
        if self._saved is not None:
            self._built()  # extend the saved structure rather than rebuild it
        start = len(self.ids)
        self._rows.update((item_id, start + n) for n, item_id in enumerate(ids))
        self.ids.extend(ids)
        new = self._encode(vectors)
        self._set(np.concatenate(pair) for pair in zip(self._arrays().values(), new, strict=True))
        if self._faiss is not None:
            if self._resolved() == self._built_as:
                self._add_rows(self._faiss, start)
            else:
                self._faiss = None

    def remove(self, ids: Collection[str]) -> None:
        """Drop the rows with these ids (unknown ids are ignored); the FAISS structure is rebuilt lazily."""
        drop = [self._rows[i] for i in set(ids) if i in self._rows]
        if not drop:
            return
        self._keep_training()
        keep = np.ones(len(self.ids), dtype=bool)
        keep[drop] = False
        self._set(array[keep] for array in self._arrays().values())
        self.ids = [i for i, k in zip(self.ids, keep, strict=True) if k]
        self._rows = {item_id: row for row, item_id in enumerate(self.ids)}
        self._faiss, self._saved = None, None

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, list[list[str]]]:
        """The `k` best rows for each query: scores (queries x k', best first) and their ids.

        `k'` is `min(k, len(self))`, so an empty index gives empty rows. Approximate factories may
        find fewer than `k'` rows for a query: its id list is then shorter than its score row,
        which is padded with -inf. Given `allowed` (row numbers: the chunks that pass a filter), only those
        rows are searched, exactly, by their stored values (what rescoring reads), so `min(k, len(allowed))`
        rows always come back.
        """
        if allowed is None:
            scores, rows = self.search_rows(queries, k)
        else:
            scores, rows = self.search_allowed(self._check(queries, "search"), k, allowed)
        ids = self.ids
        return scores, [[ids[r] for r in row if r >= 0] for row in rows.tolist()]

    def search_allowed(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The `k` best of the `allowed` rows for each query (scores and row numbers, best first), by whichever
        costs least, chosen by the share of rows that pass and the structure:

        - at most `_SUBSET_SHARE` of the rows, or on an approximate structure fewer than `_EXACT_ROWS`: every allowed
          row scored exactly by its stored values (in blocks);
        - a flat index on the CPU: FAISS' own search, told to skip the other rows (an ID selector);
        - a float IVF index on the CPU: FAISS' own search with the ID selector, probing `nprobe / share` lists (as
          many allowed rows as an unfiltered search sees, so the filtered answer is as good as the unfiltered
          one; with few rows passing, every list, which is exact);
        - otherwise (HNSW, binary IVF, a GPU): the index's own search over-fetching `k / share` (twice over); a
          query that finds `k` allowed rows among them has its answer (an allowed row not fetched scores below all
          fetched ones, on an exact index), the others are scored exactly.
        """
        n = len(self.ids)
        k = min(k, len(allowed))
        if k <= 0:
            return np.zeros((len(queries), 0), dtype=np.float32), np.zeros((len(queries), 0), dtype=np.int64)
        mask = np.zeros(n, dtype=bool)
        mask[allowed] = True
        approximate = self._BINARY or self._resolved() != self._FLAT
        if len(allowed) <= _SUBSET_SHARE * n or (approximate and len(allowed) < _EXACT_ROWS):
            _chose(f"filtered search: exact scores of {len(allowed)} allowed rows of {n}")
            return self._search_exact(queries, k, allowed)
        on_cpu = faiss_types.resolve_device(self.device) == "cpu"
        faiss = import_faiss()
        bitmap = np.packbits(mask, bitorder="little")  # kept alive while FAISS reads it
        if self._resolved() == self._FLAT and on_cpu:
            _chose(f"filtered search: FAISS with an ID selector, {len(allowed)} allowed rows of {n}")
            params = faiss.SearchParameters(sel=faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmap)))
            return self._search(self._built(), queries, k, params)
        built = self._built()
        ivf = faiss_types.ivf_of(built) if on_cpu and not isinstance(built, faiss.IndexBinary) else None
        if ivf is not None:
            nprobe = min(ivf.nlist, int(np.ceil(faiss_types.ivf_nprobe(ivf, self.nprobe) * n / len(allowed))))
            _chose(
                f"filtered search: IVF with an ID selector, {nprobe} of {ivf.nlist} lists, {len(allowed)} rows of {n}"
            )
            params = faiss.SearchParametersIVF(sel=faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmap)), nprobe=nprobe)
            return self._search(built, queries, k, params)
        fetch = min(n, int(np.ceil(2 * k * n / len(allowed))))
        scores, rows = self.search_rows(queries, fetch)
        kept = (rows >= 0) & mask[np.maximum(rows, 0)]
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_rows = np.full((len(queries), k), -1, dtype=np.int64)
        short = []
        for q in range(len(queries)):
            found = np.flatnonzero(kept[q])[:k]
            if len(found) == k:
                out_scores[q], out_rows[q] = scores[q, found], rows[q, found]
            else:
                short.append(q)
        if short:
            out_scores[short], out_rows[short] = self._search_exact(queries[short], k, allowed)
        _chose(f"filtered search: over-fetch {fetch} of {n} rows, {len(short)} quer(ies) scored exactly")
        return out_scores, out_rows

    def _search_exact(self, queries: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every allowed row scored exactly by its stored values (what rescoring reads), in blocks of rows; ties go
        to the lower row. With a quarter of the rows or more allowed, every row is scored, in order, and the others
        dropped: a product over contiguous rows costs less than gathering the allowed ones (0.2 against 1.0 ms for
        half of 5,000 rows of 384 floats)."""
        stored, metric = self._exact()
        k = min(k, len(allowed))
        best = np.zeros((len(queries), 0), dtype=np.float32), np.zeros((len(queries), 0), dtype=np.int64)
        if 4 * len(allowed) >= len(stored):
            mask = np.zeros(len(stored), dtype=bool)
            mask[allowed] = True
            for at in range(0, len(stored), _ALLOWED_BLOCK):
                kept = at + np.flatnonzero(mask[at : at + _ALLOWED_BLOCK])
                if len(kept):
                    scores = score_block(queries, stored[at : at + _ALLOWED_BLOCK], self.ranges, metric)
                    best = _best(best, scores[:, kept - at], np.broadcast_to(kept, scores[:, kept - at].shape), k)
            return best
        for at in range(0, len(allowed), _ALLOWED_BLOCK):
            block = np.broadcast_to(
                allowed[at : at + _ALLOWED_BLOCK], (len(queries), min(_ALLOWED_BLOCK, len(allowed) - at))
            )
            best = _best(best, *rescore(queries, block, stored, k, self.ranges, metric), k)
        return best

    def search_rows(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """As `search`, with row numbers (positions in `ids`, -1 where none was found) instead of ids."""
        queries = self._check(queries, "search")
        k = min(k, len(self.ids))
        if k <= 0:
            return np.zeros((len(queries), 0), dtype=np.float32), np.zeros((len(queries), 0), dtype=np.int64)
        return self._search(self._built(), queries, k)

    def save(self, directory: Path) -> None:
        """Write the index as new files in `directory` (created if needed; files never overwritten)."""
        directory.mkdir(parents=True, exist_ok=True)
        structure = self._resolved() if self.ids else self._FLAT
        manifest = {
            "format": self._FORMAT,
            "dimension": self.dimension,
            **{name: getattr(self, name) for name in self._SETTINGS},
            "count": len(self.ids),
            "structure": structure if structure != self._FLAT else None,
        }
        arrays = self._arrays()
        if self.ranges is not None:
            arrays["ranges"] = self.ranges
        try:
            write_arrays(directory, arrays)
            for name, value in (("ids.json", self.ids), ("manifest.json", manifest)):
                write_json(directory / name, value)
            if manifest["structure"]:
                with open(directory / "faiss.index", "xb") as f:
                    faiss = import_faiss()
                    serialize = faiss.serialize_index_binary if self._BINARY else faiss.serialize_index
                    f.write(serialize(faiss_types.to_cpu(self._built())).tobytes())
        except FileExistsError as exc:
            raise IndexStoreError(
                f"{type(self).__name__}.save: {exc.filename} exists; save needs an empty folder"
            ) from exc
        logger.debug("saved %d vectors to %s", len(self.ids), directory)

    @classmethod
    def load(cls, directory: Path, **search_settings: Any) -> Self:
        """Open an index written by `save`; its rows are memory-mapped read-only.

        `search_settings` (nprobe, ef_search, rescore_multiplier, device) only change how it searches.
        """
        manifest = read_json(directory / "manifest.json")
        if not isinstance(manifest, dict) or manifest.get("format") != cls._FORMAT:
            raise IndexStoreError(f"{directory} is not a {cls._KIND} (expected format {cls._FORMAT!r})")
        settings = {name: manifest[name] for name in cls._SETTINGS if name in manifest}  # older: no "precision"
        index = cls(manifest["dimension"], **settings, **search_settings)
        index.ids = list(read_json(directory / "ids.json"))
        arrays = list(read_arrays(directory, cls._ARRAYS).values())
        if manifest["count"] != len(index.ids) or any(len(array) != len(index.ids) for array in arrays):
            raise IndexStoreError(f"{cls._KIND} in {directory} is inconsistent: counts disagree with the manifest")
        if index.ids:
            index._set(arrays)
        if (directory / "ranges.npy").exists():
            index.ranges = np.asarray(read_arrays(directory, ["ranges"])["ranges"])
        if manifest.get("structure"):
            index._saved = (directory / "faiss.index", manifest["structure"])
        index._rows = {item_id: row for row, item_id in enumerate(index.ids)}
        return index

    def _arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self._ARRAYS}

    def _set(self, arrays: Iterable[np.ndarray]) -> None:
        for name, array in zip(self._ARRAYS, arrays, strict=True):
            setattr(self, name, array)

    def _check(self, vectors: np.ndarray, action: str) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        name = type(self).__name__
        if vectors.ndim != 2:
            raise InvalidArgumentError(f"{name}.{action} needs a 2-d array of vectors, got shape {vectors.shape}")
        if self.dimension is not None and vectors.shape[1] != self.dimension:
            raise IndexStoreError(
                f"{name}.{action}: vectors have dimension {vectors.shape[1]}, the index holds "
                f"dimension {self.dimension}; the embedding model differs from the one the index was built with"
            )
        return vectors

    def _built(self) -> Any:
        if self._faiss is None:
            wanted = self._resolved()
            if self._saved is not None and self._saved[1] == wanted:
                logger.debug("reading the saved FAISS structure %s", self._saved[0])
                index = self._read(self._saved[0])
            else:
                index = self._empty(wanted)
                self._add_rows(index, 0)
            self._saved = None
            self._faiss, self._built_as = faiss_types.to_gpu(index, self.device, binary=self._BINARY), wanted
        return self._faiss

    def _read(self, path: Path) -> Any:
        faiss = import_faiss()
        return (faiss.read_index_binary if self._BINARY else faiss.read_index)(str(path))

    def _keep_training(self) -> None:
        """Before rows are dropped: keep a trained structure's training, emptied, to rebuild from."""
        if self._faiss is not None:
            path, factory = None, self._built_as
        elif self._saved is not None:
            path, factory = self._saved
        else:
            return
        if not self._needs_training(factory):
            return  # nothing trained to keep
        faiss = import_faiss()
        clone = faiss.clone_binary_index if self._BINARY else faiss.clone_index
        index = self._read(path) if path else clone(faiss_types.to_cpu(self._faiss))
        index.reset()
        self._trained = (factory, index)

    @abstractmethod
    def _clear(self) -> None:
        """Set each of `_ARRAYS` to no rows of `dimension`."""

    @abstractmethod
    def _encode(self, vectors: np.ndarray) -> tuple[np.ndarray, ...]:
        """The rows of each of `_ARRAYS` for float `vectors` (calibrating `ranges` first where they are needed)."""

    @abstractmethod
    def _resolved(self) -> str:
        """The FAISS factory string `factory` stands for at the current size."""

    @abstractmethod
    def _empty(self, factory: str) -> Any:
        """An empty, trained FAISS index for `factory`."""

    @abstractmethod
    def _add_rows(self, index: Any, start: int) -> None:
        """Add the rows from `start` on to the FAISS `index`."""

    @abstractmethod
    def _search(self, index: Any, queries: np.ndarray, k: int, params: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """`search_rows` with the built `index`, for checked `queries` and 0 < k <= len(self); `params` (FAISS
        search parameters, with an ID selector) go to FAISS' own search."""

    @abstractmethod
    def _exact(self) -> tuple[np.ndarray, str]:
        """The stored rows an exact search scores (read with `ranges`) and the metric `rescore` scores them by."""

    @abstractmethod
    def _needs_training(self, factory: str) -> bool:
        """Whether a `factory` structure is trained (IVF, PQ), so its training is worth keeping."""


def _best(
    best: tuple[np.ndarray, np.ndarray], scores: np.ndarray, rows: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The `k` best of each query's `best` (scores and rows so far) and its new `scores` of `rows`; ties go to the
    lower row."""
    scores, rows = np.concatenate([best[0], scores], axis=1), np.concatenate([best[1], rows], axis=1)
    order = np.lexsort((rows, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1)


def _chose(strategy: str) -> None:
    """Say which filtered search strategy was used: in the debug log, and in the run's report (`rag query --json`)."""
    logger.debug(strategy)
    note(strategy)
