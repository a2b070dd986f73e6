"""How chunk sizes are measured: in characters, or in tokens of a model's tokenizer.

A `Measure` is built once per document. In tokens it tokenizes the whole text once, with
offsets, and answers "how many tokens in text[a:b]" by bisecting the token offsets, so the
splitters do not re-tokenize pieces. Counts exclude special tokens such as [CLS] and [SEP].
"""

from __future__ import annotations

import functools
from bisect import bisect_left, bisect_right
from pathlib import Path
from typing import TYPE_CHECKING

from rag.core.errors import ConfigError, MissingDependencyError, ModelLoadError, RagError
from rag.runtime.models import resolve_model

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = ["UNITS", "LengthUnit", "Measure", "TokenMeasure", "load_tokenizer"]

UNITS = ("tokens", "chars")


class Measure:
    """Lengths of slices of one text, in characters, not counting surrounding whitespace."""

    def __init__(self, text: str) -> None:
        self._text = text

    def __call__(self, start: int, end: int) -> int:
        """The length of `text[start:end]` without surrounding whitespace (as its chunk has)."""
        return len(self._text[start:end].strip())

    def cuts(self, start: int, end: int) -> list[int]:
        """The offsets strictly inside `(start, end)` where the slice may be cut into small pieces."""
        return list(range(start + 1, end))


class TokenMeasure(Measure):
    """Lengths of slices of one text, in tokens, from a single tokenization with offsets.

    A slice whose ends fall between words is counted by bisecting the token offsets (a token
    counts when it overlaps the slice). A slice that starts or ends inside a word would be
    tokenized differently on its own, so it is tokenized again. `cuts` offers the word starts
    inside the slice, or the token starts when the slice is a single word.
    """

    def __init__(self, text: str, tokenizer: Tokenizer) -> None:
        super().__init__(text)
        encoding = tokenizer.encode(text, add_special_tokens=False)
        self._tokenizer = tokenizer
        self._words = encoding.word_ids
        offsets = encoding.offsets
        self._starts = [s for s, _ in offsets]
        self._ends = [e for _, e in offsets]

    def __call__(self, start: int, end: int) -> int:
        if end <= start:
            return 0
        if self._inside_word(start) or self._inside_word(end):
            piece = self._text[start:end]
            return len(self._tokenizer.encode(piece, add_special_tokens=False).ids)
        return bisect_left(self._starts, end) - bisect_right(self._ends, start)

    def cuts(self, start: int, end: int) -> list[int]:
        tokens = self._starts[bisect_right(self._starts, start) : bisect_left(self._starts, end)]
        return [at for at in tokens if not self._inside_word(at)] or tokens

    def _inside_word(self, at: int) -> bool:
        """Whether `at` falls inside a token or between two tokens of one word."""
        i = bisect_left(self._starts, at)
        if i < len(self._starts) and self._starts[i] == at:
            return (
                i > 0
                and self._ends[i - 1] == at
                and self._words[i] is not None
                and (self._words[i - 1] == self._words[i])
            )
        return i > 0 and self._ends[i - 1] > at


class LengthUnit:
    """The unit chunk sizes are given in: "chars", or "tokens" of the tokenizer `tokenizer`."""

    def __init__(self, unit: str, tokenizer: str, owner: str) -> None:
        if unit not in UNITS:
            raise ConfigError(f"{owner}: unit={unit!r} is not supported; use one of {', '.join(UNITS)}")
        self.unit = unit
        self.tokenizer = tokenizer
        self._tokenizer: Tokenizer | None = None

    def warm_up(self) -> None:
        """Load the tokenizer (tokens only); later calls do nothing."""
        if self.unit == "tokens" and self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.tokenizer)

    def measure(self, text: str) -> Measure:
        """A `Measure` for slices of `text` (tokenizes `text` once)."""
        if self.unit == "chars":
            return Measure(text)
        tokenizer = self._tokenizer
        if tokenizer is None:
            tokenizer = self._tokenizer = load_tokenizer(self.tokenizer)
        return TokenMeasure(text, tokenizer)


@functools.cache
def load_tokenizer(name: str) -> Tokenizer:
    """The fast tokenizer of model `name` (hub name, packaged model or folder), without truncation."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise MissingDependencyError("tokenizers", "embed", "Measuring chunks in tokens") from None
    path = Path(resolve_model(name))
    try:
        if (path / "tokenizer.json").is_file():
            tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        else:
            tokenizer = _transformers_tokenizer(str(path) if path.exists() else name)
    except RagError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"cannot load the tokenizer of '{name}': {exc}; give a hub model name or a folder with "
            "tokenizer.json, or measure chunks with unit='chars'"
        ) from exc
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def _transformers_tokenizer(name: str) -> Tokenizer:
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise MissingDependencyError("transformers", "embed", f"Loading the tokenizer '{name}'") from None
    tokenizer = AutoTokenizer.from_pretrained(name)
    if not tokenizer.is_fast:
        raise ModelLoadError(f"the tokenizer of '{name}' has no fast version; use unit='chars' for it")
    return tokenizer.backend_tokenizer
