"""`cache_dir`: where rag keeps what it builds once and reuses (converted models, ONNX exports, eval indexes)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """`$RAG_CACHE_DIR`, else `~/.cache/rag`."""
    return Path(os.environ.get("RAG_CACHE_DIR") or Path.home() / ".cache" / "rag")
