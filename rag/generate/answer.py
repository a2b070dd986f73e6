"""`AnswerBuilder`: read the citation markers in a generated reply and build an `Answer`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, ClassVar

from rag.core.component import Component
from rag.core.errors import ConfigError
from rag.core.types import Answer, Citation, Hit
from rag.embed.bm25 import ENGLISH_STOPWORDS

__all__ = ["DEFAULT_NO_ANSWER", "AnswerBuilder", "cited_numbers", "invalid_numbers"]

_ITEM = r"\d+(?:\s*[-–]\s*\d+)?"
_MARKER = re.compile(rf"\[\s*({_ITEM}(?:\s*,\s*{_ITEM})*)\s*\]")
_WORD = re.compile(r"[^\W\d_]{3,}")
DEFAULT_NO_ANSWER = "I don't know: none of the retrieved passages answers this question."


def content_words(text: str) -> set[str]:
    """Lower-cased words of three or more letters that are not English stopwords."""
    return {w for w in _WORD.findall(text.lower()) if w not in ENGLISH_STOPWORDS}


def supported_by(reply: str, hits: list[Hit], min_support: float, limit: int = 2) -> list[int]:
    """Passage numbers holding at least `min_support` of the reply's content words, best first."""
    words = content_words(_MARKER.sub(" ", reply))
    if not words:
        return []
    support = [(len(words & content_words(h.chunk.text)) / len(words), n) for n, h in enumerate(hits, start=1)]
    ranked = sorted((s for s in support if s[0] >= min_support), key=lambda s: (-s[0], s[1]))
    return [n for _, n in ranked[:limit]]


def _marked_ranges(reply: str) -> Iterator[tuple[int, int]]:
    """(first, last) of every number or range written inside `[...]` markers, in order."""
    for marker in _MARKER.finditer(reply):
        for item in marker.group(1).split(","):
            first, _, last = item.replace("–", "-").partition("-")
            yield int(first), int(last or first)


def cited_numbers(reply: str, count: int) -> list[int]:
    """Passage numbers cited in `reply` as `[n]`, `[n, m]` or `[n-m]`, in order of first mention.

    Only numbers from 1 to `count` are kept; a reversed range such as `[3-1]` cites nothing.
    """
    seen: dict[int, None] = {}
    for low, high in _marked_ranges(reply):
        for n in range(max(low, 1), min(high, count) + 1):
            seen.setdefault(n, None)
    return list(seen)


def invalid_numbers(reply: str, count: int) -> list[int]:
    """Numbers written in `reply`'s citation markers that refer to no passage (outside 1..`count`), once each."""
    written = (n for pair in _marked_ranges(reply) for n in dict.fromkeys(pair))
    return list(dict.fromkeys(n for n in written if not 1 <= n <= count))


class AnswerBuilder(Component):
    """Turn a reply into an `Answer` whose citations are the valid `[n]` markers it contains.

    `hits` are the passages the prompt showed, so marker `[n]` refers to `hits[n - 1]`. Numbers outside
    1..len(hits) are not citations; they are reported in `Answer.invalid_citations`. A reply with no valid
    marker is attributed by overlap when `min_support` is set: the (at most two) passages that contain at
    least that share of the reply's content words are cited with `by="overlap"`; otherwise the answer has
    no citations. With no `hits` (nothing relevant was retrieved) the answer is `no_answer`, whatever
    the reply.
    """

    outputs: ClassVar[dict[str, Any]] = {"answer": Answer}

    def __init__(self, min_support: float | None = 0.5, no_answer: str = DEFAULT_NO_ANSWER) -> None:
        if min_support is not None and not 0 < min_support <= 1:
            raise ConfigError(f"AnswerBuilder: min_support must be in (0, 1] or None, got {min_support}")
        if not isinstance(no_answer, str) or not no_answer.strip():
            raise ConfigError(f"AnswerBuilder: no_answer must be a non-empty string, got {no_answer!r}")
        self.min_support = min_support
        self.no_answer = no_answer

    def run(self, reply: str, hits: list[Hit], usage: dict[str, int] | None = None) -> dict[str, Any]:
        """The `Answer` for `reply` over `hits`, with the token `usage` of the generator."""
        if not hits:
            return {"answer": Answer(self.no_answer, [], [], dict(usage or {}))}
        citations = [Citation(n, hits[n - 1]) for n in cited_numbers(reply, len(hits))]
        if not citations and self.min_support is not None:
            citations = [Citation(n, hits[n - 1], "overlap") for n in supported_by(reply, hits, self.min_support)]
        invalid = invalid_numbers(reply, len(hits))
        return {"answer": Answer(reply.strip(), citations, list(hits), dict(usage or {}), invalid)}
