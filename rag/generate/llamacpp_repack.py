"""Whether llama.cpp's repacked weight layouts run on this machine, checked in a child process.

llama.cpp copies weights into CPU-specific layouts when the model loads (its "extra buffer types"): on CPUs
with Intel AMX, the AMX tile kernels, which process a long prompt 2.5-3.6x faster and decode 1.5-1.9x faster
(docs/generation.md). Some builds cannot run those kernels: llama-cpp-python 0.3.36 compiled by
GCC 12 drops the stores that fill the AMX tile configuration, and the first prompt stops the whole process
with an illegal instruction. Python cannot catch that, so a child process loads the model with the layouts
on and runs a prompt batch and one token before this process relies on them.
"""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
from pathlib import Path

__all__ = ["REBUILD_HINT", "cpu_has_amx", "repacked_kernels_fail"]

REBUILD_HINT = (
    "rebuild llama-cpp-python so that GCC keeps the tile configuration: "
    "CMAKE_ARGS='-DCMAKE_CXX_FLAGS=\"-fno-tree-dse -fno-dse\"' pip install --no-cache-dir --force-reinstall "
    "'llama-cpp-python>=0.3.36,<0.4' (docs/generation.md, 'Installing llama-cpp-python')"
)

_PROBE = """
import sys
import llama_cpp
import llama_cpp.llama_cpp as bindings
defaults = bindings.llama_model_default_params
def repacked():
    params = defaults()
    params.use_extra_bufts = True
    return params
bindings.llama_model_default_params = repacked
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=256, n_threads=1, n_threads_batch=1, verbose=False)
tokens = [i % llm.n_vocab() for i in range(1, 65)]
llm.eval(tokens)      # a prompt batch: the matrix kernels
llm.eval(tokens[:1])  # one token: the vector kernels
"""
"""Run by `sys.executable`; it imports only llama_cpp, so it works wherever this process can import it."""


def cpu_has_amx(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True when the CPU advertises AMX tiles (Linux; False where /proc/cpuinfo cannot be read)."""
    try:
        with cpuinfo.open() as handle:
            flags = next((line for line in handle if line.startswith("flags")), "")
    except OSError:
        return False
    return "amx_tile" in flags.split()


@functools.cache
def repacked_kernels_fail(model: Path, timeout_s: float = 300.0) -> str | None:
    """Why llama.cpp's repacked layouts cannot run `model` here, or None when they can (or have no AMX kernels).

    On a CPU without AMX nothing is run: the other layouts are llama.cpp's ordinary vector code. Only a child
    stopped by a signal, or one that does not finish, counts against the layouts: a file llama.cpp cannot read
    is reported when this process loads it. The answer is kept for the rest of the process (one child per file).
    """
    if not cpu_has_amx():
        return None
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, str(model)], capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return f"a test of its AMX kernels on '{model}' did not finish in {timeout_s:.0f} s"
    if done.returncode >= 0:  # ran, or could not load the file: loading it here reports why
        return None
    return f"a process running llama.cpp's AMX kernels on '{model}' was stopped by {_signal_name(-done.returncode)}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
