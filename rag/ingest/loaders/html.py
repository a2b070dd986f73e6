"""Loader for HTML: the readable text, one line per block, scripts and styles dropped."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from rag.core.limits import ReadLimits
from rag.ingest.loaders._common import decode_text

__all__ = ["load_html"]

_DROPPED = ("script", "style", "noscript", "template", "title", "svg", "iframe", "object")
_PARAGRAPHS = frozenset(
    {"p", "div", "section", "article", "header", "footer", "nav", "aside", "main", "body"}
    | {"h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "table", "blockquote", "pre", "hr"}
    | {"figure", "figcaption", "form", "fieldset", "address", "details", "summary"}
)
_LINES = frozenset({"li", "tr", "dt", "dd", "br", "caption"})
_CELLS = frozenset({"td", "th"})


def load_html(data: bytes, path: Path, limits: ReadLimits) -> tuple[str, dict[str, Any]]:
    """An HTML page; the title is its `<title>`, else its first `<h1>`.

    The page is read as a stream of tags (the standard library's `HTMLParser`), never built into a tree: memory
    stays near the size of the text and any depth of nesting is read (a 19 MB page of tiny tags takes seconds,
    where a BeautifulSoup tree of it took a minute and 2.5 GB).
    """
    reader = _Reader()
    reader.feed(decode_text(data))
    reader.close()
    title = _clean("".join(reader.title)) or _clean("".join(reader.heading))
    return _join(reader.parts), {"format": "html", "title": title or None}


class _Reader(HTMLParser):
    """Collects the text of a page in `parts`, with ints for line breaks (1: new line, 2: new paragraph)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str | int] = []
        self.title: list[str] = []
        self.heading: list[str] = []  # the first <h1>'s text
        self._dropped = 0  # depth inside elements whose text is dropped
        self._in_title = self._in_heading = False
        self._rows: list[bool] = []  # per open table row: whether it has a cell yet

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROPPED:
            self._dropped += 1
            self._in_title = self._in_title or (tag == "title" and not self.title)
            return
        if self._dropped:
            return
        if tag == "h1" and not self.heading:
            self._in_heading = True
        if tag == "tr":
            self._rows.append(False)
        elif tag in _CELLS and self._rows:
            if self._rows[-1]:
                self.parts.append(" | ")
            self._rows[-1] = True
        self.parts.append(_break(tag))

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROPPED:
            self._dropped = max(0, self._dropped - 1)
            self._in_title = self._in_title and tag != "title"
            return
        if self._dropped:
            return
        if tag == "h1":
            self._in_heading = False
        elif tag == "tr" and self._rows:
            self._rows.pop()
        self.parts.append(_break(tag))

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
        if self._dropped:
            return
        if self._in_heading:
            self.heading.append(data)
        self.parts.append(_clean(data, keep_edges=True))


def _break(tag: str) -> int:
    return 2 if tag in _PARAGRAPHS else 1 if tag in _LINES else 0


def _join(parts: list[str | int]) -> str:
    out: list[str] = []
    pending = 0
    for part in parts:
        if isinstance(part, int):
            pending = max(pending, part)
        elif part.strip():
            if pending and out:
                out.append("\n" * pending)
            pending = 0
            out.append(part)
        elif not pending:
            out.append(" ")
    lines = (" ".join(line.split()) for line in "".join(out).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _clean(text: str, keep_edges: bool = False) -> str:
    """Collapse runs of whitespace; with `keep_edges`, leading/trailing whitespace stays as one space."""
    text = re.sub(r"\s+", " ", text)
    return text if keep_edges else text.strip()
