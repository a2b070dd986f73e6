"""The data that flows between components: documents, chunks, hits and answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Answer", "Chunk", "ChunkLookup", "Citation", "Document", "Hit"]


@dataclass(frozen=True, slots=True)
class Document:
    """The text of one file, with its metadata.

    `path` is the file's path relative to the indexed folder, in POSIX form. `metadata` holds
    `title`, `mtime` (seconds), `size` (bytes) and, for paged formats, `page_starts`: the
    character offset in `text` where each page begins (page 1 first).
    """

    path: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a document: the unit that is embedded, indexed and retrieved.

    `start` and `end` are character offsets of the chunk in its document's text, so
    `document.text[start:end] == text`. `id` is stable: derived from the path and the content.
    `metadata` holds at least `title`; `pages` (1-based page numbers) for paged formats.
    """

    id: str
    path: str
    text: str
    start: int
    end: int
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Hit:
    """A retrieved chunk and its score (higher is better); treat it as read-only.

    Not `frozen`: a retriever builds up to hundreds of hits per query, and a frozen dataclass's
    constructor costs about three times as much (1.1 vs 0.3 µs a hit), a third of a BM25 query's time.
    """

    chunk: Chunk
    score: float

    @property
    def id(self) -> str:
        return self.chunk.id

    def to_dict(self) -> dict[str, Any]:
        """The hit as plain JSON data: `{"id", "score", "text", "source": {"path", ...}}`."""
        source = {"path": self.chunk.path, "start": self.chunk.start, "end": self.chunk.end}
        source.update(self.chunk.metadata)
        return {"id": self.id, "score": float(self.score), "text": self.chunk.text, "source": source}


@dataclass(frozen=True, slots=True)
class Citation:
    """Passage `[n]` of the prompt, cited by the answer.

    `by` says how: "marker" (the answer contains `[n]`) or "overlap" (the answer has no valid
    marker and most of its content words come from this passage).
    """

    n: int
    hit: Hit
    by: str = "marker"

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "id": self.hit.id, "source": self.hit.to_dict()["source"], "by": self.by}


@dataclass(frozen=True, slots=True)
class Answer:
    """A generated answer with the passages it cites, the hits it was given, and token usage.

    `invalid_citations` lists the numbers the text cites as `[n]` that refer to no passage.
    """

    text: str
    citations: list[Citation]
    hits: list[Hit]
    usage: dict[str, int] = field(default_factory=dict)
    invalid_citations: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.text,
            "citations": [c.to_dict() for c in self.citations],
            "hits": [h.to_dict() for h in self.hits],
            "usage": dict(self.usage),
            "invalid_citations": list(self.invalid_citations),
        }


class ChunkLookup(Protocol):
    """Read access to the chunks of an index, by id."""

    def get(self, ids: Sequence[str]) -> list[Chunk]:
        """The chunks with these ids, in the same order."""
        ...
