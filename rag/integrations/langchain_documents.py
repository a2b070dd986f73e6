"""Our chunks, hits and documents to and from LangChain `Document`s, metadata preserved.

A chunk becomes ``Document(page_content=chunk.text, id=chunk.id, metadata={...})`` whose metadata is
the chunk's own metadata plus ``source`` (the chunk's path), ``start_index`` and ``end_index`` (its
character offsets; LangChain's text splitters name the start the same way) and, for a hit, ``score``.
These four keys win over chunk metadata of the same name. `document_to_chunk` reverses it, so
``document_to_chunk(chunk_to_document(c)) == c``. A LangChain document from elsewhere becomes a chunk
whose path is its ``source`` (else ""), whose id is its ``id`` (else derived from path and text, as
our chunkers derive ids) and whose offsets span its whole text.

Metadata values that are not plain JSON data (dates, objects) are turned into strings on the way in,
because chunks are stored as JSON.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from rag.core.errors import ConfigError, MissingDependencyError

try:
    from langchain_core.documents import Document as LCDocument
except ImportError as exc:  # pragma: no cover - exercised with langchain-core hidden
    raise MissingDependencyError("langchain-core", "langchain", "the LangChain integration") from exc

from rag.core.types import Chunk, Document, Hit
from rag.ingest.chunkers.base import chunk_id

__all__ = [
    "RESERVED_KEYS",
    "chunk_to_document",
    "document_to_chunk",
    "document_to_hit",
    "hit_to_document",
    "plain_metadata",
    "to_rag_documents",
]

RESERVED_KEYS = ("source", "start_index", "end_index", "score")
"""Metadata keys a converted LangChain document uses for the chunk's path, offsets and the hit's score."""


def chunk_to_document(chunk: Chunk) -> LCDocument:
    """A LangChain document holding the chunk's text, id, path, offsets and metadata."""
    metadata = {**chunk.metadata, "source": chunk.path, "start_index": chunk.start, "end_index": chunk.end}
    return LCDocument(page_content=chunk.text, id=chunk.id, metadata=metadata)


def hit_to_document(hit: Hit) -> LCDocument:
    """`chunk_to_document` of the hit's chunk, with the hit's ``score`` in the metadata."""
    document = chunk_to_document(hit.chunk)
    document.metadata["score"] = float(hit.score)
    return document


def document_to_chunk(document: LCDocument) -> Chunk:
    """The chunk a LangChain document stands for (see the module docstring)."""
    metadata = plain_metadata(document.metadata)
    path = str(metadata.pop("source", "") or "")
    start = metadata.pop("start_index", None)
    end = metadata.pop("end_index", None)
    metadata.pop("score", None)
    text = document.page_content
    start = start if _is_int(start) else 0
    end = end if _is_int(end) else start + len(text)
    return Chunk(document.id or chunk_id(path, text), path, text, start, end, metadata)


def document_to_hit(document: LCDocument, score: float) -> Hit:
    """A hit for a LangChain document, scored `score`."""
    return Hit(document_to_chunk(document), float(score))


def to_rag_documents(documents: Iterable[LCDocument]) -> list[Document]:
    """LangChain documents (a loader's output) as our documents, ready for a chunker.

    A document's path is its ``source`` metadata, else its ``id``, else ``document-`` and 12 hex digits
    of its text's SHA-256. A path seen before gets ``#2``, ``#3``... in order (a PDF loader gives one
    document per page, all with the file as source). Metadata is kept (made JSON-safe); ``title``
    defaults to the last part of the path.
    """
    seen: dict[str, int] = {}
    out = []
    for document in documents:
        if not isinstance(document, LCDocument):
            raise ConfigError(
                f"expected LangChain Documents (langchain_core.documents.Document), got {type(document).__name__}"
            )
        metadata = plain_metadata(document.metadata)
        text = document.page_content
        base = str(metadata.get("source") or document.id or f"document-{_sha(text)[:12]}")
        seen[base] = seen.get(base, 0) + 1
        path = base if seen[base] == 1 else f"{base}#{seen[base]}"
        metadata.setdefault("title", base.rstrip("/").rsplit("/", 1)[-1] or base)
        out.append(Document(path=path, text=text, metadata=metadata))
    return out


def plain_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `metadata` that `json.dumps` accepts: other values become their `str()`."""
    return {str(key): _plain(value) for key, value in metadata.items()}


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return plain_metadata(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        try:
            return _plain(item())
        except (TypeError, ValueError):
            pass
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
