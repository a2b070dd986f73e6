"""Citation markers in answer text: `[n]`, `[n, m]` and `[n-m]`, the passages they name, and text without them."""

from __future__ import annotations

import re
from collections.abc import Iterator

from rag.core.types import Hit
from rag.embed.bm25 import ENGLISH_STOPWORDS

__all__ = ["MARKER", "cited_numbers", "content_words", "invalid_numbers", "strip_markers", "supported_by"]

_ITEM = r"\d+(?:\s*[-–]\s*\d+)?"
MARKER = re.compile(rf"\s*\[\s*({_ITEM}(?:\s*,\s*{_ITEM})*)\s*\]")
"""A citation marker with the whitespace before it."""
_WORD = re.compile(r"[^\W\d_]{3,}")


def strip_markers(text: str) -> str:
    """`text` without its citation markers."""
    return MARKER.sub("", text)


def content_words(text: str) -> set[str]:
    """Lower-cased words of three or more letters that are not English stopwords."""
    return {w for w in _WORD.findall(text.lower()) if w not in ENGLISH_STOPWORDS}


def supported_by(reply: str, hits: list[Hit], min_support: float, limit: int = 2) -> list[int]:
    """Passage numbers holding at least `min_support` of the reply's content words, best first."""
    words = content_words(strip_markers(reply))
    if not words:
        return []
    support = [(len(words & content_words(h.chunk.text)) / len(words), n) for n, h in enumerate(hits, start=1)]
    ranked = sorted((s for s in support if s[0] >= min_support), key=lambda s: (-s[0], s[1]))
    return [n for _, n in ranked[:limit]]


def _marked_ranges(reply: str) -> Iterator[tuple[int, int]]:
    """(first, last) of every number or range written inside `[...]` markers, in order."""
    for marker in MARKER.finditer(reply):
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
