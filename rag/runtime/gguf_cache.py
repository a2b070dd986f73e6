"""Convert a packaged GGUF checkpoint once into an ordinary transformers folder, and reuse it.

Loading a GGUF file through transformers dequantizes every tensor (40-45 s for SmolLM2-135M on
two cores); the converted folder reloads in about a second. The folder lives under
`rag.runtime.cache.cache_dir() / "models" / <name>` and is written atomically: the conversion goes into
a temporary folder beside it, which is renamed into place only when complete, under a file lock,
so two processes never convert at once and a crash never leaves a folder that looks valid.
A folder counts as valid when its marker file names the same source file, size and format.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from rag.core.errors import MissingDependencyError, ModelLoadError

__all__ = ["MARKER", "cached_folder", "convert_gguf", "is_converted"]

logger = logging.getLogger(__name__)

MARKER = "rag-gguf.json"
"""The file, written last, whose presence and content make a converted folder valid."""
_FORMAT = 1


def cached_folder(name: str) -> Path:
    """Where the converted copy of model `name` lives (it may not exist yet)."""
    from rag.runtime.cache import cache_dir

    return cache_dir() / "models" / name


def _source_info(gguf_path: Path) -> dict[str, Any]:
    return {"format": _FORMAT, "source": gguf_path.name, "size": gguf_path.stat().st_size, "dtype": "float32"}


def is_converted(folder: Path, gguf_path: Path) -> bool:
    """Whether `folder` holds a complete conversion of `gguf_path` (cheap: reads one small file)."""
    try:
        return json.loads((folder / MARKER).read_text()) == _source_info(gguf_path)
    except (OSError, ValueError):
        return False


def convert_gguf(gguf_path: Path, name: str) -> Path:
    """The converted folder for `gguf_path`, converting it first when it is missing or stale."""
    target = cached_folder(name)
    if is_converted(target, gguf_path):
        return target
    if not gguf_path.is_file():
        raise ModelLoadError(f"GGUF file {gguf_path} does not exist; reinstall the package that carries it")
    try:
        _convert_locked(gguf_path, target)
    except OSError as exc:
        raise ModelLoadError(
            f"cannot write the converted model {target}: {exc}; set RAG_CACHE_DIR to a writable folder "
            "with about 600 MB free"
        ) from exc
    return target


def _convert_locked(gguf_path: Path, target: Path) -> None:
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        if is_converted(target, gguf_path):  # another process finished while we waited
            return
        for leftover in target.parent.glob(f".{target.name}.tmp-*"):  # from a crashed conversion
            shutil.rmtree(leftover, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        tmp.chmod(0o755)
        try:
            _convert_into(gguf_path, tmp)
            (tmp / MARKER).write_text(json.dumps(_source_info(gguf_path)))
            if target.exists():  # stale or incomplete: move aside, then delete
                stale = target.parent / f".{target.name}.old-{os.getpid()}"
                os.replace(target, stale)
                shutil.rmtree(stale, ignore_errors=True)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _convert_into(gguf_path: Path, folder: Path) -> None:
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise MissingDependencyError("transformers", "generate", "converting a GGUF model") from exc
    started = time.perf_counter()
    logger.info("converting %s into %s (once; this takes about a minute)", gguf_path, folder)
    source, file = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=file)
        model: Any = AutoModelForCausalLM.from_pretrained(source, gguf_file=file, dtype=torch.float32)
    except ImportError as exc:
        raise MissingDependencyError("gguf", "generate", f"reading the GGUF file {gguf_path}") from exc
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"cannot read GGUF file {gguf_path}: {exc}") from exc
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    logger.info("converted %s in %.1f s", gguf_path.name, time.perf_counter() - started)
