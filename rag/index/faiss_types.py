"""FAISS index types shared by the float and binary indexes: presets, training, search parameters, device.

A `factory` is either a FAISS `index_factory` string ("Flat", "IVF1024,Flat", "IVF1024,PQ48",
"HNSW32", "HNSW32,SQ8"; for binary indexes "BFlat", "BIVF256") or one of the named presets, which
pick parameters from the number of vectors when the index is built:

    preset   float index                          binary index
    flat     Flat (exact)                         BFlat (exact Hamming)
    ivf      IVF{nlist},{storage}                 BIVF{nlist}
    ivfpq    IVF{nlist},PQ{dimension/8}np         -
    hnsw     HNSW32 (,{storage} below float32)    BHNSW32

`{storage}` follows the precision: Flat (float32), SQfp16 (float16), SQ8 (int8).
`nlist` is the power of two nearest 4 * sqrt(n), at most n / 39 (FAISS' minimum of training
points per centroid), so it changes, and the index is retrained, only when the corpus grows or
shrinks about 4x. Below `MIN_APPROXIMATE` vectors every preset is exact Flat: approximate search
does not pay at that size. An explicit factory string is used as given, and one that cannot be
trained on the vectors at hand (fewer vectors than IVF lists or PQ centroids) is a `ConfigError`;
a binary one may leave out its leading "B" ("Flat" is "BFlat").
Training uses at most `TRAIN_SAMPLE` rows drawn with a fixed seed, so a rebuild trains the same way.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from rag.core.errors import ConfigError, MissingDependencyError

__all__ = ["DEVICES", "MIN_APPROXIMATE", "PRESETS", "TRAIN_SAMPLE", "import_faiss", "resolve_factory"]

logger = logging.getLogger(__name__)

PRESETS = ("flat", "ivf", "ivfpq", "hnsw")
BINARY_PRESETS = ("flat", "ivf", "hnsw")
DEVICES = ("auto", "cpu", "cuda")
MIN_APPROXIMATE = 10_000
TRAIN_SAMPLE = 100_000
MIN_QUERIES_PER_THREAD = 16
STORAGE = {"float32": "Flat", "float16": "SQfp16", "int8": "SQ8"}


def import_faiss() -> Any:
    """The faiss module, or a `MissingDependencyError` naming the extra."""
    try:
        import faiss
    except ImportError as exc:
        raise MissingDependencyError("faiss-cpu", "faiss", "vector search with FAISS") from exc
    return faiss


def check_device(device: str) -> str:
    if device not in DEVICES:
        raise ConfigError(f"FAISS device must be one of {DEVICES}, got {device!r}")
    return device


def ivf_lists(count: int) -> int:
    """The number of IVF lists a preset uses for `count` vectors."""
    wanted = 2 ** round(math.log2(4 * math.sqrt(max(count, 1))))
    most = 2 ** int(math.log2(max(count // 39, 1)))
    return max(1, min(wanted, most))


def resolve_factory(factory: str, count: int, dimension: int, precision: str = "float32", binary: bool = False) -> str:
    """The FAISS factory string for a preset (or `factory` itself when it is not a preset)."""
    presets = BINARY_PRESETS if binary else PRESETS
    if factory not in presets:
        if factory in PRESETS:
            raise ConfigError(f"preset {factory!r} does not apply to binary indexes; use one of {presets}")
        return "B" + factory if binary and not factory.startswith("B") else factory
    if factory == "flat" or count < MIN_APPROXIMATE:
        return "BFlat" if binary else "Flat"
    nlist = ivf_lists(count)
    if binary:
        return f"BIVF{nlist}" if factory == "ivf" else "BHNSW32"
    storage = STORAGE.get(precision, "Flat")
    if factory == "ivf":
        return f"IVF{nlist},{storage}"
    if factory == "ivfpq":
        m = max(m for m in range(1, max(dimension // 8, 1) + 1) if dimension % m == 0)
        return f"IVF{nlist},PQ{m}np"  # np: no polysemous training, which only Hamming-filtered search uses
    return "HNSW32" if storage == "Flat" else f"HNSW32,{storage}"


def sample_rows(count: int, limit: int | None = None) -> np.ndarray:
    """Sorted row numbers of a training sample: all rows, or `limit` (`TRAIN_SAMPLE`) drawn with a fixed seed."""
    limit = TRAIN_SAMPLE if limit is None else limit
    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng(0).choice(count, size=limit, replace=False))


def train(index: Any, sample: np.ndarray, factory: str) -> None:
    """Train `index` on `sample`; too few vectors for this type is a `ConfigError`."""
    logger.info("training FAISS index %s on %d vectors", factory, len(sample))
    try:
        index.train(sample)
    except RuntimeError as exc:
        raise ConfigError(
            f"FAISS factory {factory!r} cannot be trained on {len(sample)} vectors ({exc}); "
            "use a preset ('ivf', 'ivfpq', 'hnsw'), which sizes itself to the corpus, or 'Flat'"
        ) from exc


def set_search_params(index: Any, nprobe: int | None, ef_search: int | None, k: int) -> None:
    """Apply `nprobe` (IVF; default nlist / 16, at least 8) and `efSearch` (HNSW; default 64, at least k)."""
    ivf = ivf_of(index)
    if ivf is not None:
        ivf.nprobe = ivf_nprobe(ivf, nprobe)
    hnsw = getattr(index, "hnsw", None)
    if hnsw is not None:
        hnsw.efSearch = max(ef_search or 64, k)


def ivf_of(index: Any) -> Any:
    """The IVF structure inside a FAISS `index` (float or binary), or None."""
    faiss = import_faiss()
    return _try(faiss.extract_index_ivf, index) or (index if hasattr(index, "nlist") else None)


def ivf_nprobe(ivf: Any, nprobe: int | None) -> int:
    """The lists an IVF search probes: `nprobe`, by default nlist / 16 (at least 8), at most nlist."""
    return int(min(ivf.nlist, nprobe or max(8, ivf.nlist // 16)))


def resolve_device(device: str) -> str:
    """The device a setting resolves to: "cpu" or "cuda" ("cuda" needs a GPU build of FAISS and a GPU)."""
    faiss = import_faiss()
    usable = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    if device == "cuda" and not usable:
        raise ConfigError(
            "FAISS device='cuda' was asked for but "
            + ("no GPU is visible" if hasattr(faiss, "StandardGpuResources") else "this faiss build has no GPU support")
            + "; install faiss-gpu on a CUDA machine, or use device='cpu' or device='auto'"
        )
    return "cuda" if device == "cuda" or (device == "auto" and usable) else "cpu"


def to_gpu(index: Any, device: str, binary: bool = False) -> Any:
    """`index` copied to GPU 0 when `device` resolves to "cuda"; with "auto", types FAISS cannot move stay on CPU."""
    if resolve_device(device) == "cpu":
        return index
    faiss = import_faiss()
    try:
        if binary:
            return faiss.GpuIndexBinaryFlat(_gpu_resources(), index)
        return faiss.index_cpu_to_gpu(_gpu_resources(), 0, index)
    except (RuntimeError, TypeError) as exc:
        if device == "cuda":
            raise ConfigError(f"FAISS cannot place this index type on the GPU ({exc}); use device='cpu'") from exc
        logger.warning("FAISS index stays on CPU: this type cannot move to the GPU (%s)", exc)
        return index


def to_cpu(index: Any) -> Any:
    """A CPU copy of a GPU index (for saving); a CPU index unchanged."""
    faiss = import_faiss()
    if "Gpu" not in type(index).__name__:
        return index
    if isinstance(index, faiss.IndexBinary):  # only GpuIndexBinaryFlat exists
        cpu = faiss.IndexBinaryFlat(index.d)
        index.copyTo(cpu)
        return cpu
    return faiss.index_gpu_to_cpu(index)


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run FAISS calls in this block on one OpenMP thread (the setting is per calling thread).

    FAISS' binary (Hamming) search is much slower multi-threaded here: 100k x 384 bits, one query,
    1 ms on one thread and 32 ms on two; a batch of 100, 0.7 against 1.8 ms a query.
    """
    faiss = import_faiss()
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(threads)


def search_in_threads(
    search: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], queries: np.ndarray, index: Any
) -> tuple[np.ndarray, np.ndarray]:
    """`search(queries)` with every FAISS call on one thread, a large batch split into one block per thread.

    For FAISS' binary search, which its own OpenMP threads slow down (see `single_threaded`): blocks of
    at least `MIN_QUERIES_PER_THREAD` queries run side by side on FAISS' number of threads (FAISS releases
    the GIL). `search` returns row-aligned arrays (scores, rows), concatenated in query order. GPU
    indexes get the whole batch in one call.
    """

    def search_block(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with single_threaded():
            return search(block)

    blocks = min(import_faiss().omp_get_max_threads(), len(queries) // MIN_QUERIES_PER_THREAD)
    if blocks < 2 or "Gpu" in type(index).__name__:
        return search_block(queries)
    parts = list(_search_pool(blocks).map(search_block, np.array_split(queries, blocks)))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@functools.cache
def _search_pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="rag-faiss-search")


@functools.cache
def _gpu_resources() -> Any:
    """One set of GPU resources for the process, alive as long as the indexes that use it."""
    return import_faiss().StandardGpuResources()


def _try(function: Any, index: Any) -> Any:
    try:
        return function(index)
    except (RuntimeError, TypeError):
        return None
