"""The sentences of retrieved passages and of answers, with their offsets, and the terms they are compared by."""

from __future__ import annotations

import functools
from bisect import bisect_right
from dataclasses import dataclass

from rag.core.types import Hit
from rag.embed.bm25 import BM25Tokenizer
from rag.ingest.chunkers.sentence import split_sentences

__all__ = ["PassageSentence", "passage_sentences", "sentence_spans", "terms"]


@dataclass(frozen=True, slots=True)
class PassageSentence:
    """Sentence of passage `[n]` (`hit`); `start` and `end` are its character offsets in the source document."""

    n: int
    hit: Hit
    start: int
    end: int
    text: str

    @property
    def page(self) -> int | None:
        """The 1-based page the sentence starts on (paged formats only)."""
        metadata = self.hit.chunk.metadata
        pages = metadata.get("pages")
        if not pages:
            return None
        return int(pages[bisect_right(metadata.get("page_breaks") or [], self.start)])


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of `text`, surrounding whitespace left out, empty ones dropped."""
    spans = []
    for start, end in split_sentences(text):
        piece = text[start:end]
        stripped = piece.strip()
        if stripped:
            first = start + len(piece) - len(piece.lstrip())
            spans.append((first, first + len(stripped)))
    return spans


def passage_sentences(hits: list[Hit]) -> list[PassageSentence]:
    """Every sentence of every hit, passage by passage (`n` counts the hits from 1), in reading order."""
    return [
        PassageSentence(n, hit, hit.chunk.start + start, hit.chunk.start + end, hit.chunk.text[start:end])
        for n, hit in enumerate(hits, start=1)
        for start, end in sentence_spans(hit.chunk.text)
    ]


@functools.cache
def _tokenizer() -> BM25Tokenizer:
    return BM25Tokenizer(stopwords="english", stemmer="snowball")


def terms(text: str) -> list[str]:
    """The content terms of `text`: lower case, English stopwords dropped, Snowball-stemmed."""
    return _tokenizer()(text)
