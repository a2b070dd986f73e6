"""Sentence packing: chunks made of whole sentences, found by a small rule-based splitter."""

from __future__ import annotations

import re

from rag.ingest.chunkers.base import Chunker, Span, check_setting, is_int
from rag.ingest.chunkers.length import LengthUnit
from rag.ingest.chunkers.recursive import split_recursive

__all__ = ["SentenceChunker", "split_sentences"]

_BOUNDARY = re.compile(r"[.!?…]+[\"'”’)\]]*\s+|\n[ \t]*\n\s*")
# Words that end with "." without ending a sentence (matched in lower case, without the dot).
_ABBREVIATION = re.compile(
    r"mrs?|ms|dr|prof|sr|jr|st|mt|vs|cf|al|approx|ca|figs?|eqs?|vol|pp|dept|univ|inc|ltd|co|corp"
    r"|jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec"
)


class SentenceChunker(Chunker):
    """Chunks of whole sentences, at most `chunk_size` units (tokens of `tokenizer`, or chars).

    Consecutive chunks share `chunk_overlap_sentences` sentences when they fit. A single
    sentence longer than `chunk_size` is split at word boundaries into chunks of its own.
    """

    def __init__(
        self,
        chunk_size: int = 256,
        chunk_overlap_sentences: int = 1,
        unit: str = "tokens",
        tokenizer: str = "sentence-transformers/all-MiniLM-L6-v2",
    ) -> None:
        owner = type(self).__name__
        check_setting(owner, "chunk_size", chunk_size, is_int(chunk_size) and chunk_size > 0, "an integer > 0")
        ok = is_int(chunk_overlap_sentences) and chunk_overlap_sentences >= 0
        check_setting(owner, "chunk_overlap_sentences", chunk_overlap_sentences, ok, "an integer >= 0")
        self.chunk_size = chunk_size
        self.chunk_overlap_sentences = chunk_overlap_sentences
        self._length = LengthUnit(unit, tokenizer, owner)

    def warm_up(self) -> None:
        self._length.warm_up()

    def split(self, text: str) -> list[Span]:
        measure = self._length.measure(text)
        sentences = split_sentences(text)
        size, i = self.chunk_size, 0
        spans: list[Span] = []
        while i < len(sentences):
            start, end = sentences[i]
            if measure(start, end) > size:
                spans.extend(Span(a, b) for a, b in split_recursive(text, start, end, measure, size, 0))
                i += 1
                continue
            j = i + 1
            while j < len(sentences) and measure(start, sentences[j][1]) <= size:
                j += 1
            spans.append(Span(start, sentences[j - 1][1]))
            if j == len(sentences):
                break
            k = j  # step back over up to `chunk_overlap_sentences` that fit with sentence j
            while (
                k - 1 > i
                and j - k < self.chunk_overlap_sentences
                and measure(sentences[k - 1][0], sentences[j][1]) <= size
            ):
                k -= 1
            i = k
        return spans


def split_sentences(text: str) -> list[tuple[int, int]]:
    """The (start, end) sentences of `text`, each ending after its trailing whitespace.

    A sentence ends at ".", "!" or "?" (with closing quotes or brackets) followed by whitespace,
    or at a blank line; not after an abbreviation ("Dr.", "Fig."), initials ("J.", "e.g.", "U.S."),
    or before a lower-case word. Decimals ("3.14") never end one, as no whitespace follows the dot.
    """
    sentences = []
    start = 0
    for boundary in _BOUNDARY.finditer(text):
        end = boundary.end()
        paragraph = text.count("\n", boundary.start(), end) > 1
        if not paragraph and boundary.group().startswith(".") and not boundary.group().startswith(".."):
            if _is_abbreviation(text, start, boundary.start()):
                continue
            if end < len(text) and text[end].islower():
                continue
        if end > start:
            sentences.append((start, end))
            start = end
    if start < len(text):
        sentences.append((start, len(text)))
    return sentences


def _is_abbreviation(text: str, start: int, dot: int) -> bool:
    word = text[max(start, dot - 24) : dot].rsplit(None, 1)[-1:]
    if not word:
        return False
    token = word[0].lstrip("([{\"'“‘").lower()
    return bool(_ABBREVIATION.fullmatch(token)) or all(len(p) == 1 and p.isalpha() for p in token.split("."))
