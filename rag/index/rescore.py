"""Rescoring a shortlist: the exact scores of each query's candidates against stored rows.

Indexes that search a cheap form of their vectors (sign bits, PQ codes, int8 codes, the first
dimensions of a Matryoshka embedding) fetch `k * rescore_multiplier` candidates, then rank them
here against rows that usually stay on disk, memory-mapped: only the shortlist is read.
"""

from __future__ import annotations

import numpy as np

from rag.core.errors import InvalidArgumentError
from rag.embed.quantize import dequantize

__all__ = ["RESCORE_METRICS", "rescore", "score_block"]

RESCORE_METRICS = ("ip", "l2", "cosine")
_BLOCK = 1 << 21  # floats gathered at once (8 MB), which bounds the memory of large batches


def rescore(
    queries: np.ndarray,
    candidates: np.ndarray,
    rows: np.ndarray,
    k: int,
    ranges: np.ndarray | None = None,
    metric: str = "ip",
) -> tuple[np.ndarray, np.ndarray]:
    """Each query's `k` best candidates by their exact score against `rows`, best first.

    `candidates` holds row numbers (queries x n), -1 where there is none (as FAISS returns them);
    `rows` are float32, float16 or int8 codes (read back with `ranges`). `metric` is "ip" (inner
    product), "l2" (negated squared distance) or "cosine" (inner product over the row's norm: for
    truncated rows of normalized vectors). Returns scores (queries x min(k, n), padded with -inf)
    and their row numbers (padded with -1); ties go to the lower row number.
    """
    if metric not in RESCORE_METRICS:
        raise InvalidArgumentError(f"rescore metric must be one of {RESCORE_METRICS}, got {metric!r}")
    queries = np.asarray(queries, dtype=np.float32)
    candidates = np.asarray(candidates, dtype=np.int64).reshape(len(queries), -1)
    rows = np.asarray(rows)  # a plain view of a memory map: cheaper to index
    step = max(1, _BLOCK // max(1, candidates.shape[1] * queries.shape[1]))
    if len(queries) <= step:
        return _rescore_block(queries, candidates, rows, k, ranges, metric)
    blocks = [
        _rescore_block(queries[at : at + step], candidates[at : at + step], rows, k, ranges, metric)
        for at in range(0, len(queries), step)
    ]
    return np.concatenate([b[0] for b in blocks]), np.concatenate([b[1] for b in blocks])


def score_block(
    queries: np.ndarray, rows: np.ndarray, ranges: np.ndarray | None = None, metric: str = "ip"
) -> np.ndarray:
    """The exact scores (queries x rows) of float `queries` against a block of stored `rows`, by `metric` as
    `rescore` takes it: one matrix product, without gathering rows."""
    if metric not in RESCORE_METRICS:
        raise InvalidArgumentError(f"rescore metric must be one of {RESCORE_METRICS}, got {metric!r}")
    queries = np.asarray(queries, dtype=np.float32)
    decoded = dequantize(np.asarray(rows), ranges)
    products = queries @ decoded.T
    if metric == "l2":
        return (2 * products - (queries**2).sum(axis=1)[:, None] - (decoded**2).sum(axis=1)[None, :]).astype(np.float32)
    if metric == "cosine":
        products /= np.maximum(np.linalg.norm(decoded, axis=1), 1e-12)[None, :]
    return products.astype(np.float32, copy=False)


def _rescore_block(
    queries: np.ndarray, candidates: np.ndarray, rows: np.ndarray, k: int, ranges: np.ndarray | None, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    part = np.sort(candidates, axis=1)  # ascending reads through a memory map
    missing = part < 0
    partial = bool(missing.any())
    gathered = dequantize(rows[np.where(missing, 0, part) if partial else part], ranges)  # (queries, n, dim)
    if metric == "l2":
        exact = -((gathered - queries[:, None, :]) ** 2).sum(axis=2)
    else:
        exact = np.matmul(gathered, queries[:, :, None])[..., 0]  # one matrix-vector product a query
        if metric == "cosine":
            exact /= np.maximum(np.linalg.norm(gathered, axis=2), 1e-12)
    exact = exact.astype(np.float32, copy=False)
    if partial:
        exact[missing] = -np.inf
    order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
    picked = (np.arange(len(part))[:, None], order)
    found = part[picked]
    if partial:
        found[missing[picked]] = -1
    return exact[picked], found
