"""Tokenization for BM25: text -> tokens -> per-document term counts.

`BM25Tokenizer` lowercases, splits on a regular expression, drops stopwords and optionally stems
(Snowball, through the `snowballstemmer` package). `term_frequencies` turns token lists into a
sparse CSR matrix of counts over a vocabulary that grows as new terms are seen.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from scipy import sparse

from rag.core.errors import ConfigError, MissingDependencyError

__all__ = ["ENGLISH_STOPWORDS", "BM25Tokenizer", "term_frequencies"]

_ENGLISH = """a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just me more most my
myself no nor not now of off on once only or other our ours ourselves out over own same she should so some
such than that the their theirs them themselves then there these they this those through to too under
until up very was we were what when where which while who whom why will with would you your yours yourself
yourselves"""
ENGLISH_STOPWORDS: frozenset[str] = frozenset(_ENGLISH.split())
"""A small English stopword list (the common function words)."""

STEMMERS = (None, "snowball")


class BM25Tokenizer:
    """Splits text into BM25 terms.

    `token_pattern` is a regular expression matched against the (lowercased) text; `stopwords` is
    None, "english" or a list of words to drop; `stemmer` is None or "snowball" (English Snowball,
    needs `pip install 'rag[bm25-stem]'`). Stopwords are removed before stemming.
    """

    def __init__(
        self,
        lowercase: bool = True,
        token_pattern: str = r"\w+",
        stopwords: str | Sequence[str] | None = None,
        stemmer: str | None = None,
    ) -> None:
        self.lowercase = lowercase
        try:
            self._pattern = re.compile(token_pattern)
        except re.error as exc:
            raise ConfigError(f"BM25 token_pattern {token_pattern!r} is not a valid regex: {exc}") from exc
        self._stopwords = _stopword_set(stopwords)
        self._stem = _stemmer(stemmer)

    def __call__(self, text: str) -> list[str]:
        """The terms of one text, in order (repeated terms repeat)."""
        if self.lowercase:
            text = text.lower()
        tokens = [t for t in self._pattern.findall(text) if t not in self._stopwords]
        return [self._stem(t) for t in tokens] if self._stem else tokens

    def tokenize(self, texts: Iterable[str]) -> list[list[str]]:
        """The terms of each text."""
        return [self(text) for text in texts]


def term_frequencies(documents: Sequence[Sequence[str]], vocabulary: dict[str, int]) -> sparse.csr_array:
    """Term counts of `documents` as a CSR array with one row per document.

    Terms missing from `vocabulary` (term -> column) are added to it in place, with the next free
    column, so the result has `len(vocabulary)` columns after the call.
    """
    indptr = np.zeros(len(documents) + 1, dtype=np.int64)
    columns: list[int] = []
    counts: list[int] = []
    for row, tokens in enumerate(documents):
        for term, count in Counter(tokens).items():
            column = vocabulary.get(term)
            if column is None:
                column = vocabulary[term] = len(vocabulary)
            columns.append(column)
            counts.append(count)
        indptr[row + 1] = len(columns)
    return sparse.csr_array(
        (np.asarray(counts, dtype=np.int32), np.asarray(columns, dtype=np.int32), indptr),
        shape=(len(documents), len(vocabulary)),
    )


def _stopword_set(stopwords: str | Sequence[str] | None) -> frozenset[str]:
    if stopwords is None:
        return frozenset()
    if stopwords == "english":
        return ENGLISH_STOPWORDS
    if isinstance(stopwords, str):
        raise ConfigError(f"BM25 stopwords must be None, 'english' or a list of words, got {stopwords!r}")
    return frozenset(stopwords)


def _stemmer(name: str | None) -> Callable[[str], str] | None:
    if name is None:
        return None
    if name != "snowball":
        raise ConfigError(f"BM25 stemmer must be one of {STEMMERS}, got {name!r}")
    try:
        import snowballstemmer
    except ImportError as exc:
        raise MissingDependencyError("snowballstemmer", "bm25-stem", "BM25 stemmer='snowball'") from exc
    return functools.lru_cache(maxsize=1 << 16)(snowballstemmer.stemmer("english").stemWord)
