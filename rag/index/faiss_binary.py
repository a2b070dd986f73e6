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

import logging
from collections import Counter
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.core.errors import ConfigError, IndexStoreError
from rag.embed.quantize import calibration_ranges, quantize
from rag.index import faiss_types
from rag.index.faiss_types import import_faiss
from rag.index.files import read_json, write_json
from rag.index.rescore import rescore

__all__ = ["RESCORE_PRECISIONS", "BinaryFaissIndex"]

logger = logging.getLogger(__name__)

FORMAT = "rag.faiss-binary/1"
RESCORE_PRECISIONS = ("float32", "int8")


class BinaryFaissIndex:
    """Float vectors under string ids, searched by their sign bits and rescored (inner product)."""

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
        self.dimension = dimension
        self.factory = factory
        self.rescore_precision = rescore_precision
        self.rescore_multiplier = rescore_multiplier
        self.nprobe = nprobe
        self.ef_search = ef_search
        self.device = faiss_types.check_device(device)
        self.ids: list[str] = []
        self.codes = np.zeros((0, -(-(dimension or 0) // 8)), dtype=np.uint8)
        self.rows = np.zeros((0, dimension or 0), dtype=np.dtype(rescore_precision))
        self.ranges: np.ndarray | None = None
        """int8 rescoring rows only: the (2, dimension) calibration ranges, set by the first `add` if None."""
        self._rows: dict[str, int] = {}
        self._faiss: Any = None
        self._built_as = ""
        self._saved: tuple[Path, str] | None = None
        self._trained: tuple[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._rows

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add one float row of `vectors` (n x dimension) under each new, unique id."""
        vectors = self._check(vectors, "add")
        if len(ids) != len(vectors):
            raise ValueError(f"BinaryFaissIndex.add got {len(ids)} ids for {len(vectors)} vectors")
        duplicates = [i for i, n in Counter(ids).items() if n > 1 or i in self._rows]
        if duplicates:
            raise IndexStoreError(f"BinaryFaissIndex.add: ids already in the index or repeated: {duplicates[:5]}")
        if self.dimension is None:
            self.dimension = vectors.shape[1]
            self.codes = self.codes.reshape(0, -(-self.dimension // 8))
            self.rows = self.rows.reshape(0, self.dimension)
        if not len(vectors):
            return
        if self.rescore_precision == "int8" and self.ranges is None:
            self.ranges = calibration_ranges(vectors)
        if self._saved is not None:
            self._built()
        start = len(self.ids)
        self._rows.update((item_id, start + n) for n, item_id in enumerate(ids))
        self.ids.extend(ids)
        codes = quantize(vectors, "binary")
        self.codes = np.concatenate([self.codes, codes])
        self.rows = np.concatenate([self.rows, quantize(vectors, self.rescore_precision, self.ranges)])
        if self._faiss is not None:
            if self._resolved() == self._built_as:
                with faiss_types.single_threaded():
                    self._faiss.add(codes)
            else:
                self._faiss = None

    def remove(self, ids: Collection[str]) -> None:
        """Drop the rows with these ids (unknown ids are ignored); the binary structure is rebuilt lazily."""
        drop = [self._rows[i] for i in set(ids) if i in self._rows]
        if not drop:
            return
        self._keep_training()
        keep = np.ones(len(self.ids), dtype=bool)
        keep[drop] = False
        self.codes, self.rows = self.codes[keep], self.rows[keep]
        self.ids = [i for i, k in zip(self.ids, keep, strict=True) if k]
        self._rows = {item_id: row for row, item_id in enumerate(self.ids)}
        self._faiss, self._saved = None, None

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[list[str]]]:
        """The `k` best rows for each float query: rescored inner products (best first, -inf padded) and ids."""
        queries = self._check(queries, "search")
        k = min(k, len(self.ids))
        if k <= 0:
            return np.zeros((len(queries), 0), dtype=np.float32), [[] for _ in range(len(queries))]
        index = self._built()
        fetch = min(len(self.ids), k * self.rescore_multiplier)
        if self._built_as != "BFlat":
            faiss_types.set_search_params(index, self.nprobe, self.ef_search, fetch)
        with faiss_types.single_threaded():
            _, candidates = index.search(quantize(queries, "binary"), fetch)
        scores, rows = rescore(queries, candidates, self.rows, k, self.ranges)
        ids = self.ids
        return scores, [[ids[r] for r in row if r >= 0] for row in rows.tolist()]

    def save(self, directory: Path) -> None:
        """Write the index as new files in `directory` (created if needed; files never overwritten)."""
        directory.mkdir(parents=True, exist_ok=True)
        structure = self._resolved() if self.ids else "BFlat"
        manifest = {
            "format": FORMAT,
            "dimension": self.dimension,
            "factory": self.factory,
            "rescore_precision": self.rescore_precision,
            "count": len(self.ids),
            "structure": structure if structure != "BFlat" else None,
        }
        arrays = {"codes.npy": self.codes, "rows.npy": self.rows}
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
                    f.write(import_faiss().serialize_index_binary(faiss_types.to_cpu(self._built())).tobytes())
        except FileExistsError as exc:
            raise IndexStoreError(f"BinaryFaissIndex.save: {exc.filename} exists; save needs an empty folder") from exc

    @classmethod
    def load(cls, directory: Path, **search_settings: Any) -> BinaryFaissIndex:
        """Open an index written by `save`; codes and rescoring rows are memory-mapped read-only.

        `search_settings` (rescore_multiplier, nprobe, ef_search, device) only change how it searches.
        """
        manifest = read_json(directory / "manifest.json")
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise IndexStoreError(f"{directory} is not a binary FAISS index (expected format {FORMAT!r})")
        index = cls(manifest["dimension"], manifest["factory"], manifest["rescore_precision"], **search_settings)
        index.ids = list(read_json(directory / "ids.json"))
        codes, rows = (np.load(directory / n, mmap_mode="r", allow_pickle=False) for n in ("codes.npy", "rows.npy"))
        if not len(index.ids) == manifest["count"] == len(codes) == len(rows):
            raise IndexStoreError(f"binary FAISS index in {directory} is inconsistent: counts disagree")
        if index.ids:
            index.codes, index.rows = codes, rows
        if (directory / "ranges.npy").exists():
            index.ranges = np.load(directory / "ranges.npy", allow_pickle=False)
        if manifest.get("structure"):
            index._saved = (directory / "faiss.index", manifest["structure"])
        index._rows = {item_id: row for row, item_id in enumerate(index.ids)}
        return index

    def _check(self, vectors: np.ndarray, action: str) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"BinaryFaissIndex.{action} needs a 2-d array of vectors, got shape {vectors.shape}")
        if self.dimension is not None and vectors.shape[1] != self.dimension:
            raise IndexStoreError(
                f"BinaryFaissIndex.{action}: vectors have dimension {vectors.shape[1]}, the index holds "
                f"dimension {self.dimension}; the embedding model differs from the one the index was built with"
            )
        return vectors

    def _resolved(self) -> str:
        return faiss_types.resolve_factory(self.factory, len(self.ids), self.dimension or 0, binary=True)

    def _built(self) -> Any:
        if self._faiss is None:
            faiss = import_faiss()
            wanted = self._resolved()
            with faiss_types.single_threaded():
                if self._saved is not None and self._saved[1] == wanted:
                    index = faiss.read_index_binary(str(self._saved[0]))
                else:
                    index = self._empty(wanted)
                    index.add(np.ascontiguousarray(self.codes))
            self._saved = None
            self._faiss, self._built_as = faiss_types.to_gpu(index, self.device, binary=True), wanted
        return self._faiss

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
            faiss_types.train(index, sample, factory)
            self._trained = (factory, faiss.clone_binary_index(index))
        return index

    def _keep_training(self) -> None:
        """Before rows are dropped: keep a trained structure's training, emptied, to rebuild from."""
        factory = self._built_as if self._faiss is not None else self._saved[1] if self._saved else "BFlat"
        if not factory.startswith("BIVF"):
            return
        faiss = import_faiss()
        if self._faiss is not None:
            index = faiss.clone_binary_index(faiss_types.to_cpu(self._faiss))
        else:
            index = faiss.read_index_binary(str(self._saved[0]))  # type: ignore[index]
        index.reset()
        self._trained = (factory, index)
