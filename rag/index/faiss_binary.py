"""Binary vectors searched by Hamming distance in FAISS, then rescored with the float query.

Each vector is kept twice: its sign bits packed into `ceil(dimension / 8)` bytes (`codes`,
searched by a FAISS binary index, the only part held in memory) and a rescoring row in
`rescore_precision` ("float32" or "int8" with calibrated ranges, see `rag.embed.quantize`) that
stays on disk, memory-mapped, and is read only for the shortlist. A search fetches
`k * rescore_multiplier` candidates by Hamming distance and ranks them by the inner product of the
float query with their rescoring rows, which is the score returned. FAISS binary calls run on one
thread (`faiss_types.single_threaded`: many times faster for one query).

`factory` is "BFlat" (exact Hamming), "BIVF{nlist}", "BHNSW{M}", or a preset: "flat", "ivf"
(lists sized from the corpus) or "hnsw" (see `rag.index.faiss_types`); on a GPU only BFlat runs.
Removal drops the rows and rebuilds the binary structure from the kept codes at the next search or
save, keeping an IVF's training (BHNSW rebuilds its graph).

On disk: `codes.npy`, `rows.npy` (memory-mapped on load), `ranges.npy` (int8 rows), `ids.json`,
`manifest.json`, and `faiss.index` (`faiss.serialize_index_binary`) for structures other than BFlat.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rag.core.errors import ConfigError
from rag.embed.quantize import calibration_ranges, quantize
from rag.index import faiss_types
from rag.index.faiss_store import FaissStore
from rag.index.faiss_types import import_faiss
from rag.index.rescore import rescore

__all__ = ["RESCORE_PRECISIONS", "BinaryFaissIndex"]

FORMAT = "rag.faiss-binary/1"
RESCORE_PRECISIONS = ("float32", "int8")


class BinaryFaissIndex(FaissStore):
    """Float vectors under string ids, searched by their sign bits and rescored (inner product)."""

    _FORMAT, _KIND, _BINARY, _FLAT = FORMAT, "binary FAISS index", True, "BFlat"
    _ARRAYS = ("codes", "rows")
    _SETTINGS = ("factory", "rescore_precision")
    codes: np.ndarray  # the sign bits, ceil(dimension / 8) bytes a row
    rows: np.ndarray  # the rescoring rows, in `rescore_precision`

    def __init__(
        self,
        dimension: int | None = None,
        factory: str = "BFlat",
        rescore_precision: str = "float32",
        rescore_multiplier: int = 4,
        nprobe: int | None = None,
        ef_search: int | None = None,
        device: str = "auto",
    ) -> None:
        if rescore_precision not in RESCORE_PRECISIONS:
            raise ConfigError(f"rescore_precision must be one of {RESCORE_PRECISIONS}, got {rescore_precision!r}")
        if rescore_multiplier < 1:
            raise ConfigError(f"rescore_multiplier must be at least 1, got {rescore_multiplier}")
        self.rescore_precision = rescore_precision
        super().__init__(dimension, factory, nprobe, ef_search, rescore_multiplier, device)

    def _clear(self) -> None:
        self.codes = np.zeros((0, -(-(self.dimension or 0) // 8)), dtype=np.uint8)
        self.rows = np.zeros((0, self.dimension or 0), dtype=np.dtype(self.rescore_precision))

    def _encode(self, vectors: np.ndarray) -> tuple[np.ndarray, ...]:
        if self.rescore_precision == "int8" and self.ranges is None:
            self.ranges = calibration_ranges(vectors)
        return quantize(vectors, "binary"), quantize(vectors, self.rescore_precision, self.ranges)

    def _resolved(self) -> str:
        return faiss_types.resolve_factory(self.factory, len(self.ids), self.dimension or 0, binary=True)

    def _search(self, index: Any, queries: np.ndarray, k: int, params: Any = None) -> tuple[np.ndarray, np.ndarray]:
        fetch = min(len(self.ids), k * self.rescore_multiplier)
        if self._built_as != "BFlat":
            faiss_types.set_search_params(index, self.nprobe, self.ef_search, fetch)

        def search(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            _, candidates = index.search(quantize(block, "binary"), fetch, params=params)
            return rescore(block, candidates, self.rows, k, self.ranges)

        return faiss_types.search_in_threads(search, queries, index)

    def _exact(self) -> tuple[np.ndarray, str]:
        return self.rows, "ip"

    def _empty(self, factory: str) -> Any:
        faiss = import_faiss()
        if self._trained is not None and self._trained[0] == factory:
            return faiss.clone_binary_index(self._trained[1])
        try:
            index = faiss.index_binary_factory(self.codes.shape[1] * 8, factory)
        except RuntimeError as exc:
            raise ConfigError(f"FAISS cannot build a binary index from factory {factory!r}: {exc}") from exc
        if not index.is_trained:
            sample = np.ascontiguousarray(self.codes[faiss_types.sample_rows(len(self.ids))])
            with faiss_types.single_threaded():
                faiss_types.train(index, sample, factory)
            self._trained = (factory, faiss.clone_binary_index(index))
        return index

    def _add_rows(self, index: Any, start: int) -> None:
        with faiss_types.single_threaded():
            index.add(np.ascontiguousarray(self.codes[start:]))

    def _needs_training(self, factory: str) -> bool:
        return factory.startswith("BIVF")
