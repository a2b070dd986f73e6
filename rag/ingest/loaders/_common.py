"""Helpers shared by the loaders: the loader type, binary sniffing and strict text decoding."""

from __future__ import annotations

import codecs
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rag.core.errors import LoaderError
from rag.core.limits import ReadLimits

__all__ = [
    "BINARY_DOCUMENT_SUFFIXES",
    "SNIFF_BYTES",
    "Loader",
    "decode_text",
    "detect_encoding",
    "looks_binary",
    "shorten",
]

Loader = Callable[[bytes, Path, ReadLimits], tuple[str, dict[str, Any]]]
"""Parses one file's bytes (its path gives the name and suffix) into its text and metadata extras (`title`,
`format`, ...), within the limits (`rag.ingest.limits`) it is given. The bytes are read once, by `load_document`,
so what is parsed is what is hashed."""

BINARY_DOCUMENT_SUFFIXES = frozenset({".pdf", ".docx"})
"""Extensions of binary formats that have a loader: never skipped as binary."""

SNIFF_BYTES = 8192
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def looks_binary(head: bytes) -> bool:
    """True when these leading bytes of a file contain a NUL byte and are not UTF-16 text (with or without a
    byte order mark)."""
    head = head[:SNIFF_BYTES]
    return b"\0" in head and not head.startswith(_UTF16_BOMS) and _utf16_without_bom(head) is None


def decode_text(data: bytes) -> str:
    """The text of `data`: UTF-8 (a BOM is dropped), UTF-16 (with or without a BOM), or a legacy 8-bit encoding
    detected by charset-normalizer (cp1252 preferred among equally likely Western code pages); undecodable
    binary raises LoaderError. `detect_encoding` says which encoding that was."""
    return _decode(data)[0]


def detect_encoding(data: bytes) -> str:
    """The encoding `decode_text` reads `data` with ("utf-8", "utf-16", "cp1252", ...)."""
    return _decode(data)[1]


def _decode(data: bytes) -> tuple[str, str]:
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    elif data.startswith(_UTF16_BOMS):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise LoaderError(
                f"not valid UTF-16 despite its byte order mark (byte offset {exc.start}); convert it to UTF-8"
            ) from None
    if b"\0" in data:
        if (found := _utf16_without_bom(data)) is not None:
            return found
        raise LoaderError("binary file (it contains NUL bytes); only text and PDF/DOCX files can be read")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        position = exc.start
    legacy = _legacy_encoding(data)
    if legacy is None:
        raise LoaderError(
            f"not valid UTF-8 (byte offset {position}) and no other text encoding fits it; convert it to UTF-8"
        )
    return data.decode(legacy), legacy


def _utf16_without_bom(data: bytes) -> tuple[str, str] | None:
    """(text, encoding) when `data` reads as UTF-16 without a byte order mark: mostly printable characters, with
    the NUL bytes of ASCII characters on one side of each pair; else None."""
    if len(data) < 4:
        return None
    even, odd = data[0::2].count(0), data[1::2].count(0)
    encoding = "utf-16-le" if odd > even * 4 else "utf-16-be" if even > odd * 4 else None
    if encoding is None or max(even, odd) < max(4, len(data) // 4):  # ASCII-heavy text: a NUL in most pairs
        return None
    text = data[: len(data) - len(data) % 2].decode(encoding, errors="replace")
    printable = sum(1 for c in text if c.isprintable() or c in "\n\r\t")
    return (text, encoding) if printable >= 0.95 * len(text) else None


def _legacy_encoding(data: bytes) -> str | None:
    """The 8-bit encoding charset-normalizer finds most likely for `data` (cp1252 when it is among the most
    likely: short Western texts fit several code pages equally well), or None."""
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data))
    if not matches:
        return None
    least = min(m.chaos for m in matches)
    likely = [m.encoding for m in matches if m.chaos == least]
    return "cp1252" if "cp1252" in likely else likely[0]


def shorten(message: object, limit: int = 160) -> str:
    """A parser's message on one line, cut to `limit` characters."""
    text = " ".join(str(message).split()) or type(message).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
