"""The chunker contract: a chunker finds spans in a text; the base class turns them into chunks."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, ClassVar

from rag.core.component import Component
from rag.core.errors import ConfigError
from rag.core.types import Chunk, Document

__all__ = ["Chunker", "Span", "check_setting", "chunk_id", "is_int"]


@dataclass(frozen=True, slots=True)
class Span:
    """A piece of a text by character offsets, with metadata for its chunk (e.g. "section")."""

    start: int
    end: int
    metadata: dict[str, Any] = field(default_factory=dict)


class Chunker(Component, ABC):
    """Base class of chunkers: `split()` finds spans, `run()` turns them into `Chunk`s.

    A chunk's text is `document.text[start:end]` with surrounding whitespace moved out of the
    span; empty spans are dropped. Its metadata holds the document's "fields" (front matter: what filters test,
    under its own names), "title", the span's metadata, the document's "encoding"
    when it has one (a text file not in UTF-8) and, when the document has "page_starts", "pages": the sorted
    1-based pages the chunk covers, and for a chunk over more than one page "page_breaks": the document offsets
    where its second, third... page begins.

    A document of records (JSON, JSONL, CSV: "record_starts" and "record_fields") is split record by record, so
    no chunk spans two records, and each chunk also gets its record's fields, under the document's own (so a
    record can never override what a path rule or a sidecar, a tenant's for one, says); a record's string
    "title" is its chunks' title.
    """

    outputs: ClassVar[dict[str, Any]] = {"chunks": list[Chunk]}

    @abstractmethod
    def split(self, text: str) -> list[Span]:
        """The spans of `text` that become chunks, in order."""

    def run(self, document: Document) -> dict[str, list[Chunk]]:
        """Split one document into chunks."""
        self.warm_up()
        text, path = document.text, document.path
        title = document.metadata.get("title") or PurePosixPath(path).stem
        page_starts = document.metadata.get("page_starts")
        fields = document.metadata.get("fields") or {}
        seen: dict[str, int] = {}
        chunks: list[Chunk] = []
        for at, span, own in self._record_spans(document):
            piece = text[at + span.start : at + span.end]
            stripped = piece.strip()
            if not stripped:
                continue
            start = at + span.start + len(piece) - len(piece.lstrip())
            end = start + len(stripped)
            occurrence = seen.get(stripped, 0)
            seen[stripped] = occurrence + 1
            own_title = own.get("title") if isinstance(own.get("title"), str) else title
            metadata = {**own, **fields, "title": own_title, **span.metadata}
            if "encoding" in document.metadata:  # a text file read in another encoding than UTF-8
                metadata["encoding"] = document.metadata["encoding"]
            if page_starts:
                metadata["pages"] = _pages(page_starts, start, end)
                if len(metadata["pages"]) > 1:
                    metadata["page_breaks"] = [page_starts[page - 1] for page in metadata["pages"][1:]]
            chunks.append(Chunk(chunk_id(path, stripped, occurrence), path, stripped, start, end, metadata))
        return {"chunks": chunks}

    def _record_spans(self, document: Document) -> Iterator[tuple[int, Span, dict[str, Any]]]:
        """The spans of the document (offset of the text split, span in it, the fields of its record), record by
        record when it has records."""
        text, starts = document.text, document.metadata.get("record_starts")
        if not starts:
            yield from ((0, span, {}) for span in self.split(text))
            return
        records = document.metadata["record_fields"]
        bounds: list[tuple[int, int, dict[str, Any]]] = [(0, starts[0], {})] if starts[0] > 0 else []
        bounds += [
            (start, stop, own) for start, stop, own in zip(starts, [*starts[1:], len(text)], records, strict=True)
        ]
        for start, stop, own in bounds:
            yield from ((start, span, own) for span in self.split(text[start:stop]))


def chunk_id(path: str, text: str, occurrence: int = 0) -> str:
    """A stable chunk id: 16 hex digits of sha256(path NUL text NUL occurrence).

    `occurrence` counts the earlier chunks of the same document with the same text, so that
    repeated passages get distinct ids.
    """
    return hashlib.sha256(f"{path}\0{text}\0{occurrence}".encode()).hexdigest()[:16]


def check_setting(owner: str, name: str, value: Any, ok: bool, allowed: str) -> None:
    """Raise `ConfigError` naming the setting, its value and the allowed range unless `ok`."""
    if not ok:
        raise ConfigError(f"{owner}: {name}={value!r} is out of range; it must be {allowed}")


def is_int(value: Any) -> bool:
    """Whether `value` is an int (and not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _pages(page_starts: list[int], start: int, end: int) -> list[int]:
    first = max(1, bisect_right(page_starts, start))
    last = max(first, bisect_right(page_starts, end - 1))
    return list(range(first, last + 1))
