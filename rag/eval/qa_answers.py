"""`rag eval-answers` on a RAG question-answering set (`rag.eval.squad` layout: squad2, with unanswerable questions).

The corpus is indexed once (each paragraph whole, `rag.eval.runner.load_corpus_index`, reused between runs) and
each question of the split goes through the pipeline's `answer` output in the answer mode asked for. Scores:

- answerable questions: **exact match** and **token F1** (SQuAD normalisation, best over the gold answers, markers
  removed; an abstention scores 0), **contains gold** (a gold answer is in the answer), **citation holds gold**
  (a cited passage contains a gold answer), **own paragraph retrieved** (the question's paragraph is among the
  passages the answer was given), **false abstention**;
- unanswerable questions: **abstention**;
- **faithfulness**: the share of answer sentences (`Answer.claims` of answers that do not abstain) supported by a
  passage they cite, judged by `judge_supported`: a lexical check that is not the one any answer mode uses;
- **latency** p50 / p95 of one question through the pipeline (retrieval, reading, generation), warm;
- **modes used**: how many answers each mode wrote (a grounded answer whose sentences all fail the support
  check is the extractive quote).

`limit` takes that many questions evenly spread over the split (`QuestionSet.spread`), so a short run still covers
every article and both kinds of question.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rag.answer.markers import content_words, strip_markers
from rag.answer.support import numbers_in
from rag.core.errors import ConfigError, PipelineError
from rag.core.pipeline import Pipeline
from rag.core.types import Answer
from rag.eval.answers import normalize_answer, token_f1
from rag.eval.calibrate_answers import contains_gold
from rag.eval.runner import load_corpus_index
from rag.eval.squad import QAQuestion, load_question_set
from rag.indexer import Progress, retrievers

__all__ = ["JUDGE_MIN_WORDS", "QAReport", "evaluate_qa", "judge_supported"]

JUDGE_MIN_WORDS = 0.8
"""`judge_supported`: the share of a sentence's content words the cited passage must hold."""
_SPACE = re.compile(r"\s+")


def judge_supported(sentence: str, passage: str) -> bool:
    """Whether `passage` supports `sentence` for the faithfulness score: it holds every number the sentence states
    and at least `JUDGE_MIN_WORDS` of its content words (unstemmed words of three letters or more, no stopwords).
    Citation markers in the sentence are not part of it."""
    sentence = strip_markers(sentence)
    words = content_words(sentence)
    if not numbers_in(sentence) <= numbers_in(passage):
        return False
    return not words or len(words & content_words(passage)) / len(words) >= JUDGE_MIN_WORDS


@dataclass
class QAReport:
    """Answer-level scores of one pipeline in one answer mode on one question set split."""

    dataset: str
    split: str
    pipeline: str
    answer_mode: str | None
    answerable: int
    unanswerable: int
    metrics: dict[str, float | None]
    modes_used: dict[str, int]
    """How many answers each mode wrote (a grounded answer with nothing supported is an extractive one)."""
    latency_ms: dict[str, float]
    index: dict[str, Any]
    per_question: list[dict[str, Any]] = field(repr=False, default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The `rag eval-answers --json` document for this mode."""
        return {
            "dataset": self.dataset,
            "split": self.split,
            "pipeline": self.pipeline,
            "answer_mode": self.answer_mode,
            "questions": self.answerable + self.unanswerable,
            "answerable": self.answerable,
            "unanswerable": self.unanswerable,
            **{name: None if value is None else round(value, 4) for name, value in self.metrics.items()},
            "modes_used": dict(self.modes_used),
            "latency_ms": {name: round(value, 1) for name, value in self.latency_ms.items()},
            "index": self.index,
        }


def evaluate_qa(
    pipeline: Pipeline,
    dataset_dir: str | os.PathLike[str],
    split: str = "report",
    answer_mode: str | None = None,
    limit: int | None = None,
    *,
    index_root: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    progress: Progress | None = None,
) -> QAReport:
    """Answer the questions of `split` with `pipeline` in `answer_mode` (None: the pipeline's) and score them."""
    if "answer" not in pipeline.outputs:
        raise PipelineError(
            f"pipeline '{pipeline.name}' has no 'answer' output (outputs: {', '.join(pipeline.outputs)}); "
            "answer-level evaluation needs a pipeline with an AnswerBuilder"
        )
    if not retrievers(pipeline):
        raise PipelineError(f"pipeline '{pipeline.name}' has no retriever to index the corpus with")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be None or at least 1, got {limit}")
    inputs: dict[str, Any] = {}
    if answer_mode is not None:
        pipeline.answer_modes(answer_mode)
        if "answer_mode" not in pipeline.inputs:
            raise PipelineError(f"pipeline '{pipeline.name}' takes no 'answer_mode' input")
        inputs["answer_mode"] = answer_mode
    data = load_question_set(dataset_dir, split)
    questions = data.spread(limit)
    index_info = load_corpus_index(data.as_beir(), pipeline, "document", index_root, use_cache, progress)
    pipeline.warm_up(["answer"])
    records, latencies = [], []
    for done, item in enumerate(questions, start=1):
        started = time.perf_counter()
        answer: Answer = pipeline.run({"query": item.question, **inputs}, outputs=["answer"])["answer"]
        latencies.append(time.perf_counter() - started)
        records.append(_record(item, answer))
        if progress:
            progress("answering", done, len(questions))
    answerable = [r for r in records if r["answerable"]]
    unanswerable = [r for r in records if not r["answerable"]]
    judged = [ok for r in records for ok in r["supported"]]
    metrics = {
        "exact_match": _mean([r["exact_match"] for r in answerable]),
        "token_f1": _mean([r["f1"] for r in answerable]),
        "contains_gold": _mean([r["contains_gold"] for r in answerable]),
        "citation_holds_gold": _mean([r["citation_holds_gold"] for r in answerable]),
        "own_paragraph_retrieved": _mean([r["own_paragraph"] for r in answerable]),
        "false_abstention": _mean([r["abstained"] for r in answerable]),
        "abstention": _mean([r["abstained"] for r in unanswerable]),
        "faithfulness": _mean(judged),
        "sentences_judged": float(len(judged)),
    }
    milliseconds = np.asarray(latencies) * 1000
    return QAReport(
        dataset=data.name,
        split=split,
        pipeline=pipeline.name or "pipeline",
        answer_mode=answer_mode,
        answerable=len(answerable),
        unanswerable=len(unanswerable),
        metrics=metrics,
        modes_used=dict(Counter(r["mode"] for r in records if not r["abstained"])),
        latency_ms={"p50": float(np.percentile(milliseconds, 50)), "p95": float(np.percentile(milliseconds, 95))},
        index=index_info,
        per_question=records,
    )


def _record(item: QAQuestion, answer: Answer) -> dict[str, Any]:
    """The per-question record: the answer and each metric's value for it."""
    text = _SPACE.sub(" ", strip_markers(answer.text)).strip()
    answered = not answer.abstained
    cited = {c.n: c.hit.chunk.text for c in answer.citations}
    supported = []
    if answered:
        for number, claim in enumerate(answer.claims):
            passages = [c.hit.chunk.text for c in answer.citations if c.claim == number] or (
                [cited[n] for n in claim.passages if n in cited]
            )
            supported.append(any(judge_supported(claim.text, p) for p in passages))
    golds = item.answers
    return {
        "id": item.id,
        "question": item.question,
        "answerable": item.answerable,
        "answer": answer.text,
        "mode": answer.mode,
        "abstained": answer.abstained,
        "answerability": answer.answerability,
        "exact_match": answered and any(normalize_answer(text) == normalize_answer(g) for g in golds),
        "f1": max((token_f1(text, g) for g in golds), default=0.0) if answered else 0.0,
        "contains_gold": answered and contains_gold(text, golds),
        "citation_holds_gold": answered and any(contains_gold(p, golds) for p in cited.values()),
        "own_paragraph": any(hit.chunk.path == item.paragraph for hit in answer.hits),
        "supported": supported,
    }


def _mean(values: Sequence[float | bool]) -> float | None:
    return float(np.mean(values)) if len(values) else None
