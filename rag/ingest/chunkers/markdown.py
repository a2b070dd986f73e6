"""Markdown chunking: one section per ATX heading, long sections split recursively."""

from __future__ import annotations

import re

from rag.ingest.chunkers.base import Span
from rag.ingest.chunkers.recursive import RecursiveChunker

__all__ = ["MarkdownChunker", "markdown_sections"]

_HEADING = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*\r?\n?")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")


class MarkdownChunker(RecursiveChunker):
    """Chunks that never cross an ATX heading (# .. ######; not inside fenced code blocks).

    Each chunk's metadata holds "section", the heading path such as "Guide > Install". A section
    longer than `chunk_size` is split like `RecursiveChunker` does, with the same settings. A
    heading followed directly by a sub-heading joins the sub-heading's section.
    """

    def split(self, text: str) -> list[Span]:
        measure = self._length.measure(text)
        spans: list[Span] = []
        for start, end, section in markdown_sections(text):
            metadata = {"section": section} if section else {}
            spans.extend(Span(a, b, metadata) for a, b in self._spans(text, start, end, measure))
        return spans


def markdown_sections(text: str) -> list[tuple[int, int, str]]:
    """The (start, end, heading path) sections of a markdown text; "" for text before any heading."""
    headings: list[tuple[int, int, str]] = []  # (offset, level, title)
    fence = ""
    offset = 0
    for line in text.splitlines(keepends=True):
        if fence:
            if line.lstrip(" ").startswith(fence) and not line.strip().lstrip(fence[0]):
                fence = ""
        elif opening := _FENCE.match(line):
            fence = opening.group(1)
        elif (heading := _HEADING.fullmatch(line)) and (title := (heading.group(2) or "").strip()):
            headings.append((offset, len(heading.group(1)), title))
        offset += len(line)

    sections: list[tuple[int, int, str]] = []
    if not headings or headings[0][0] > 0:
        sections.append((0, headings[0][0] if headings else len(text), ""))
    path: list[tuple[int, str]] = []
    pending = None  # start of a heading with nothing under it but whitespace
    for i, (start, level, title) in enumerate(headings):
        while path and path[-1][0] >= level:
            path.pop()
        path.append((level, title))
        end = headings[i + 1][0] if i + 1 < len(headings) else len(text)
        body = text[start:end].split("\n", 1)
        if i + 1 < len(headings) and (len(body) == 1 or not body[1].strip()):
            pending = start if pending is None else pending
            continue
        sections.append((start if pending is None else pending, end, " > ".join(t for _, t in path)))
        pending = None
    return sections
