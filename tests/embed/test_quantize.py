import logging

import numpy as np
import pytest

from rag.embed.quantize import calibration_ranges, dequantize, int8_query, quantize, score_rows


def sample(n: int = 300, dim: int = 20, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def test_int8_codes_follow_the_calibrated_buckets():
    vectors = sample()
    ranges = calibration_ranges(vectors)
    np.testing.assert_array_equal(ranges, [vectors.min(axis=0), vectors.max(axis=0)])
    codes = quantize(vectors, "int8", ranges)
    assert codes.dtype == np.int8
    assert codes.min() == -128 and codes.max() == 127  # the extremes land in the end buckets
    step = (ranges[1] - ranges[0]) / 255
    expected = np.clip(np.floor((vectors - ranges[0]) / step), 0, 255) - 128
    np.testing.assert_array_equal(codes, expected)
    np.testing.assert_array_equal(quantize(vectors, "int8"), codes)  # ranges default to the vectors' own


def test_int8_reads_back_within_half_a_bucket_and_clips_outside_the_ranges():
    vectors = sample()
    ranges = calibration_ranges(vectors[:100])
    decoded = dequantize(quantize(vectors, "int8", ranges), ranges)
    step = (ranges[1] - ranges[0]) / 255
    inside = (vectors >= ranges[0]) & (vectors <= ranges[1])
    assert (~inside).any()
    error = np.abs(decoded - vectors)
    assert np.all(error[inside] <= np.broadcast_to(step / 2, vectors.shape)[inside] + 1e-5)
    # values outside the ranges are clipped into the end buckets (255 holds the maximum itself)
    assert np.all((decoded >= ranges[0] + step / 2 - 1e-5) & (decoded <= ranges[1] + step / 2 + 1e-5))


def test_a_constant_dimension_uses_a_step_of_one():
    vectors = sample(150, 4)
    vectors[:, 2] = 0.25
    codes = quantize(vectors, "int8")
    assert set(codes[:, 2].tolist()) == {-128}
    np.testing.assert_allclose(dequantize(codes, calibration_ranges(vectors))[:, 2], 0.75)


def test_binary_packs_sign_bits():
    vectors = np.array([[1.0, -1.0, 0.0, 2.0, -0.5, 0.1, 0.2, -3.0, 4.0]], dtype=np.float32)
    bits = quantize(vectors, "binary")
    assert bits.dtype == np.uint8 and bits.shape == (1, 2)
    assert bits.tolist() == [[0b10010110, 0b10000000]]


def test_float_precisions():
    vectors = sample(5, 3)
    assert quantize(vectors, "float32").dtype == np.float32
    half = quantize(vectors, "float16")
    assert half.dtype == np.float16
    np.testing.assert_allclose(dequantize(half), vectors, atol=1e-3)
    with pytest.raises(ValueError, match="precision"):
        quantize(vectors, "int4")


def test_score_rows_matches_the_float_scores_closely():
    vectors = sample()
    query = sample(1, seed=1)[0]
    ranges = calibration_ranges(vectors)
    float_scores = vectors @ query
    np.testing.assert_allclose(score_rows(query, vectors), float_scores, rtol=1e-6)
    int8_scores = score_rows(query, quantize(vectors, "int8", ranges), ranges)
    assert np.corrcoef(int8_scores, float_scores)[0, 1] > 0.999
    l2 = score_rows(query, vectors, metric="l2")
    np.testing.assert_allclose(l2, -((vectors - query) ** 2).sum(axis=1), rtol=1e-5)


def test_a_small_sample_calibrates_every_dimension_on_its_overall_range(caplog):
    small = sample(10)
    with caplog.at_level(logging.WARNING, logger="rag.embed.quantize"):
        ranges = calibration_ranges(small)
    assert "only 10 vectors" in caplog.text
    np.testing.assert_array_equal(ranges, np.repeat([[small.min()], [small.max()]], small.shape[1], axis=1))
    single = calibration_ranges(small[:1])
    assert np.all(single[0] == small[0].min()) and np.all(single[1] == small[0].max())
    with pytest.raises(ValueError, match="non-empty"):
        calibration_ranges(small[:0])
    with pytest.raises(ValueError, match="ranges"):
        dequantize(np.zeros((1, 3), dtype=np.int8))


def test_codes_equal_sentence_transformers_quantize_embeddings():
    quantization = pytest.importorskip("sentence_transformers.util.quantization")
    vectors = sample(400, 33)
    calibration = vectors[:200]
    ranges = calibration_ranges(calibration)
    theirs = quantization.quantize_embeddings(vectors, "int8", calibration_embeddings=calibration)
    np.testing.assert_array_equal(quantize(vectors, "int8", ranges), theirs)
    np.testing.assert_array_equal(quantize(vectors, "binary"), quantization.quantize_embeddings(vectors, "ubinary"))
    signed = quantization.quantize_embeddings(vectors, "binary")
    np.testing.assert_array_equal(quantize(vectors, "binary").astype(np.int16) - 128, signed)


def test_int8_query_weights_rank_codes_like_the_midpoint_scores():
    vectors, queries = sample(), sample(5, seed=3)
    ranges = calibration_ranges(vectors)
    codes = quantize(vectors, "int8", ranges)
    weights = int8_query(queries, ranges)
    assert np.all(weights == np.rint(weights)) and np.abs(weights).max() == 127
    integer_scores = weights @ codes.T.astype(np.float32)
    for query, row in zip(queries, integer_scores, strict=True):
        exact = score_rows(query, codes, ranges)
        assert np.corrcoef(row, exact)[0, 1] > 0.999
        assert np.argmax(exact) in np.argsort(-row)[:5]
