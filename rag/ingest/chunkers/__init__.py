"""Chunkers: split a `Document` into `Chunk`s sized in tokens or characters.

`RecursiveChunker` cuts at the coarsest separator that works, `MarkdownChunker` first cuts at
headings and records the heading path, and `SentenceChunker` packs whole sentences.
"""

from rag.ingest.chunkers.base import Chunker, Span, chunk_id
from rag.ingest.chunkers.length import LengthUnit, Measure
from rag.ingest.chunkers.markdown import MarkdownChunker
from rag.ingest.chunkers.recursive import RecursiveChunker
from rag.ingest.chunkers.sentence import SentenceChunker

__all__ = [
    "Chunker",
    "LengthUnit",
    "MarkdownChunker",
    "Measure",
    "RecursiveChunker",
    "SentenceChunker",
    "Span",
    "chunk_id",
]
