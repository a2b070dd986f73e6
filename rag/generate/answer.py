"""`AnswerBuilder`: read the citation markers in a generated reply and build an `Answer`."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from rag.core.component import Component
from rag.core.types import Answer, Citation, Hit

__all__ = ["AnswerBuilder", "cited_numbers"]

_ITEM = r"\d+(?:\s*[-–]\s*\d+)?"
_MARKER = re.compile(rf"\[\s*({_ITEM}(?:\s*,\s*{_ITEM})*)\s*\]")


def cited_numbers(reply: str, count: int) -> list[int]:
    """Passage numbers cited in `reply` as `[n]`, `[n, m]` or `[n-m]`, in order of first mention.

    Only numbers from 1 to `count` are kept; a reversed range such as `[3-1]` cites nothing.
    """
    seen: dict[int, None] = {}
    for marker in _MARKER.finditer(reply):
        for item in marker.group(1).split(","):
            first, _, last = item.replace("–", "-").partition("-")
            low, high = int(first), int(last or first)
            for n in range(max(low, 1), min(high, count) + 1):
                seen.setdefault(n, None)
    return list(seen)


class AnswerBuilder(Component):
    """Turn a reply into an `Answer` whose citations are the valid `[n]` markers it contains.

    `hits` are the passages the prompt showed, so marker `[n]` refers to `hits[n - 1]`. Markers
    outside 1..len(hits) are ignored; a reply that cites nothing valid has no citations.
    """

    outputs: ClassVar[dict[str, Any]] = {"answer": Answer}

    def run(self, reply: str, hits: list[Hit], usage: dict[str, int] | None = None) -> dict[str, Any]:
        """The `Answer` for `reply` over `hits`, with the token `usage` of the generator."""
        citations = [Citation(n, hits[n - 1]) for n in cited_numbers(reply, len(hits))]
        return {"answer": Answer(reply.strip(), citations, list(hits), dict(usage or {}))}
