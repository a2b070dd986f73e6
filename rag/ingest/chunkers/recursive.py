"""Recursive splitting in the style of LangChain, measured in tokens or characters.

The text is cut at the coarsest separator that occurs in it ("\\n\\n", then "\\n", ". ", " ", and
"" for single tokens or characters), recursing into pieces still longer than `chunk_size`; a
separator and the whitespace after it stay at the end of the piece they follow. The pieces are
packed greedily into windows of at most `chunk_size`. Each window after the first starts with the
end of the previous one, at most `chunk_overlap` long: whole pieces where some fit, else the tail
of the last piece cut at its own finer separators. Only a piece no separator can cut may exceed
`chunk_size`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from rag.ingest.chunkers.base import Chunker, Span, check_setting, is_int
from rag.ingest.chunkers.length import LengthUnit, Measure

__all__ = ["DEFAULT_SEPARATORS", "RecursiveChunker", "split_recursive"]

DEFAULT_SEPARATORS = ("\n\n", "\n", ". ", " ", "")


class RecursiveChunker(Chunker):
    """Chunks of at most `chunk_size` units (tokens of `tokenizer`, or chars), overlapping by
    about `chunk_overlap` units, cut at the coarsest of `separators` that works.
    """

    def __init__(
        self,
        chunk_size: int = 256,
        chunk_overlap: int = 32,
        unit: str = "tokens",
        tokenizer: str = "sentence-transformers/all-MiniLM-L6-v2",
        separators: list[str] | None = None,
    ) -> None:
        owner = type(self).__name__
        check_setting(owner, "chunk_size", chunk_size, is_int(chunk_size) and chunk_size > 0, "an integer > 0")
        check_setting(
            owner,
            "chunk_overlap",
            chunk_overlap,
            is_int(chunk_overlap) and 0 <= chunk_overlap < chunk_size,
            f"an integer from 0 to chunk_size - 1 ({chunk_size - 1})",
        )
        plain = separators is None or (isinstance(separators, list) and all(isinstance(s, str) for s in separators))
        check_setting(owner, "separators", separators, plain, "None or a list of strings")
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.separators = list(DEFAULT_SEPARATORS if separators is None else separators)
        self._length = LengthUnit(unit, tokenizer, owner)

    def warm_up(self) -> None:
        self._length.warm_up()

    def split(self, text: str) -> list[Span]:
        measure = self._length.measure(text)
        return [Span(a, b) for a, b in self._spans(text, 0, len(text), measure)]

    def _spans(self, text: str, start: int, end: int, measure: Measure) -> list[tuple[int, int]]:
        return split_recursive(text, start, end, measure, self.chunk_size, self.chunk_overlap, self.separators)


def split_recursive(
    text: str,
    start: int,
    end: int,
    measure: Measure,
    chunk_size: int,
    chunk_overlap: int,
    separators: Sequence[str] = DEFAULT_SEPARATORS,
) -> list[tuple[int, int]]:
    """The (start, end) windows of `text[start:end]`, as described in the module docstring."""
    if start >= end:
        return []
    return _Splitter(text, measure, separators, chunk_size, chunk_overlap).windows(start, end)


@dataclass(frozen=True, slots=True)
class _Piece:
    start: int
    end: int
    level: int  # the index of the first separator that may cut this piece further


class _Splitter:
    def __init__(self, text: str, measure: Measure, separators: Sequence[str], size: int, overlap: int) -> None:
        self.text = text
        self.measure = measure
        self.separators = separators
        self.size = size
        self.overlap = overlap

    def windows(self, start: int, end: int) -> list[tuple[int, int]]:
        pieces: list[_Piece] = []
        self._pieces(start, end, 0, pieces)
        windows = []
        begin, j = start, 0
        while True:
            need = j  # the first piece not yet in a window always joins this one
            while j < len(pieces) and (j == need or self.measure(begin, pieces[j].end) <= self.size):
                j += 1
            windows.append((begin, pieces[j - 1].end))
            if j == len(pieces):
                return windows
            begin = self._next_start(pieces, begin, j)

    def _cut(self, start: int, end: int, level: int) -> tuple[list[int], int] | None:
        """Cut offsets [start, ..., end] at the first separator from `level` on that occurs inside."""
        for i in range(level, len(self.separators)):
            separator = self.separators[i]
            if separator:
                text, bounds = self.text, [start]
                at = text.find(separator, start, end)
                while at != -1:
                    at += len(separator)
                    while at < end and text[at].isspace():  # whitespace stays with its piece
                        at += 1
                    if at < end:
                        bounds.append(at)
                    at = text.find(separator, at, end)
            else:
                bounds = [start, *self.measure.cuts(start, end)]
            if len(bounds) > 1:
                bounds.append(end)
                return bounds, i + 1 if separator else i  # "" cuts words, then a word's tokens
        return None

    def _pieces(self, start: int, end: int, level: int, out: list[_Piece]) -> None:
        if self.measure(start, end) <= self.size:
            out.append(_Piece(start, end, level))
            return
        cut = self._cut(start, end, level)
        if cut is None:
            out.append(_Piece(start, end, len(self.separators)))
            return
        bounds, level = cut
        for a, b in pairwise(bounds):
            self._pieces(a, b, level, out)

    def _next_start(self, pieces: list[_Piece], begin: int, j: int) -> int:
        """Where the window that must take in `pieces[j]` starts, overlapping the previous one."""
        end, after = pieces[j - 1].end, pieces[j].end

        def fits(at: int) -> bool:
            return self.measure(at, end) <= self.overlap and self.measure(at, after) <= self.size

        k = j
        while pieces[k - 1].start > begin and fits(pieces[k - 1].start):
            k -= 1
        if k < j or self.overlap == 0:
            return pieces[k].start
        return self._tail(pieces[j - 1], fits)

    def _tail(self, piece: _Piece, fits: Callable[[int], bool]) -> int:
        """The earliest cut inside `piece`, at its coarsest usable separator, where `fits` holds."""
        start, level = piece.start, piece.level
        while (cut := self._cut(start, piece.end, level)) is not None:
            bounds, level = cut
            k = len(bounds) - 1
            while k > 1 and fits(bounds[k - 1]):
                k -= 1
            if k < len(bounds) - 1:
                return bounds[k]
            start = bounds[-2]
        return piece.end
