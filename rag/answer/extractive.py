"""Extractive answers: which sentence of the retrieved passages answers the question, and does any?

Every sentence of the passages is described by `SENTENCE_FEATURES` (its embedding similarity to the question,
the question terms it holds, the rank of its passage, whether it holds what the question asks for: a number for
"how many", a name for "who"...). A logistic regression over them gives each sentence the probability that it
holds the answer. A second one over `ANSWERABILITY_FEATURES` (the best sentence's score and what of the
question is missing around it: a term the passages never mention, a negation the sentence lacks) gives the
probability that the passages answer the question at all. Both are fit on labelled questions by
`rag.answer.calibrate` and kept in an `AnswerCalibration` (a JSON file); the answer abstains below its
`abstain_below`.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rag.answer.linear import LinearModel
from rag.answer.sentences import PassageSentence, passage_sentences, terms
from rag.core.errors import ConfigError, InputPathError, InvalidArgumentError
from rag.core.types import Hit

__all__ = [
    "ANSWERABILITY_FEATURES",
    "SENTENCE_FEATURES",
    "SHIPPED_CALIBRATION",
    "AnswerCalibration",
    "Evidence",
    "Reading",
    "SentenceEmbedder",
    "answerability_features",
    "candidate_sentences",
    "gather_evidence",
    "read",
]

SHIPPED_CALIBRATION = Path(__file__).with_name("calibration.json")
"""Fit by `rag calibrate-answers` on the calibration split of squad2 with the default pipeline (docs/answers.md)."""

SENTENCE_FEATURES = (
    "similarity",
    "passage_rank",
    "term_recall",
    "weighted_term_recall",
    "bigram_recall",
    "passage_weighted_term_recall",
    "new_terms",
    "number_asked_and_given",
    "name_asked_and_given",
    "length",
)
ANSWERABILITY_FEATURES = (
    "best_logit",
    "second_logit",
    "best_similarity",
    "best_weighted_term_recall",
    "best_passage_weighted_term_recall",
    "missing_in_passage_max_idf",
    "missing_in_passage_count",
    "missing_in_passage_share",
    "missing_in_sentence_max_idf",
    "missing_in_sentence_count",
    "missing_in_sentence_share",
    "negation_only_in_question",
    "negation_only_in_sentence",
    "best_passage_rank",
    "question_terms",
    "best_bigram_recall",
    "top3_mean_logit",
    "max_similarity",
)
_NUMBER_QUESTION = re.compile(
    r"\bhow (many|much|long|old|far|large|big|often)\b|\bwhat (year|percentage|number|century|decade)\b|\bwhen\b"
    r"|\bwhich (year|century)\b",
    re.IGNORECASE,
)
_NAME_QUESTION = re.compile(r"\b(who|whom|whose|where)\b", re.IGNORECASE)
_DIGIT = re.compile(r"\d")
_WORD = re.compile(r"\w+")
_NAME = re.compile(r"\b[A-Z][a-z]+")
_NEGATION = re.compile(r"\b(not|never|no|without|none|nobody|nothing|neither|nor)\b|n't\b", re.IGNORECASE)


@dataclass(frozen=True)
class AnswerCalibration:
    """What extractive answers and abstention are decided by: two linear models and a threshold.

    `model` is the sentence-embedding model the similarity feature was computed with; `abstain_below` the
    answerability probability under which an answer abstains; `support` the grounded mode's support check
    (`rag.answer.support`); `polar` the yes/no decision of polar questions (`rag.answer.polar`; empty: none);
    `source` says what each part was fit on and what it measured there.
    """

    model: str
    sentence: LinearModel
    answerability: LinearModel
    abstain_below: float
    support: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    polar: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "sentence": self.sentence.to_dict(),
            "answerability": self.answerability.to_dict(),
            "abstain_below": self.abstain_below,
            "support": self.support,
            "polar": self.polar,
            "source": self.source,
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path | None = None) -> AnswerCalibration:
        """Read a calibration file (None: the one shipped with rag)."""
        source = Path(path).expanduser() if path is not None else SHIPPED_CALIBRATION
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
            return cls(
                model=str(data["model"]),
                sentence=LinearModel.from_dict(data["sentence"], SENTENCE_FEATURES),
                answerability=LinearModel.from_dict(data["answerability"], ANSWERABILITY_FEATURES),
                abstain_below=float(data["abstain_below"]),
                support=dict(data.get("support") or {}),
                source=dict(data.get("source") or {}),
                polar=dict(data.get("polar") or {}),
            )
        except OSError as exc:
            raise InputPathError(f"cannot read the answer calibration {source}: {exc}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{source} is not an answer calibration ({exc!r}); write one with `rag calibrate-answers`"
            ) from exc


@dataclass(frozen=True)
class Evidence:
    """The candidate sentences of one question's passages and what the models read from them."""

    question: str
    sentences: list[PassageSentence]
    features: np.ndarray
    """One row of `SENTENCE_FEATURES` per sentence."""
    question_terms: frozenset[str]
    idf: dict[str, float]
    """Inverse document frequency of each question term over the candidate sentences."""
    sentence_terms: list[frozenset[str]]
    passage_terms: dict[int, frozenset[str]]
    question_negated: bool


def gather_evidence(question: str, sentences: list[PassageSentence], similarities: np.ndarray) -> Evidence:
    """The features of every sentence for `question`; `similarities` are the question-sentence cosines."""
    question_list = terms(question)
    asked = frozenset(question_list)
    asked_bigrams = set(itertools.pairwise(question_list))
    sentence_lists = [terms(s.text) for s in sentences]
    sentence_terms = [frozenset(t) for t in sentence_lists]
    document_frequency = Counter(term for t in sentence_terms for term in t)
    count = len(sentences)
    idf = {term: math.log((count + 1) / (document_frequency.get(term, 0) + 0.5)) for term in asked}
    total_idf = sum(idf.values()) or 1.0
    passage_terms: dict[int, frozenset[str]] = {}
    for sentence, found in zip(sentences, sentence_terms, strict=True):
        passage_terms[sentence.n] = passage_terms.get(sentence.n, frozenset()) | found
    wants_number = bool(_NUMBER_QUESTION.search(question))
    wants_name = bool(_NAME_QUESTION.search(question))
    rows = []
    for sentence, found, listed, similarity in zip(
        sentences, sentence_terms, sentence_lists, similarities, strict=True
    ):
        shared = asked & found
        names = sum(1 for word in _NAME.findall(sentence.text[1:]) if not asked.issuperset(terms(word)))
        rows.append(
            [
                float(similarity),
                sentence.n - 1,
                len(shared) / max(1, len(asked)),
                sum(idf[t] for t in shared) / total_idf,
                len(asked_bigrams & set(itertools.pairwise(listed))) / max(1, len(asked_bigrams)),
                sum(idf[t] for t in asked & passage_terms[sentence.n]) / total_idf,
                min(len(found - asked), 30) / 30,
                float(wants_number and bool(_DIGIT.search(sentence.text))),
                float(wants_name) * min(names, 5) / 5,
                len(listed) / 40,
            ]
        )
    features = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(SENTENCE_FEATURES))
    negated = bool(_NEGATION.search(question))
    return Evidence(question, sentences, features, asked, idf, sentence_terms, passage_terms, negated)


def answerability_features(evidence: Evidence, logits: np.ndarray) -> np.ndarray:
    """The `ANSWERABILITY_FEATURES` of one question, given each sentence's logit of holding the answer."""
    if not evidence.sentences:
        raise InvalidArgumentError("answerability needs at least one candidate sentence")
    order = np.argsort(-logits, kind="stable")
    best = int(order[0])
    sentence = evidence.sentences[best]
    idf = evidence.idf
    total = sum(idf.values()) or 1.0
    missing_passage = [idf[t] for t in evidence.question_terms - evidence.passage_terms[sentence.n]]
    missing_sentence = [idf[t] for t in evidence.question_terms - evidence.sentence_terms[best]]
    column = {name: i for i, name in enumerate(SENTENCE_FEATURES)}
    row = evidence.features[best]
    return np.asarray(
        [
            logits[best],
            logits[order[1]] if len(order) > 1 else logits[best] - 10.0,
            row[column["similarity"]],
            row[column["weighted_term_recall"]],
            row[column["passage_weighted_term_recall"]],
            max(missing_passage, default=0.0),
            len(missing_passage),
            sum(missing_passage) / total,
            max(missing_sentence, default=0.0),
            len(missing_sentence),
            sum(missing_sentence) / total,
            float(evidence.question_negated and not _NEGATION.search(sentence.text)),
            float(not evidence.question_negated and bool(_NEGATION.search(sentence.text))),
            row[column["passage_rank"]],
            len(evidence.question_terms),
            row[column["bigram_recall"]],
            float(np.mean(logits[order[:3]])),
            float(evidence.features[:, column["similarity"]].max()),
        ],
        dtype=np.float64,
    )


@dataclass(frozen=True)
class Reading:
    """A question's candidate sentences, each one's probability of holding the answer, and answerability.

    `abstain` is True when `answerability` is under the calibrated threshold `abstain_below` (or nothing was
    retrieved): the passages do not answer the question.
    """

    evidence: Evidence
    probabilities: np.ndarray
    answerability: float
    abstain_below: float
    calibration: AnswerCalibration

    @property
    def abstain(self) -> bool:
        return not self.evidence.sentences or self.answerability < self.abstain_below

    def best(self, count: int = 1) -> list[tuple[PassageSentence, float]]:
        """The `count` most probable sentences, best first, with their probabilities."""
        order = np.argsort(-self.probabilities, kind="stable")[:count]
        return [(self.evidence.sentences[i], float(self.probabilities[i])) for i in order]


def candidate_sentences(question: str, hits: list[Hit]) -> list[PassageSentence]:
    """The sentences of `hits` that may answer `question`: all but those repeating the whole question (a document
    quoting it, as an example, does not answer it)."""
    asked = _words(question)
    return [s for s in passage_sentences(hits) if not asked or asked not in _words(s.text)]


def _words(text: str) -> str:
    """Lower-case words joined by single spaces, with a space on each side (for whole-phrase containment)."""
    return f" {' '.join(_WORD.findall(text.lower()))} " if _WORD.search(text) else ""


def read(evidence: Evidence, calibration: AnswerCalibration, abstain: bool = True) -> Reading:
    """Every sentence's probability of holding the answer, and the probability that any does.

    With `abstain=False` the reading never abstains (unless there is no sentence at all).
    """
    threshold = calibration.abstain_below if abstain else -1.0
    if not evidence.sentences:
        return Reading(evidence, np.zeros(0), 0.0, threshold, calibration)
    logits = calibration.sentence.logits(evidence.features)
    answerable = calibration.answerability.probabilities(answerability_features(evidence, logits)[None, :])
    return Reading(evidence, 1.0 / (1.0 + np.exp(-logits)), float(answerable[0]), threshold, calibration)


class SentenceEmbedder:
    """Embeds questions and passage sentences with a sentence-transformers model and gathers `Evidence`."""

    def __init__(self, model: str, device: str = "auto") -> None:
        from rag.embed.dense import SentenceTransformerEmbedder

        self.model = model
        self._embedder = SentenceTransformerEmbedder(model, device=device, query_backend="auto")

    def warm_up(self) -> None:
        self._embedder.load()

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit vectors of `texts` (sentences)."""
        return self._embedder.encode_documents(texts)

    def evidence(self, question: str, hits: list[Hit]) -> Evidence:
        """The candidate sentences of `hits` and their features for `question`."""
        sentences = candidate_sentences(question, hits)
        if not sentences:
            return gather_evidence(question, [], np.zeros(0))
        query = self._embedder.encode_queries([question])[0]
        return gather_evidence(question, sentences, self.embed([s.text for s in sentences]) @ query)
