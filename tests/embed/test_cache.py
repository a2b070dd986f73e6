"""The document embedding cache: only texts it has not seen are encoded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.embed.cache import ENV_VAR, EmbeddingCache, cached_encode


def fake_encode(calls: list[list[str]]):  # type: ignore[no-untyped-def]
    def encode(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return np.array([[len(t), t.count("a"), 1.0] for t in texts], dtype=np.float32)

    return encode


def test_encodes_only_the_misses_and_keeps_the_order(tmp_path: Path) -> None:
    cache, calls = EmbeddingCache(tmp_path), []
    first = cached_encode(cache, "m", ["aa", "b"], fake_encode(calls))
    again = cached_encode(cache, "m", ["ccc", "aa", "b"], fake_encode(calls))
    assert calls == [["aa", "b"], ["ccc"]]
    np.testing.assert_array_equal(again[1:], first)
    assert again.dtype == np.float32 and again.shape == (3, 3)


def test_models_do_not_share_entries(tmp_path: Path) -> None:
    cache, calls = EmbeddingCache(tmp_path), []
    cached_encode(cache, "model-a", ["x"], fake_encode(calls))
    cached_encode(cache, "model-b", ["x"], fake_encode(calls))
    assert calls == [["x"], ["x"]]


def test_off_unless_the_environment_names_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert EmbeddingCache.from_env() is None
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    cache = EmbeddingCache.from_env()
    assert cache is not None and cache.path == tmp_path / "embeddings.sqlite"
    calls: list[list[str]] = []
    assert cached_encode(None, "m", ["x"], fake_encode(calls)).shape == (1, 3) and calls == [["x"]]
