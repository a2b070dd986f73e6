"""A FAISS vector index that keeps its vectors, so rows can be added and removed without re-embedding.

The ids and the stored vectors (in the index's `precision`) are the source of truth; the FAISS
structure is derived from them. `factory` is a FAISS factory string or a preset ("flat", "ivf",
"ivfpq", "hnsw"; see `rag.index.faiss_types`). Precision:

- "float32": the vectors as given.
- "float16": half the memory; "Flat" searches them with FAISS' fp16 scalar quantizer.
- "int8": one byte a dimension, quantized with per-dimension ranges calibrated on the first
  vectors added and stored with the index (`rag.embed.quantize`), so later additions use the same
  buckets. "Flat" with "ip" searches the codes themselves with the query as integer weights
  (`int8_query`, FAISS' 8-bit integer kernel), then rescores `k * rescore_multiplier` candidates
  with the float query against the codes' bucket midpoints; with "l2", FAISS' 8-bit quantizer set
  to the stored ranges scores those midpoints directly.

Structures whose scores only approximate the stored vectors (PQ, or a scalar quantizer trained by
FAISS itself, e.g. "IVF256,SQ8") also fetch `k * rescore_multiplier` candidates and rescore them
exactly against the stored rows, read through the memory map.

Removal, by type: every type drops the rows and rebuilds its FAISS structure from the kept
vectors at the next search or save. Trained types (IVF, PQ) keep their training and only re-add
the vectors (fast); HNSW rebuilds its graph (its cost grows with the corpus); Flat is a copy.
Additions extend the live (or saved) structure in place, unless a preset's parameters change with
the new size, which retrains.

On disk: `vectors.npy` (memory-mapped on load), `ids.json`, `manifest.json` (format, dimension,
metric, factory, precision, count, the factory of the saved structure), `ranges.npy` for int8,
and `faiss.index` (FAISS' own serialization) for every structure but plain Flat, so loading
neither retrains nor rebuilds. Nothing is pickled.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.core.errors import ConfigError, IndexStoreError
from rag.embed.quantize import calibration_ranges, dequantize, int8_query, quantize
from rag.index import faiss_types
from rag.index.faiss_types import import_faiss
from rag.index.files import read_json, write_json
from rag.index.rescore import rescore

__all__ = ["FLOAT_PRECISIONS", "METRICS", "FaissIndex"]

logger = logging.getLogger(__name__)

FORMAT = "rag.faiss/1"
METRICS = ("ip", "l2")
FLOAT_PRECISIONS = ("float32", "float16", "int8")
_DTYPES = {"float32": np.float32, "float16": np.float16, "int8": np.int8}
_LOSSY = ("PQ", "SQ", "LSH", "RaBitQ")
_CHUNK = 65_536


class FaissIndex:
    """Vectors under string ids, searched with FAISS.

    `metric` is "ip" (inner product; cosine for normalized vectors) or "l2". Scores are always
    "higher is better": the inner product, or the negated squared L2 distance. `dimension` may be
    None, in which case the first `add` fixes it. `nprobe` (IVF) and `ef_search` (HNSW) tune
    search; None picks a default (see `faiss_types.set_search_params`). `device` is "auto" (a GPU
    when FAISS has GPU support and sees one), "cpu" or "cuda" (an error without them).
    """

    def __init__(
        self,
        dimension: int | None = None,
        metric: str = "ip",
        factory: str = "Flat",
        precision: str = "float32",
        nprobe: int | None = None,
        ef_search: int | None = None,
        rescore_multiplier: int = 4,
        device: str = "auto",
    ) -> None:
        if metric not in METRICS:
            raise ConfigError(f"FaissIndex metric must be one of {METRICS}, got {metric!r}")
        if precision not in FLOAT_PRECISIONS:
            hint = "; binary vectors go in a BinaryFaissIndex" if precision == "binary" else ""
            raise ConfigError(f"FaissIndex precision must be one of {FLOAT_PRECISIONS}, got {precision!r}{hint}")
        if rescore_multiplier < 1:
            raise ConfigError(f"FaissIndex rescore_multiplier must be at least 1, got {rescore_multiplier}")
        self.dimension = dimension
        self.metric = metric
        self.factory = factory
        self.precision = precision
        self.nprobe = nprobe
        self.ef_search = ef_search
        self.rescore_multiplier = rescore_multiplier
        self.device = faiss_types.check_device(device)
        self.ids: list[str] = []
        self.vectors = np.zeros((0, dimension or 0), dtype=_DTYPES[precision])
        self.ranges: np.ndarray | None = None
        """int8 only: the (2, dimension) calibration ranges (min, max); set by the first `add` if None."""
        self._rows: dict[str, int] = {}
        self._faiss: Any = None  # in step with self.vectors, or None
        self._built_as = ""  # factory string self._faiss was built from
        self._saved: tuple[Path, str] | None = None  # faiss.index file in step with self.vectors, and its factory
        self._trained: tuple[str, Any] | None = None  # an empty trained index to rebuild from

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._rows

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add one row of `vectors` (n x dimension, float) under each new, unique id."""
        vectors = self._check(vectors, "add")
        if len(ids) != len(vectors):
            raise ValueError(f"FaissIndex.add got {len(ids)} ids for {len(vectors)} vectors")
        duplicates = [i for i, n in Counter(ids).items() if n > 1 or i in self._rows]
        if duplicates:
            raise IndexStoreError(f"FaissIndex.add: ids already in the index or repeated: {duplicates[:5]}")
        if self.dimension is None:
            self.dimension = vectors.shape[1]
            self.vectors = self.vectors.reshape(0, self.dimension)
        if not len(vectors):
            return
        if self.precision == "int8" and self.ranges is None:
            self.ranges = calibration_ranges(vectors)
        if self._saved is not None:
            self._built()  # extend the saved structure rather than rebuild it
        start = len(self.ids)
        self._rows.update((item_id, start + n) for n, item_id in enumerate(ids))
        self.ids.extend(ids)
        self.vectors = np.concatenate([self.vectors, quantize(vectors, self.precision, self.ranges)])
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
        self.vectors = self.vectors[keep]
        self.ids = [i for i, k in zip(self.ids, keep, strict=True) if k]
        self._rows = {item_id: row for row, item_id in enumerate(self.ids)}
        self._faiss, self._saved = None, None

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[list[str]]]:
        """The `k` best rows for each query: scores (queries x k', best first) and their ids.

        `k'` is `min(k, len(self))`, so an empty index gives empty rows. Approximate factories may
        find fewer than `k'` rows for a query: its id list is then shorter than its score row,
        which is padded with -inf.
        """
        scores, rows = self.search_rows(queries, k)
        ids = self.ids
        return scores, [[ids[r] for r in row if r >= 0] for row in rows.tolist()]

    def search_rows(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """As `search`, with row numbers (positions in `ids`, -1 where none was found) instead of ids."""
        queries = self._check(queries, "search")
        k = min(k, len(self.ids))
        if k <= 0:
            return np.zeros((len(queries), 0), dtype=np.float32), np.zeros((len(queries), 0), dtype=np.int64)
        index = self._built()
        direct = self._codes_searched(self._built_as)
        rescored = direct or (self._built_as != "Flat" and any(tag in self._built_as for tag in _LOSSY))
        fetch = min(len(self.ids), k * self.rescore_multiplier) if rescored else k
        if self._built_as != "Flat":
            faiss_types.set_search_params(index, self.nprobe, self.ef_search, fetch)
        scores, rows = index.search(int8_query(queries, self.ranges) if direct else queries, fetch)
        if rescored:
            return rescore(queries, rows, self.vectors, k, self.ranges, self.metric)
        return (-scores if self.metric == "l2" else scores), rows

    def save(self, directory: Path) -> None:
        """Write the index as new files in `directory` (created if needed; files never overwritten)."""
        directory.mkdir(parents=True, exist_ok=True)
        structure = self._resolved() if self.ids else "Flat"
        manifest = {
            "format": FORMAT,
            "dimension": self.dimension,
            "metric": self.metric,
            "factory": self.factory,
            "precision": self.precision,
            "count": len(self.ids),
            "structure": structure if structure != "Flat" else None,
        }
        arrays = {"vectors.npy": self.vectors}
        if self.ranges is not None:
            arrays["ranges.npy"] = self.ranges
        try:
            for name, array in arrays.items():
                with open(directory / name, "xb") as f:
                    np.save(f, np.ascontiguousarray(array), allow_pickle=False)
            for name, value in (("ids.json", self.ids), ("manifest.json", manifest)):
                write_json(directory / name, value)
            if manifest["structure"]:
                with open(directory / "faiss.index", "xb") as f:
                    f.write(import_faiss().serialize_index(faiss_types.to_cpu(self._built())).tobytes())
        except FileExistsError as exc:
            raise IndexStoreError(f"FaissIndex.save: {exc.filename} exists; save needs an empty folder") from exc
        logger.debug("saved %d vectors to %s", len(self.ids), directory)

    @classmethod
    def load(cls, directory: Path, **search_settings: Any) -> FaissIndex:
        """Open an index written by `save`; the vectors are memory-mapped read-only.

        `search_settings` (nprobe, ef_search, rescore_multiplier, device) only change how it searches.
        """
        manifest = read_json(directory / "manifest.json")
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise IndexStoreError(f"{directory} is not a FAISS index (expected format {FORMAT!r})")
        precision = manifest.get("precision", "float32")
        index = cls(manifest["dimension"], manifest["metric"], manifest["factory"], precision, **search_settings)
        index.ids = list(read_json(directory / "ids.json"))
        vectors = np.load(directory / "vectors.npy", mmap_mode="r", allow_pickle=False)
        if len(index.ids) != manifest["count"] or vectors.shape[0] != len(index.ids):
            raise IndexStoreError(f"FAISS index in {directory} is inconsistent: counts disagree with the manifest")
        if index.ids:
            index.vectors = vectors
        if precision == "int8" and (directory / "ranges.npy").exists():
            index.ranges = np.load(directory / "ranges.npy", allow_pickle=False)
        if manifest.get("structure"):
            index._saved = (directory / "faiss.index", manifest["structure"])
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

    def _resolved(self) -> str:
        return faiss_types.resolve_factory(self.factory, len(self.ids), self.dimension or 0, self.precision)

    def _built(self) -> Any:
        if self._faiss is None:
            faiss = import_faiss()
            wanted = self._resolved()
            if self._saved is not None and self._saved[1] == wanted:
                logger.debug("reading the saved FAISS structure %s", self._saved[0])
                index = faiss.read_index(str(self._saved[0]))
            else:
                index = self._empty(wanted)
                self._add_rows(index, 0)
            self._saved = None
            self._faiss, self._built_as = faiss_types.to_gpu(index, self.device), wanted
        return self._faiss

    def _empty(self, factory: str) -> Any:
        """An empty, trained FAISS index for `factory`."""
        faiss = import_faiss()
        metric = faiss.METRIC_INNER_PRODUCT if self.metric == "ip" else faiss.METRIC_L2
        if factory == "Flat" and self.precision != "float32":  # search the stored codes themselves
            if self._codes_searched(factory):
                return faiss.IndexScalarQuantizer(self.dimension, faiss.ScalarQuantizer.QT_8bit_direct_signed, metric)
            kind = faiss.ScalarQuantizer.QT_8bit if self.precision == "int8" else faiss.ScalarQuantizer.QT_fp16
            index = faiss.IndexScalarQuantizer(self.dimension, kind, metric)
            if self.precision == "int8":  # l2: FAISS' 8-bit quantizer set to the stored ranges
                start, stop = np.asarray(self.ranges, dtype=np.float32)
                span = np.where(stop == start, 255, stop - start).astype(np.float32)  # step 1, as in quantize
                faiss.copy_array_to_vector(np.concatenate([start, span]), index.sq.trained)
                index.is_trained = True
            return index
        if self._trained is not None and self._trained[0] == factory:
            return faiss.clone_index(self._trained[1])
        try:
            index = faiss.index_factory(self.dimension, factory, metric)
        except RuntimeError as exc:
            raise ConfigError(f"FAISS cannot build an index from factory {factory!r}: {exc}") from exc
        if not index.is_trained:
            sample = dequantize(self.vectors[faiss_types.sample_rows(len(self.ids))], self.ranges)
            faiss_types.train(index, sample, factory)
            self._trained = (factory, faiss.clone_index(index))
        return index

    def _add_rows(self, index: Any, start: int) -> None:
        # int8 codes go in as they are, or decode to bucket midpoints, which FAISS' quantizer (same
        # ranges) encodes back exactly
        direct = self._codes_searched(self._resolved())
        for at in range(start, len(self.ids), _CHUNK):
            rows = self.vectors[at : at + _CHUNK]
            index.add(rows.astype(np.float32) if direct else dequantize(rows, self.ranges))

    def _codes_searched(self, factory: str) -> bool:
        """Whether an int8 inner-product search runs over the codes themselves, with integer query weights."""
        return factory == "Flat" and self.precision == "int8" and self.metric == "ip"

    def _keep_training(self) -> None:
        """Before rows are dropped: keep a trained structure's training, emptied, to rebuild from."""
        if self._faiss is not None:
            factory = self._built_as
        elif self._saved is not None:
            factory = self._saved[1]
        else:
            return
        faiss = import_faiss()
        metric = faiss.METRIC_INNER_PRODUCT if self.metric == "ip" else faiss.METRIC_L2
        if factory == "Flat" or faiss.index_factory(self.dimension, factory, metric).is_trained:
            return  # nothing trained to keep
        if self._faiss is not None:
            index = faiss.clone_index(faiss_types.to_cpu(self._faiss))
        else:
            index = faiss.read_index(str(self._saved[0]))
        index.reset()
        self._trained = (factory, index)
