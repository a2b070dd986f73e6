"""Turn one file into a `Document`: the loader is chosen by the file's extension.

A loader takes a path and returns `(text, extras)`; `load_document` adds `title` (the file stem
when the loader found none), `mtime` and `size`, and turns every problem into a `LoaderError`
with a short reason. Files with an extension not in `LOADERS` are read as UTF-8 plain text.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from rag.core.errors import LoaderError
from rag.core.limits import ReadLimits
from rag.core.types import Document
from rag.ingest.loaders._common import (
    BINARY_DOCUMENT_SUFFIXES,
    SNIFF_BYTES,
    Loader,
    detect_encoding,
    looks_binary,
    shorten,
)
from rag.ingest.loaders.docx import load_docx
from rag.ingest.loaders.html import load_html
from rag.ingest.loaders.pdf import load_pdf
from rag.ingest.loaders.structured import load_csv, load_json, load_jsonl
from rag.ingest.loaders.text import CODE_LANGUAGES, load_code, load_markdown, load_rst, load_text

__all__ = [
    "BINARY_DOCUMENT_SUFFIXES",
    "LOADERS",
    "SNIFF_BYTES",
    "Loader",
    "load_document",
    "looks_binary",
    "read_bytes",
    "supported_extensions",
]

logger = logging.getLogger(__name__)

LOADERS: dict[str, Loader] = {
    ".txt": load_text,
    ".text": load_text,
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".rst": load_rst,
    ".html": load_html,
    ".htm": load_html,
    ".xhtml": load_html,
    ".pdf": load_pdf,
    ".docx": load_docx,
    ".json": load_json,
    ".jsonl": load_jsonl,
    ".ndjson": load_jsonl,
    ".csv": load_csv,
    ".tsv": load_csv,
    **dict.fromkeys(CODE_LANGUAGES, load_code),
}
"""Lower-case extension (with the dot) -> loader."""

_NO_TEXT_HINTS = {
    ".pdf": "it may be a scanned PDF without a text layer; run OCR on it first",
    ".docx": "the document has no paragraphs or tables with text",
}
DEFAULT_LIMITS = ReadLimits()


def supported_extensions() -> list[str]:
    """The extensions with a dedicated loader, sorted; any other text file is read as plain text."""
    return sorted(LOADERS)


def load_document(path: Path, root: Path, limits: ReadLimits = DEFAULT_LIMITS) -> Document:
    """Load the file at `path` as a Document whose `path` is relative to `root` (POSIX form).

    The file is read once; its metadata holds `sha256`, the hash of exactly the bytes that were parsed (a file
    rewritten while it is indexed is then indexed with the hash of what was read, never another version's).
    Raises LoaderError when the file is empty, over one of the `limits` (its size, or what it expands to),
    unreadable, not text in an encoding that can be detected, damaged, or has no extractable text.
    """
    path = Path(path)
    relative = _relative(path, Path(root))
    suffix = path.suffix.lower()
    try:
        data, stat = _read(path, limits.max_bytes)
        text, extras = LOADERS.get(suffix, load_text)(data, path, limits)
        limits.check_text(len(text))
    except LoaderError as exc:
        raise LoaderError(exc.reason, path=str(path)) from None
    except OSError as exc:
        raise LoaderError(f"cannot read: {exc.strerror or shorten(exc)}", path=str(path)) from None
    except Exception as exc:  # a parser failing in a way its loader did not foresee
        logger.debug("loader for %s failed", path, exc_info=True)
        raise LoaderError(f"cannot parse {suffix or 'file'}: {shorten(exc)}", path=str(path)) from None
    if not text.strip():
        hint = _NO_TEXT_HINTS.get(suffix, "the file holds only whitespace or markup")
        raise LoaderError(f"no text could be extracted; {hint}", path=str(path))
    title = extras.get("title") or path.stem
    metadata = {**extras, "title": title, "mtime": stat.st_mtime, "size": len(data)}
    if suffix not in BINARY_DOCUMENT_SUFFIXES and (encoding := detect_encoding(data)) != "utf-8":
        metadata["encoding"] = encoding  # a text file not in UTF-8: say how it was read
    metadata["sha256"] = hashlib.sha256(data).hexdigest()
    return Document(path=relative, text=text, metadata=metadata)


def read_bytes(path: Path, limits: ReadLimits = DEFAULT_LIMITS) -> bytes:
    """The bytes of the file at `path`, read once and never more than one byte over `limits.max_bytes` (a sidecar
    file is read so); a LoaderError says it is empty, over the limit (naming the setting that raises it) or cannot
    be read."""
    try:
        return _read(Path(path), limits.max_bytes)[0]
    except OSError as exc:
        raise LoaderError(f"cannot read: {exc.strerror or shorten(exc)}", path=str(path)) from None


def _read(path: Path, max_bytes: int | None) -> tuple[bytes, os.stat_result]:
    stat = path.stat()
    if stat.st_size == 0:
        raise LoaderError("empty file")
    if max_bytes is not None and stat.st_size > max_bytes:
        raise LoaderError(
            f"file is {_size(stat.st_size)}, over the limit of {_size(max_bytes)}; "
            "raise the pipeline's indexing.max_file_mb setting to load it"
        )
    with open(path, "rb") as handle:  # at most one byte over the limit: never a whole huge file in memory
        data = handle.read(max_bytes + 1 if max_bytes is not None else -1)
    if not data:
        raise LoaderError("empty file")
    if max_bytes is not None and len(data) > max_bytes:
        raise LoaderError(
            f"file is over the limit of {_size(max_bytes)}; raise the pipeline's indexing.max_file_mb setting "
            "to load it"
        )
    return data, stat


def _relative(path: Path, root: Path) -> str:
    for candidate, base in ((path, root), (path.absolute(), root.absolute())):
        if candidate.is_relative_to(base):
            return candidate.relative_to(base).as_posix()
    raise LoaderError(f"not inside the indexed folder {root}", path=str(path))


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB ({n:,} bytes)" if n >= 1024 * 1024 else f"{n:,} bytes"
