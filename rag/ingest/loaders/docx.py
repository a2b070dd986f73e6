"""Loader for Word documents (python-docx): paragraphs and table rows in document order."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.core.errors import LoaderError
from rag.core.limits import ReadLimits
from rag.ingest.loaders._common import shorten

if TYPE_CHECKING:
    from docx.table import Table

__all__ = ["load_docx"]


def load_docx(data: bytes, path: Path, limits: ReadLimits) -> tuple[str, dict[str, Any]]:
    """A .docx file; the title is its core `title` property, else its first heading or paragraph."""
    import docx
    from docx.table import Table

    _check_expansion(data, limits.max_expansion)
    try:
        document = docx.Document(io.BytesIO(data))
        blocks: list[str] = []
        heading = None
        characters = 0
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                if rows := _table_rows(item):
                    blocks.append("\n".join(rows))
                    characters += len(blocks[-1])
                    limits.check_text(characters)
                continue
            text = item.text.strip()
            if text:
                blocks.append(text)
                characters += len(text)
                limits.check_text(characters)
                style = item.style.name if item.style is not None else ""
                if heading is None and (style == "Title" or style.startswith("Heading")):
                    heading = text
        title = (document.core_properties.title or "").strip()
    except LoaderError:
        raise
    except Exception as exc:  # zipfile, lxml and python-docx errors on damaged files
        raise LoaderError(f"corrupt DOCX: {shorten(exc)}") from None
    title = title or heading or (blocks[0].splitlines()[0] if blocks else None)
    return "\n\n".join(blocks), {"format": "docx", "title": title}


MIN_EXPANDED_BYTES = 16 * 1024 * 1024


def _check_expansion(data: bytes, max_expansion: int) -> None:
    """Refuse a decompression bomb before parsing it: XML parts that expand to more than `max_expansion` times the
    file's size (and over `MIN_EXPANDED_BYTES`), read from the zip's directory, never by inflating them."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            expanded = sum(i.file_size for i in archive.infolist() if i.filename.endswith((".xml", ".rels")))
    except (zipfile.BadZipFile, OSError) as exc:
        raise LoaderError(f"corrupt DOCX: {shorten(exc)}") from None
    if expanded > max(MIN_EXPANDED_BYTES, max_expansion * len(data)):
        raise LoaderError(
            f"DOCX expands to {expanded / 2**20:.0f} MiB of XML from {len(data) / 1024:.0f} KiB "
            f"({expanded // max(len(data), 1)} times its size, over indexing.max_expansion {max_expansion}): "
            "a decompression bomb, not read"
        )


def _table_rows(table: Table) -> list[str]:
    """One line per row, cells joined by ' | '; merged cells appear once."""
    rows = []
    for row in table.rows:
        cells, seen = [], set()
        for cell in row.cells:
            if id(cell._tc) not in seen:
                seen.add(id(cell._tc))
                cells.append(" ".join(cell.text.split()))
        if any(cells):
            rows.append(" | ".join(cells))
    return rows
