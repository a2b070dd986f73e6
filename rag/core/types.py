"""The data that flows between components: documents, chunks, hits and answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Answer", "Chunk", "ChunkLookup", "Citation", "Claim", "Document", "Hit"]


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

    `by` says how the citation was made: "marker" (the answer contains `[n]`), "overlap" (the answer has no
    valid marker and most of its content words come from this passage), "quote" (the answer sentence is a
    quote of this passage: extractive answers) or "support" (a grounded answer's sentence, checked against
    this passage). `claim` is the index in `Answer.claims` of the answer sentence it supports (None when the
    answer was not split into sentences); `start` and `end` are the character offsets in the source document
    of the span it rests on, and `page` that span's page (1-based; paged formats only).
    """

    n: int
    hit: Hit
    by: str = "marker"
    claim: int | None = None
    start: int | None = None
    end: int | None = None
    page: int | None = None

    @property
    def quote(self) -> str | None:
        """The cited span's text (None when the citation names the whole passage)."""
        if self.start is None or self.end is None:
            return None
        chunk = self.hit.chunk
        return chunk.text[self.start - chunk.start : self.end - chunk.start]

    def to_dict(self) -> dict[str, Any]:
        data = {"n": self.n, "id": self.hit.id, "source": self.hit.to_dict()["source"], "by": self.by}
        data["claim"] = self.claim
        data["span"] = None if self.start is None else {"start": self.start, "end": self.end, "page": self.page}
        if data["span"] is not None:
            data["span"]["text"] = self.quote
        return data


@dataclass(frozen=True, slots=True)
class Claim:
    """One sentence of an answer: its text, where it is in `Answer.text`, and whether its citations support it.

    `supported` is None when nothing checked it (answer mode "generate"); `support` is the checker's score in
    [0, 1]. `passages` are the numbers `[n]` of the passages it rests on.
    """

    text: str
    start: int
    end: int
    passages: tuple[int, ...] = ()
    supported: bool | None = None
    support: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "passages": list(self.passages),
            "supported": self.supported,
            "support": None if self.support is None else round(float(self.support), 4),
        }


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer with the passages it cites, the hits it was given, and token usage.

    `mode` is the answer mode that produced it ("extractive", "grounded" or "generate"). `abstained` is True
    when the passages do not answer the question: `text` then says so and there are no citations.
    `answerability` is the calibrated probability that the passages answer the question (None when not
    estimated). `claims` are the answer's sentences as kept; `retracted` the sentences the support check
    removed (a grounded answer streams text before it is checked: these are the pieces taken back).
    `invalid_citations` lists the numbers the text cites as `[n]` that refer to no passage. `decision` is
    "yes" or "no" when an extractive answer to a polar question starts with one (`rag.answer.polar`).
    """

    text: str
    citations: list[Citation]
    hits: list[Hit]
    usage: dict[str, int] = field(default_factory=dict)
    invalid_citations: list[int] = field(default_factory=list)
    mode: str = "generate"
    abstained: bool = False
    answerability: float | None = None
    claims: list[Claim] = field(default_factory=list)
    retracted: list[Claim] = field(default_factory=list)
    decision: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.text,
            "mode": self.mode,
            "abstained": self.abstained,
            "decision": self.decision,
            "answerability": None if self.answerability is None else round(float(self.answerability), 4),
            "citations": [c.to_dict() for c in self.citations],
            "claims": [c.to_dict() for c in self.claims],
            "retracted": [c.to_dict() for c in self.retracted],
            "hits": [h.to_dict() for h in self.hits],
            "usage": dict(self.usage),
            "invalid_citations": list(self.invalid_citations),
        }


class ChunkLookup(Protocol):
    """Read access to the chunks of an index, by id."""

    def get(self, ids: Sequence[str]) -> list[Chunk]:
        """The chunks with these ids, in the same order."""
        ...
