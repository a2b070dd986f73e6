"""JSON files of index folders: written once (never overwritten), read with clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rag.core.errors import IndexNotFoundError, IndexStoreError

__all__ = ["read_json", "write_json"]


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
        raise IndexStoreError(f"cannot read {path}: {exc}") from exc
