"""Does a passage support an answer sentence? A lexical check, fast enough to run on every sentence of an answer.

A claim (one answer sentence) is compared with every window of the passage (one sentence, or two adjacent ones)
by `SUPPORT_FEATURES`: the share of the claim's content terms the window holds, the same weighted by how rare
each term is in the passage, the share of the claim's term pairs (bigrams) it holds, and whether every number
the claim states is in the window ("ninety" and "90" are the same number). A logistic regression over them, fit
by `rag calibrate-answers` on claims built from labelled questions, gives the probability that the window
supports the claim; the best window is the span the citation rests on.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from rag.answer.linear import LinearModel
from rag.answer.sentences import PassageSentence, passage_sentences, terms
from rag.core.types import Hit

__all__ = ["SUPPORT_FEATURES", "Support", "best_support", "numbers_in", "passage_idf", "support_features", "windows"]

SUPPORT_FEATURES = ("term_precision", "weighted_term_precision", "bigram_precision", "numbers_found")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*|[a-z]+", re.IGNORECASE)
_WORDS = {
    word: str(value)
    for value, word in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty",
        ]
    )
} | {
    word: str(10 * tens)
    for tens, word in enumerate(["thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"], 3)
}
_WORDS |= {"hundred": "100", "thousand": "1000", "million": "1000000", "billion": "1000000000"}
_NUMBER_WORD = re.compile(rf"\b({'|'.join(_WORDS)})\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Support:
    """How well the span `start`..`end` (document offsets) of passage `[n]` supports a claim: `probability`."""

    n: int
    hit: Hit
    start: int
    end: int
    probability: float
    page: int | None


def numbers_in(text: str) -> set[str]:
    """The numbers `text` states, as digits without separators ("ninety" and "90" are both "90")."""
    found = set()
    for token in _NUMBER.findall(text):
        lowered = token.lower()
        if lowered[0].isdigit():
            found.add(lowered.replace(",", "").rstrip("."))
        elif lowered in _WORDS:
            found.add(_WORDS[lowered])
    return found


def _numbers_as_digits(text: str) -> str:
    return _NUMBER_WORD.sub(lambda match: _WORDS[match.group().lower()], text)


def support_features(claim: str, window: str, idf: dict[str, float]) -> list[float]:
    """The `SUPPORT_FEATURES` of `window` for `claim`; `idf` weighs the claim's terms (missing terms weigh 1).
    Number words count as their digits ("ninety" is the term "90")."""
    claim_terms = terms(_numbers_as_digits(claim))
    window_terms = terms(_numbers_as_digits(window))
    have = set(window_terms)
    asked = set(claim_terms)
    weight = {t: idf.get(t, 1.0) for t in asked}
    pairs = set(itertools.pairwise(claim_terms))
    numbers = numbers_in(claim)
    return [
        len(asked & have) / len(asked) if asked else 1.0,
        sum(weight[t] for t in asked & have) / (sum(weight.values()) or 1.0),
        len(pairs & set(itertools.pairwise(window_terms))) / len(pairs) if pairs else 1.0,
        float(numbers <= numbers_in(window)),
    ]


def passage_idf(sentences: list[PassageSentence]) -> dict[str, float]:
    """Inverse document frequency of each term over the sentences of a passage."""
    frequency = Counter(t for s in sentences for t in set(terms(s.text)))
    return {t: math.log((len(sentences) + 1) / (count + 0.5)) for t, count in frequency.items()}


def windows(sentences: list[PassageSentence]) -> list[tuple[int, int, str]]:
    """(first, last, text) of every one- and two-sentence window of one passage's sentences."""
    if not sentences:
        return []
    chunk = sentences[0].hit.chunk
    pairs = [(i, i) for i in range(len(sentences))] + [(i, i + 1) for i in range(len(sentences) - 1)]
    return [(a, b, chunk.text[sentences[a].start - chunk.start : sentences[b].end - chunk.start]) for a, b in pairs]


def best_support(claim: str, hit: Hit, n: int, model: LinearModel) -> Support:
    """The window of passage `hit` (`[n]`) that best supports `claim`, scored by `model` (a `LinearModel`)."""
    sentences = passage_sentences([hit])
    if not sentences:
        return Support(n, hit, hit.chunk.start, hit.chunk.end, 0.0, None)
    idf = passage_idf(sentences)
    spans = windows(sentences)
    rows = np.asarray([support_features(claim, text, idf) for _, _, text in spans], dtype=np.float64)
    probabilities = model.probabilities(rows)
    best = int(np.argmax(probabilities))
    first, last, _ = spans[best]
    return Support(
        n, hit, sentences[first].start, sentences[last].end, float(probabilities[best]), sentences[first].page
    )
