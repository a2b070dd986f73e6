"""Yes or no: the decision an extractive answer to a polar question ("Does X reduce Y?") starts with.

A quote answers "what does the evidence say"; a polar question also wants "so, yes or no?". The decision is read
from cue words in the best sentences of the reading (`POLAR_FEATURES`: negations, "no significant difference"
and the like, hedges, words of an effect), by a logistic regression fit by `rag calibrate-answers` on labelled
yes/no questions (PubMedQA's, outside its test split). It is a calibrated guess that the quote after it lets the
reader check, not a quote itself; an answer carries it in `Answer.decision`.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from rag.answer.extractive import Reading
from rag.answer.linear import LinearModel
from rag.embed.bm25 import ENGLISH_STOPWORDS

__all__ = ["POLAR_FEATURES", "decide", "is_polar", "polar_features"]

POLAR_FEATURES = (
    "negations_best",
    "no_effect_best",
    "hedges_best",
    "effects_best",
    "negations_top3",
    "no_effect_top3",
    "hedges_top3",
    "effects_top3",
)
_AUXILIARY = re.compile(
    r"^\s*(is|are|was|were|do|does|did|can|could|should|will|would|has|have|had|may|might|must)\b", re.IGNORECASE
)
_CLAUSE = re.compile(r"[:;,—]")
_WH_WORD = re.compile(r"\b(what|which|who|whom|whose|when|where|why|how)\b", re.IGNORECASE)
_NEGATION = re.compile(
    r"\b(not|no|never|neither|nor|without|none|nothing|failed|fails|lack|lacks|unchanged|absence)\b|n't\b",
    re.IGNORECASE,
)
_NO_EFFECT = re.compile(
    r"\b(no|not)\b[^.]{0,40}\b(significant|significantly|differ|difference|associated|association|effect|correlat)",
    re.IGNORECASE,
)
_HEDGE = re.compile(
    r"\b(may|might|could|possibly|unclear|uncertain|further|suggest|suggests|potential|whether|limited|inconclusive)\b",
    re.IGNORECASE,
)
_EFFECT = re.compile(
    r"\b(significant|significantly|increased|improved|associated|effective|higher|lower|reduced|predict|correlated)\b",
    re.IGNORECASE,
)


def is_polar(question: str) -> bool:
    """Whether `question` asks for yes or no (a rule, not a model):

    - not when a wh-word (what, who, how...) is among its first three words ("In what year...?");
    - yes when it, or a clause of it after ":", ";", "," or a dash, starts with an auxiliary verb ("Is",
      "Does", "Can"...: "Anticoagulation in trauma: is it safe?");
    - else yes when it has no wh-word and ends with "?" after a content word ("Syncope in infants, a form of
      urticaria?"), not after a function word or participle ("The practice was called?" asks to fill a gap).
    """
    words = question.split()
    if _WH_WORD.search(" ".join(words[:3])):
        return False
    if any(_AUXILIARY.match(clause) for clause in _CLAUSE.split(question)):
        return True
    last = words[-1].rstrip("?").lower() if words else ""
    gap = last in ENGLISH_STOPWORDS or last.endswith("ed") or not last
    return not _WH_WORD.search(question) and question.rstrip().endswith("?") and not gap


def polar_features(sentences: list[str]) -> list[float]:
    """The `POLAR_FEATURES` of the best sentences (best first): cue counts in the best one, then in the top 3."""
    features: list[float] = []
    for text in (sentences[0] if sentences else "", " ".join(sentences[:3])):
        features += [float(len(cue.findall(text))) for cue in (_NEGATION, _NO_EFFECT, _HEDGE, _EFFECT)]
    return features


def decide(reading: Reading, polar: dict[str, Any]) -> str | None:
    """ "yes" or "no" for a polar question with a polar model in `polar` (a calibration's part); else None."""
    if not polar or not reading.evidence.sentences or not is_polar(reading.evidence.question):
        return None
    model = LinearModel.from_dict(polar["model"], POLAR_FEATURES)
    best = [sentence.text for sentence, _ in reading.best(3)]
    probability = float(model.probabilities(np.asarray([polar_features(best)]))[0])
    return "yes" if probability >= float(polar["min_probability"]) else "no"
