"""Helpers shared by the loaders: the loader type, binary sniffing and strict text decoding."""

from __future__ import annotations

import codecs
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rag.core.errors import LoaderError

__all__ = ["BINARY_DOCUMENT_SUFFIXES", "SNIFF_BYTES", "Loader", "decode_text", "looks_binary", "shorten"]

Loader = Callable[[bytes, Path], tuple[str, dict[str, Any]]]
"""Parses one file's bytes (its path gives the name and suffix) into its text and metadata extras (`title`,
`format`, ...). The bytes are read once, by `load_document`, so what is parsed is what is hashed."""

BINARY_DOCUMENT_SUFFIXES = frozenset({".pdf", ".docx"})
"""Extensions of binary formats that have a loader: never skipped as binary."""

SNIFF_BYTES = 8192
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def looks_binary(head: bytes) -> bool:
    """True when these leading bytes of a file contain a NUL byte (UTF-16 with a BOM is text)."""
    return not head.startswith(_UTF16_BOMS) and b"\0" in head[:SNIFF_BYTES]


def decode_text(data: bytes) -> str:
    """Decode strictly as UTF-8 (a BOM is dropped) or UTF-16 with a BOM; raise LoaderError otherwise."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    elif data.startswith(_UTF16_BOMS):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise LoaderError(
                f"not valid UTF-16 despite its byte order mark (byte offset {exc.start}); convert it to UTF-8"
            ) from None
    if looks_binary(data):
        raise LoaderError("binary file (it contains NUL bytes); only text and PDF/DOCX files can be read")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LoaderError(
            f"not valid UTF-8 (byte offset {exc.start}); convert it to UTF-8, e.g. iconv -f latin1 -t utf-8"
        ) from None


def shorten(message: object, limit: int = 160) -> str:
    """A parser's message on one line, cut to `limit` characters."""
    text = " ".join(str(message).split()) or type(message).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
