"""Loader for PDF (pypdf): the text layer of every page, pages joined by a blank line."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from rag.core.errors import LoaderError
from rag.ingest.loaders._common import shorten

__all__ = ["PAGE_SEPARATOR", "load_pdf"]

PAGE_SEPARATOR = "\n\n"


def load_pdf(data: bytes, path: Path) -> tuple[str, dict[str, Any]]:
    """A PDF; metadata has `page_starts` and the title from the PDF's metadata or its first line."""
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoaderError("encrypted PDF that needs a password; save an unencrypted copy")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
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
