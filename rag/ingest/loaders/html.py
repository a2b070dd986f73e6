"""Loader for HTML: the readable text, one line per block, scripts and styles dropped."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.core.limits import ReadLimits
from rag.ingest.loaders._common import decode_text

if TYPE_CHECKING:
    from bs4 import Tag

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
    """An HTML page; the title is its `<title>`, else its first `<h1>`."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(decode_text(data), "html.parser")
    title = _clean(soup.title.get_text()) if soup.title else ""
    if not title and (h1 := soup.find("h1")):
        title = _clean(h1.get_text())
    for tag in soup.find_all(_DROPPED):
        tag.decompose()
    parts: list[str | int] = []
    _render(soup, parts)
    return _join(parts), {"format": "html", "title": title or None}


def _render(node: Tag, parts: list[str | int]) -> None:
    """Append the text of `node` to `parts`; ints mark line breaks (1: new line, 2: new paragraph).

    Iterative, with an explicit stack: a page nested thousands of levels deep is rendered, not a RecursionError.
    """
    from bs4 import NavigableString, Tag

    stack: list[Any] = [iter(node.children)]
    while stack:
        child = next(stack[-1], None)
        if child is None:
            stack.pop()
            continue
        if isinstance(child, int):  # the break that closes a tag, queued when it was opened
            parts.append(child)
        elif isinstance(child, Tag):
            name = child.name
            brk = 2 if name in _PARAGRAPHS else 1 if name in _LINES else 0
            if name in _CELLS and child.find_previous_sibling(_CELLS):
                parts.append(" | ")
            parts.append(brk)
            stack.append(iter([*child.children, brk]))
        elif type(child) is NavigableString:  # not a comment, doctype or CDATA
            parts.append(_clean(child, keep_edges=True))


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
