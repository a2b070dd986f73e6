"""JSON and `.npy` files of index folders: written once (never overwritten), read with clear errors."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rag.core.errors import IndexNotFoundError, IndexStoreError

__all__ = ["read_arrays", "read_json", "write_arrays", "write_json"]


def write_json(path: Path, value: Any) -> None:
    """Create `path` with `value` as JSON; an existing file is an error (files are never modified)."""
    with open(path, "x", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False)


def read_json(path: Path) -> Any:
    """The JSON in `path`; a missing file is `IndexNotFoundError`, an unreadable one `IndexStoreError`."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as exc:
        raise IndexNotFoundError(f"no index file {path}; build the index first") from exc
    except (OSError, ValueError) as exc:
        raise IndexStoreError(_damaged(path, exc)) from exc


def write_arrays(directory: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Create `NAME.npy` in `directory` for each array (no pickle); an existing file is `FileExistsError`."""
    for name, array in arrays.items():
        with open(directory / f"{name}.npy", "xb") as f:
            np.save(f, np.ascontiguousarray(array), allow_pickle=False)


def read_arrays(directory: Path, names: Iterable[str]) -> dict[str, np.ndarray]:
    """The arrays `NAME.npy` in `directory`, memory-mapped read-only; errors as for `read_json`."""
    arrays = {}
    for name in names:
        path = directory / f"{name}.npy"
        try:
            arrays[name] = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError as exc:
            raise IndexNotFoundError(f"no index file {path}; build the index first") from exc
        except (OSError, ValueError, EOFError) as exc:
            raise IndexStoreError(_damaged(path, exc)) from exc
    return arrays


def _damaged(path: Path, exc: BaseException) -> str:
    reason = " ".join(str(exc).split())[:120] or type(exc).__name__
    return f"index damaged: {path} cannot be read ({reason}); rebuild the index (rag index FOLDER --rebuild)"
