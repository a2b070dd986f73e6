"""`rag calibrate-answers`: fit the extractive sentence scorer and the abstention model on labelled questions.

For every question of the split (a folder in the layout of `rag.eval.squad`), the pipeline retrieves its passages
(output `hits`, as `AnswerBuilder` gets them in extractive mode) and every sentence of them gets its features
(`rag.answer.extractive`). Then, with scikit-learn:

1. **sentence model**: a logistic regression over `SENTENCE_FEATURES`, on the sentences of answerable questions,
   labelled by whether the sentence contains a gold answer (SQuAD normalisation);
2. **answerability model**: a logistic regression over `ANSWERABILITY_FEATURES` (read with the sentence model just
   fit), labelled by whether the question is answerable and a retrieved sentence holds a gold answer;
3. **threshold**: `abstain_below` is the answerability probability under which `max_false_abstention` of the
   answerable questions fall (the operating point: how many answerable questions one accepts to abstain on);
4. **support check** (grounded mode, `rag.answer.support`): claims made from the paragraphs of answerable
   questions, checked against their own paragraph. Supported: the sentence that holds the gold answer, and
   pieces of it (its words from the answer on, and up to the answer's end). Unsupported: the same three with
   the gold answer replaced by the gold answer of another question of the same article, and each sentence of
   another paragraph of the article. A logistic regression over `SUPPORT_FEATURES`; `min_probability` lets
   through `max_false_support` of the unsupported claims.

Features are standardised (mean 0, variance 1 on these questions) and the scale kept with the weights.

`calibrate_polar` fits one more part on a PubMedQA folder: the yes/no decision that starts an extractive answer
to a polar question (`rag.answer.polar`), a logistic regression over `POLAR_FEATURES` of the best sentences the
base calibration reads, on the yes and no questions outside the folder's test split; "yes" from probability 0.5.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any

import numpy as np

from rag.answer.extractive import (
    ANSWERABILITY_FEATURES,
    SENTENCE_FEATURES,
    AnswerCalibration,
    Evidence,
    LinearModel,
    SentenceEmbedder,
    answerability_features,
    read,
)
from rag.answer.polar import POLAR_FEATURES, polar_features
from rag.answer.sentences import passage_sentences, sentence_spans
from rag.answer.support import SUPPORT_FEATURES, passage_idf, support_features, windows
from rag.core.errors import ConfigError, MissingDependencyError, PipelineError
from rag.core.pipeline import Pipeline
from rag.core.types import Chunk, Hit
from rag.eval.answers import load_pubmedqa, normalize_answer
from rag.eval.runner import load_corpus_index
from rag.eval.squad import QAQuestion, load_question_set
from rag.indexer import Progress

__all__ = ["calibrate_answers", "calibrate_polar", "contains_gold"]


def contains_gold(text: str, answers: tuple[str, ...]) -> bool:
    """Whether `text` contains one of the gold `answers` (both SQuAD-normalised, as whole words)."""
    normalized = f" {normalize_answer(text)} "
    return any(f" {normalize_answer(gold)} " in normalized for gold in answers if normalize_answer(gold))


def calibrate_answers(
    pipeline: Pipeline,
    dataset_dir: str | os.PathLike[str],
    split: str = "calibration",
    *,
    model: str = "sentence-transformers/all-MiniLM-L6-v2",
    max_false_abstention: float = 0.15,
    max_false_support: float = 0.05,
    limit: int | None = None,
    index_root: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    progress: Progress | None = None,
) -> AnswerCalibration:
    """Fit an `AnswerCalibration` on the questions of `split` (see the module docstring)."""
    if "hits" not in pipeline.outputs:
        raise PipelineError(f"pipeline '{pipeline.name}' has no 'hits' output to take the passages from")
    if not 0 < max_false_abstention < 1:
        raise ConfigError(f"max_false_abstention must be between 0 and 1, got {max_false_abstention}")
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError as exc:
        raise MissingDependencyError("scikit-learn", "train", "rag calibrate-answers") from exc
    data = load_question_set(dataset_dir, split)
    questions = data.spread(limit)
    load_corpus_index(data.as_beir(), pipeline, "document", index_root, use_cache, progress)
    pipeline.warm_up(["hits"])
    embedder = SentenceEmbedder(model)
    embedder.warm_up()
    gathered: list[tuple[QAQuestion, Evidence, np.ndarray]] = []
    for done, item in enumerate(questions, start=1):
        hits = pipeline.run({"query": item.question}, outputs=["hits"])["hits"]
        evidence = embedder.evidence(item.question, hits)
        if evidence.sentences:
            labels = np.asarray([item.answerable and contains_gold(s.text, item.answers) for s in evidence.sentences])
            gathered.append((item, evidence, labels))
        if progress:
            progress("reading passages", done, len(questions))
    answerable = [(e, y) for item, e, y in gathered if item.answerable]
    if not answerable or not any(y.any() for _, y in answerable):
        raise ConfigError(
            f"the {split} split of {dataset_dir} has no answerable question whose passages hold a gold answer"
        )
    sentence_model = _fit(
        LogisticRegression,
        SENTENCE_FEATURES,
        np.vstack([e.features for e, _ in answerable]),
        np.concatenate([y for _, y in answerable]),
    )
    rows = np.vstack([answerability_features(e, sentence_model.logits(e.features)) for _, e, _ in gathered])
    found = np.asarray([y.any() for _, _, y in gathered])
    answerability_model = _fit(LogisticRegression, ANSWERABILITY_FEATURES, rows, found)
    probabilities = answerability_model.probabilities(rows)
    is_answerable = np.asarray([item.answerable for item, _, _ in gathered])
    threshold = float(np.quantile(probabilities[is_answerable], max_false_abstention))
    top_holds_gold = [bool(y[np.argmax(sentence_model.logits(e.features))]) for e, y in answerable]
    source: dict[str, Any] = {
        "dataset": data.name,
        "split": split,
        "questions": len(gathered),
        "answerable": int(is_answerable.sum()),
        "pipeline": pipeline.name,
        "max_false_abstention": max_false_abstention,
        "fit_on": datetime.date.today().isoformat(),
        "in_sample": {
            "best_sentence_holds_gold": round(float(np.mean(top_holds_gold)), 4),
            "abstention_unanswerable": round(float(np.mean(probabilities[~is_answerable] < threshold)), 4)
            if (~is_answerable).any()
            else None,
        },
    }
    support = _fit_support(LogisticRegression, data.corpus, [q for q in questions if q.answerable], max_false_support)
    return AnswerCalibration(model, sentence_model, answerability_model, threshold, support, source)


def calibrate_polar(
    pipeline: Pipeline,
    dataset_dir: str | os.PathLike[str],
    base: AnswerCalibration,
    *,
    limit: int | None = None,
    index_root: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    progress: Progress | None = None,
) -> AnswerCalibration:
    """`base` with its polar part fit on the PubMedQA folder's questions outside the test split (see above)."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError as exc:
        raise MissingDependencyError("scikit-learn", "train", "rag calibrate-answers") from exc
    data = load_pubmedqa(dataset_dir)
    items = [item for item in data.calibration_items if item.decision in ("yes", "no")][:limit]
    if not items:
        raise ConfigError(
            f"{dataset_dir} has no yes/no question outside its test split (test_ground_truth.json) to calibrate on"
        )
    load_corpus_index(data.as_beir(), pipeline, "document", index_root, use_cache, progress)
    pipeline.warm_up(["hits"])
    embedder = SentenceEmbedder(base.model)
    embedder.warm_up()
    rows = []
    for done, item in enumerate(items, start=1):
        hits = pipeline.run({"query": item.question}, outputs=["hits"])["hits"]
        reading = read(embedder.evidence(item.question, hits), base, abstain=False)
        rows.append(polar_features([sentence.text for sentence, _ in reading.best(3)]))
        if progress:
            progress("reading passages", done, len(items))
    labels = np.asarray([item.decision == "yes" for item in items])
    model = _fit(LogisticRegression, POLAR_FEATURES, np.asarray(rows, dtype=np.float64), labels)
    decided = model.probabilities(np.asarray(rows, dtype=np.float64)) >= 0.5
    polar = {
        "model": model.to_dict(),
        "min_probability": 0.5,
        "dataset": data.name,
        "questions": len(items),
        "yes": int(labels.sum()),
        "in_sample_accuracy": round(float(np.mean(decided == labels)), 4),
    }
    return dataclasses.replace(base, polar=polar)


def _support_claims(corpus: dict[str, tuple[str, str]], questions: list[QAQuestion]) -> list[tuple[str, Hit, bool]]:
    """(claim, paragraph, supported) examples for the support check (see the module docstring)."""
    articles: dict[str, list[str]] = {}
    for doc_id, (title, _) in corpus.items():
        articles.setdefault(title, []).append(doc_id)
    by_article: dict[int, list[str]] = {}
    for item in questions:
        by_article.setdefault(item.article, []).append(item.answers[0])
    examples = []
    for item in questions:
        title, text = corpus[item.paragraph]
        hit = Hit(Chunk(item.paragraph, item.paragraph, text, 0, len(text), {"title": title}), 1.0)
        gold = next((a for a in item.answers if a and a in text), None)
        sentence = next((text[a:b] for a, b in sentence_spans(text) if gold and gold in text[a:b]), None)
        if gold is None or sentence is None:
            continue
        at = sentence.index(gold)
        pieces = [sentence, sentence[at:], sentence[: at + len(gold)]]
        examples += [(piece, hit, True) for piece in pieces]
        others = [a for a in by_article[item.article] if normalize_answer(a) != normalize_answer(gold)]
        if others:
            wrong = others[(len(examples) * 7919) % len(others)]
            examples += [(piece.replace(gold, wrong), hit, False) for piece in pieces]
        neighbours = [p for p in articles[title] if p != item.paragraph]
        if neighbours:
            other = corpus[neighbours[len(examples) % len(neighbours)]][1]
            spans = sentence_spans(other)
            a, b = spans[len(examples) % len(spans)]
            examples.append((other[a:b], hit, False))
    return examples


def _fit_support(
    estimator: Any, corpus: dict[str, tuple[str, str]], questions: list[QAQuestion], max_false_support: float
) -> dict[str, Any]:
    examples = _support_claims(corpus, questions)
    rows, labels = [], []
    for claim, hit, supported in examples:
        sentences = passage_sentences([hit])
        idf = passage_idf(sentences)
        rows.append(max((support_features(claim, text, idf) for _, _, text in windows(sentences)), key=lambda r: r[1]))
        labels.append(supported)
    model = _fit(estimator, SUPPORT_FEATURES, np.asarray(rows, dtype=np.float64), np.asarray(labels))
    probabilities = model.probabilities(np.asarray(rows, dtype=np.float64))
    positive = np.asarray(labels)
    threshold = float(np.quantile(probabilities[~positive], 1 - max_false_support))
    return {
        "model": model.to_dict(),
        "min_probability": threshold,
        "claims": len(examples),
        "max_false_support": max_false_support,
        "in_sample_supported_kept": round(float(np.mean(probabilities[positive] >= threshold)), 4),
    }


def _fit(estimator: Any, names: tuple[str, ...], rows: np.ndarray, labels: np.ndarray) -> LinearModel:
    """A standardised logistic regression (scikit-learn, C = 1) as a `LinearModel`."""
    if len(set(labels.tolist())) < 2:
        raise ConfigError("calibration needs both positive and negative examples; give more questions")
    mean = rows.mean(axis=0)
    scale = rows.std(axis=0)
    scale[scale == 0] = 1.0
    fitted = estimator(C=1.0, max_iter=5000).fit((rows - mean) / scale, labels)
    return LinearModel(names, mean, scale, fitted.coef_[0].astype(np.float64), float(fitted.intercept_[0]))
