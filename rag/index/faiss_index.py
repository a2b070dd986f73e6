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

from typing import Any

import numpy as np

from rag.core.errors import ConfigError
from rag.embed.quantize import calibration_ranges, dequantize, int8_query, quantize
from rag.index import faiss_types
from rag.index.faiss_store import FaissStore
from rag.index.faiss_types import import_faiss
from rag.index.rescore import rescore

__all__ = ["FLOAT_PRECISIONS", "METRICS", "FaissIndex"]

FORMAT = "rag.faiss/1"
METRICS = ("ip", "l2")
FLOAT_PRECISIONS = ("float32", "float16", "int8")
_DTYPES = {"float32": np.float32, "float16": np.float16, "int8": np.int8}
_LOSSY = ("PQ", "SQ", "LSH", "RaBitQ")
_CHUNK = 65_536


class FaissIndex(FaissStore):
    """Vectors under string ids, searched with FAISS.

    `metric` is "ip" (inner product; cosine for normalized vectors) or "l2". Scores are always
    "higher is better": the inner product, or the negated squared L2 distance. `dimension` may be
    None, in which case the first `add` fixes it. `nprobe` (IVF) and `ef_search` (HNSW) tune
    search; None picks a default (see `faiss_types.set_search_params`). `device` is "auto" (a GPU
    when FAISS has GPU support and sees one), "cpu" or "cuda" (an error without them).
    """

    _FORMAT, _KIND, _BINARY, _FLAT = FORMAT, "FAISS index", False, "Flat"
    _ARRAYS = ("vectors",)
    _SETTINGS = ("metric", "factory", "precision")
    vectors: np.ndarray  # the stored rows, in `precision`

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
        self.metric = metric
        self.precision = precision
        super().__init__(dimension, factory, nprobe, ef_search, rescore_multiplier, device)

    def _clear(self) -> None:
        self.vectors = np.zeros((0, self.dimension or 0), dtype=_DTYPES[self.precision])

    def _encode(self, vectors: np.ndarray) -> tuple[np.ndarray, ...]:
        if self.precision == "int8" and self.ranges is None:
            self.ranges = calibration_ranges(vectors)
        return (quantize(vectors, self.precision, self.ranges),)

    def _resolved(self) -> str:
        return faiss_types.resolve_factory(self.factory, len(self.ids), self.dimension or 0, self.precision)

    def _search(self, index: Any, queries: np.ndarray, k: int, params: Any = None) -> tuple[np.ndarray, np.ndarray]:
        direct = self._codes_searched(self._built_as)
        rescored = direct or (self._built_as != "Flat" and any(tag in self._built_as for tag in _LOSSY))
        fetch = min(len(self.ids), k * self.rescore_multiplier) if rescored else k
        if self._built_as != "Flat":
            faiss_types.set_search_params(index, self.nprobe, self.ef_search, fetch)
        if direct:
            assert self.ranges is not None  # int8 codes are searched only once calibrated
        scores, rows = index.search(
            int8_query(queries, self.ranges) if direct and self.ranges is not None else queries, fetch, params=params
        )
        if rescored:
            return rescore(queries, rows, self.vectors, k, self.ranges, self.metric)
        return (-scores if self.metric == "l2" else scores), rows

    def _empty(self, factory: str) -> Any:
        faiss = import_faiss()
        metric = self._metric()
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

    def _exact(self) -> tuple[np.ndarray, str]:
        return self.vectors, self.metric

    def _codes_searched(self, factory: str) -> bool:
        """Whether an int8 inner-product search runs over the codes themselves, with integer query weights."""
        return factory == "Flat" and self.precision == "int8" and self.metric == "ip"

    def _needs_training(self, factory: str) -> bool:
        if factory == "Flat":
            return False
        return not import_faiss().index_factory(self.dimension, factory, self._metric()).is_trained

    def _metric(self) -> int:
        faiss = import_faiss()
        return faiss.METRIC_INNER_PRODUCT if self.metric == "ip" else faiss.METRIC_L2
