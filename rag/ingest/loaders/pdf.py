"""Loader for PDF (pypdf): the text layer of every page, pages joined by a blank line."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from rag.core.errors import LoaderError
from rag.core.limits import ReadLimits
from rag.ingest.loaders._common import shorten

__all__ = ["PAGE_SEPARATOR", "load_pdf"]

PAGE_SEPARATOR = "\n\n"


def load_pdf(data: bytes, path: Path, limits: ReadLimits) -> tuple[str, dict[str, Any]]:
    """A PDF; metadata has `page_starts` and the title from the PDF's metadata or its first line. The page count is
    checked before any page is extracted, the text's length after each page."""
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoaderError("encrypted PDF that needs a password; save an unencrypted copy")
        limits.check("max_pages", len(reader.pages), "pages")
        pages, characters = [], 0
        for page in reader.pages:
            pages.append((page.extract_text() or "").strip())
            characters += len(pages[-1])
            limits.check_text(characters)
        meta_title = reader.metadata.title if reader.metadata else None
    except LoaderError:
        raise
    except Exception as exc:  # pypdf raises many types on damaged files
        raise LoaderError(f"corrupt PDF: {shorten(exc)}") from None
    starts, offset = [], 0
    for text in pages:
        starts.append(offset)
        offset += len(text) + len(PAGE_SEPARATOR)
    text = PAGE_SEPARATOR.join(pages)
    title = (meta_title or "").strip() or next((ln.strip() for ln in text.splitlines() if ln.strip()), None)
    return text, {"format": "pdf", "title": title, "pages": len(pages), "page_starts": starts}
