"""Embedding precision: float32, float16, int8 (calibrated per dimension) and binary (sign bits).

Pure numpy, matching `sentence_transformers.quantization.quantize_embeddings` (a test checks it):

- "int8": `ranges` is a (2, dimension) array of per-dimension minimum and maximum, computed from a
  calibration sample by `calibration_ranges` (per dimension from `MIN_CALIBRATION` vectors up); a
  value falls in bucket `clip(floor((x - min) / step), 0, 255)` with `step = (max - min) / 255`
  (1 where max == min), stored as `bucket - 128` in int8: sentence-transformers' "int8" codes.
- "binary": the sign bits (`x > 0`) packed with `np.packbits` into uint8, `ceil(dimension / 8)`
  bytes a row: sentence-transformers' "ubinary" (its "binary" is the same bytes minus 128, as int8).
  This is the layout FAISS binary indexes take.

Rescoring scores a float query against stored rows. int8 rows are read back as their bucket
midpoints `min + (bucket + 0.5) * step` (sentence-transformers uses the bucket's lower edge, which
shifts every score of a query by the same amount and so ranks the same); FAISS' 8-bit scalar
quantizer decodes the same way when given these ranges.
"""

from __future__ import annotations

import logging

import numpy as np

from rag.core.errors import InvalidArgumentError

__all__ = [
    "MIN_CALIBRATION",
    "PRECISIONS",
    "calibration_ranges",
    "dequantize",
    "int8_query",
    "quantize",
    "score_rows",
]

logger = logging.getLogger(__name__)

PRECISIONS = ("float32", "float16", "int8", "binary")
MIN_CALIBRATION = 100


def calibration_ranges(vectors: np.ndarray) -> np.ndarray:
    """Per-dimension (min, max) of a calibration sample, as a (2, dimension) float32 array.

    A sample of fewer than `MIN_CALIBRATION` vectors cannot bound each dimension, so every
    dimension gets the sample's overall minimum and maximum instead (with a logged warning); this
    also lets an index calibrate on a single first vector.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or not len(vectors):
        raise InvalidArgumentError(
            f"int8 calibration needs a non-empty 2-d array of vectors, got shape {vectors.shape}"
        )
    if len(vectors) < MIN_CALIBRATION:
        logger.warning(
            "int8 ranges calibrated on only %d vectors: using their overall range for every dimension", len(vectors)
        )
        return np.repeat([[vectors.min()], [vectors.max()]], vectors.shape[1], axis=1).astype(np.float32)
    return np.vstack([vectors.min(axis=0), vectors.max(axis=0)]).astype(np.float32)


def quantize(vectors: np.ndarray, precision: str, ranges: np.ndarray | None = None) -> np.ndarray:
    """`vectors` (n x dimension, float) in `precision`; int8 uses `ranges` (calibrated on `vectors` if None)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if precision == "float32":
        return vectors
    if precision == "float16":
        return vectors.astype(np.float16)
    if precision == "binary":
        return np.packbits(vectors > 0, axis=-1)
    if precision == "int8":
        start, step = _start_step(calibration_ranges(vectors) if ranges is None else ranges)
        buckets = np.clip(np.floor((vectors - start) / step), 0, 255)
        return (buckets - 128).astype(np.int8)
    raise InvalidArgumentError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def dequantize(rows: np.ndarray, ranges: np.ndarray | None = None) -> np.ndarray:
    """float32 / float16 / int8 rows back as float32 (int8 as bucket midpoints, which needs `ranges`)."""
    if rows.dtype == np.int8:
        if ranges is None:
            raise InvalidArgumentError("int8 rows need their calibration ranges to be read back")
        start, step = _start_step(ranges)
        return ((rows.astype(np.float32) + 128.5) * step + start).astype(np.float32)
    return np.asarray(rows, dtype=np.float32)


def score_rows(query: np.ndarray, rows: np.ndarray, ranges: np.ndarray | None = None, metric: str = "ip") -> np.ndarray:
    """Scores of one float `query` against stored `rows`: inner product, or negated squared L2."""
    decoded = dequantize(rows, ranges)
    if metric == "ip":
        return decoded @ np.asarray(query, dtype=np.float32)
    return -((decoded - query) ** 2).sum(axis=1)


def int8_query(queries: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """Float queries as integer weights in [-127, 127] for searching int8 codes by inner product.

    A row's score against its bucket midpoints is `queries @ start + (queries * step) @ (code + 128.5)`,
    so `(queries * step) @ code` ranks rows the same way; these weights are that vector scaled and
    rounded to integers, for FAISS' 8-bit integer kernels. Rounding perturbs near-ties, so rescore a
    shortlist with `score_rows`.
    """
    _, step = _start_step(ranges)
    weights = np.asarray(queries, dtype=np.float32) * step
    scale = 127 / np.maximum(np.abs(weights).max(axis=1, keepdims=True), np.finfo(np.float32).tiny)
    return np.rint(weights * scale).astype(np.float32)


def _start_step(ranges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ranges = np.asarray(ranges, dtype=np.float32)
    if ranges.ndim != 2 or ranges.shape[0] != 2:
        raise InvalidArgumentError(
            f"int8 ranges must be a (2, dimension) array of min and max, got shape {ranges.shape}"
        )
    step = (ranges[1] - ranges[0]) / 255
    return ranges[0], np.where(step == 0, 1, step).astype(np.float32)
