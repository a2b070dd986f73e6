"""`rag eval-answers`: answer-level evaluation of a generating pipeline on PubMedQA (PQA-L).

The folder holds ``ori_pqal.json`` (PMID -> ``QUESTION``, ``CONTEXTS``: the abstract without its conclusion,
``final_decision``: yes / no / maybe, ``LONG_ANSWER``: the conclusion) and, optionally, ``test_ground_truth.json``
(the official 500-question test split, PMID -> decision). The corpus is every question's context (one document
per PMID: its paragraphs joined by blank lines), indexed once through `rag.eval.runner.load_corpus_index` and
reused. The questions are those of the test split when the file is there, else all of them, in the order of
``ori_pqal.json`` (the split file lists every "yes" first, so its own order would make `--limit` one-sided).

Each question goes through the pipeline's ``answer`` output (retrieval, prompt, generator, `AnswerBuilder`):

- **retrieval hit rate**: the question's own abstract is among the passages given to the generator
  (`Answer.hits`).
- **decision accuracy**: `answer_decision` maps the answer to yes / no / maybe: the first of those three words
  in it (whole words, any case). An answer holding none is *undecided*: it counts as wrong, and the undecided
  fraction is reported.
- **token F1** against the long answer, after `normalize_answer` (SQuAD: lower case, no punctuation, no
  articles, single spaces); citation markers are removed from the answer first.
- **citation validity**: among answers that write at least one ``[n]`` marker, the fraction whose markers all
  refer to a passage actually given (no `Answer.invalid_citations`). `cited` is the fraction that write one.
- **faithfulness**: the judge's (a `Reranker`'s) score of (answer, passage) for each passage the answer cites
  (`Answer.citations`, by marker or by word overlap), averaged per answer, then over the answers that cite one.
  The same judge scores each answer against an unrelated abstract (the previous question's) as a control: a
  judge that cannot tell them apart measures nothing. `default_judge()` is SmolLM2 as an `LLMReranker` by query
  likelihood: how probable the answer's tokens are (geometric mean, 0 to 1) when the model is asked to write a
  sentence based on the passage. Asked "is the statement supported by the passage? yes or no" instead, the 135M
  model preferred a PubMedQA conclusion's own abstract over another one in 10 of 20 cases (chance); by query
  likelihood in 20 of 20.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import string
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.core.errors import ConfigError, InputPathError, PipelineError
from rag.core.pipeline import Pipeline
from rag.core.types import Answer
from rag.eval.beir import BeirDataset
from rag.eval.runner import CHUNKINGS, load_corpus_index
from rag.indexer import Progress, retrievers
from rag.rerank.base import Reranker

__all__ = [
    "DECISIONS",
    "FAITHFULNESS_PROMPT",
    "AnswerReport",
    "PubMedQA",
    "QAItem",
    "answer_decision",
    "default_judge",
    "evaluate_answers",
    "load_pubmedqa",
    "normalize_answer",
    "token_f1",
]

DECISIONS = ("yes", "no", "maybe")
FAITHFULNESS_PROMPT = "Please write a sentence based on this passage.\n\n{passage}"
"""The default judge's prompt (query likelihood: the answer is the sentence whose probability is measured)."""
_WORD = re.compile(r"[a-z]+")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_MARKER = re.compile(r"\[\s*\d+(?:\s*[-–,]\s*\d+)*\s*\]")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def answer_decision(text: str) -> str | None:
    """yes, no or maybe: the first of those words in `text` (whole words, any case); None when there is none."""
    return next((word for word in _WORD.findall(text.lower()) if word in DECISIONS), None)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, punctuation removed, articles removed, whitespace collapsed."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD's token F1 of `prediction` against `reference` after `normalize_answer` (1.0 when both are empty)."""
    predicted, wanted = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not predicted or not wanted:
        return float(predicted == wanted)
    same = sum((Counter(predicted) & Counter(wanted)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(wanted)
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class QAItem:
    """One PubMedQA question: its PMID (the id of its own abstract), decision and long answer."""

    id: str
    question: str
    decision: str
    long_answer: str


@dataclass(frozen=True)
class PubMedQA:
    """The corpus (PMID -> context text) and the questions to ask."""

    name: str
    corpus: dict[str, str]
    items: list[QAItem]
    corpus_sha256: str
    calibration_items: list[QAItem] = field(default_factory=list)
    """The questions outside the test split (none without the split file): for `rag calibrate-answers`."""

    def as_beir(self) -> BeirDataset:
        """The corpus and questions as a BEIR dataset (each question judges its own abstract relevant)."""
        return BeirDataset(
            name=self.name,
            split="answers",
            corpus={doc_id: ("", text) for doc_id, text in self.corpus.items()},
            queries={item.id: item.question for item in self.items},
            qrels={item.id: {item.id: 1} for item in self.items},
            corpus_sha256=self.corpus_sha256,
        )


def load_pubmedqa(folder: str | os.PathLike[str]) -> PubMedQA:
    """Read a PubMedQA folder (see the module docstring); every problem is an InputPathError naming the file."""
    root = Path(folder).expanduser()
    source = root / "ori_pqal.json"
    if not source.is_file():
        raise InputPathError(f"{source} is missing; a PubMedQA folder has ori_pqal.json (and test_ground_truth.json)")
    raw = source.read_bytes()
    records = _json_object(source, raw)
    corpus: dict[str, str] = {}
    items: dict[str, QAItem] = {}
    for pmid, record in records.items():
        try:
            contexts, decision = record["CONTEXTS"], record["final_decision"]
            item = QAItem(str(pmid), str(record["QUESTION"]), str(decision), str(record["LONG_ANSWER"]))
        except (KeyError, TypeError) as exc:
            raise InputPathError(
                f"{source}: record {pmid} lacks {exc}; each needs QUESTION, CONTEXTS, final_decision, LONG_ANSWER"
            ) from exc
        if decision not in DECISIONS or not isinstance(contexts, list):
            raise InputPathError(
                f"{source}: record {pmid} has final_decision {decision!r} (yes, no or maybe) and "
                f"CONTEXTS of type {type(contexts).__name__} (a list of paragraphs)"
            )
        corpus[item.id] = "\n\n".join(str(paragraph) for paragraph in contexts)
        items[item.id] = item
    split = root / "test_ground_truth.json"
    chosen, others = list(items.values()), []
    if split.is_file():
        wanted = _json_object(split, split.read_bytes())
        missing = [pmid for pmid in wanted if pmid not in items]
        if missing:
            raise InputPathError(f"{split} lists question {missing[0]}, which {source} does not have")
        others = [item for item in chosen if item.id not in wanted]
        chosen = [item for item in chosen if item.id in wanted]
    return PubMedQA(root.resolve().name, corpus, chosen, hashlib.sha256(raw).hexdigest(), others)


def _json_object(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise InputPathError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InputPathError(f"{path} should hold one JSON object keyed by PMID")
    return data


def default_judge(device: str = "auto") -> Reranker:
    """The faithfulness judge `rag eval-answers` uses: SmolLM2-135M-Instruct scoring how probable the answer is
    as a sentence written from the passage (`LLMReranker`, query likelihood, `FAITHFULNESS_PROMPT`)."""
    from rag.rerank.llm import LLMReranker

    return LLMReranker(method="query_likelihood", prompt=FAITHFULNESS_PROMPT, top_k=None, device=device)


@dataclass
class AnswerReport:
    """Answer-level scores of one pipeline on one PubMedQA folder, with the per-question records."""

    dataset: str
    pipeline: str
    answer_mode: str | None
    questions: int
    retrieval_hit_rate: float
    decision_accuracy: float
    undecided: float
    token_f1: float
    citation_validity: float | None
    """None when no answer wrote a citation marker."""
    cited: float
    faithfulness: float | None
    """None without a judge, or when no answer cites a passage."""
    faithfulness_control: float | None
    judge: str | None
    seconds: float
    """Answering and judging, after the index is loaded and the models are warm."""
    index: dict[str, Any]
    per_question: list[dict[str, Any]] = field(repr=False, default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The `rag eval-answers --json` document."""

        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 4)

        return {
            "dataset": self.dataset,
            "pipeline": self.pipeline,
            "answer_mode": self.answer_mode,
            "questions": self.questions,
            "abstained": rounded(_mean([r["abstained"] for r in self.per_question])),
            "retrieval_hit_rate": rounded(self.retrieval_hit_rate),
            "decision_accuracy": rounded(self.decision_accuracy),
            "undecided": rounded(self.undecided),
            "token_f1": rounded(self.token_f1),
            "citation_validity": rounded(self.citation_validity),
            "cited": rounded(self.cited),
            "faithfulness": rounded(self.faithfulness),
            "faithfulness_control": rounded(self.faithfulness_control),
            "judge": self.judge,
            "seconds": round(self.seconds, 1),
            "index": self.index,
        }


def evaluate_answers(
    pipeline: Pipeline,
    dataset_dir: str | os.PathLike[str],
    limit: int | None = None,
    *,
    judge: Reranker | None = None,
    chunking: str = "document",
    index_root: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    answer_mode: str | None = None,
    progress: Progress | None = None,
) -> AnswerReport:
    """Answer the first `limit` questions (None: all) of the PubMedQA folder with `pipeline` and score the answers.

    `judge` scores faithfulness (None: not measured; `default_judge()` is what the CLI uses). `chunking`,
    `index_root` and `use_cache` are as in `rag.eval.runner.evaluate`; `answer_mode` overrides the pipeline's.
    """
    if "answer" not in pipeline.outputs:
        raise PipelineError(
            f"pipeline '{pipeline.name}' has no 'answer' output (outputs: {', '.join(pipeline.outputs)}); "
            "answer-level evaluation needs a pipeline with a generator and an AnswerBuilder"
        )
    if not retrievers(pipeline):
        raise PipelineError(f"pipeline '{pipeline.name}' has no retriever to index the corpus with")
    if chunking not in CHUNKINGS:
        raise ConfigError(f"chunking must be one of {', '.join(CHUNKINGS)}, got {chunking!r}")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be None or at least 1, got {limit}")
    inputs: dict[str, Any] = {}
    if answer_mode is not None:
        pipeline.answer_modes(answer_mode)
        inputs["answer_mode"] = answer_mode
    data = load_pubmedqa(dataset_dir)
    items = data.items[:limit]
    index_info = load_corpus_index(data.as_beir(), pipeline, chunking, index_root, use_cache, progress)
    pipeline.warm_up(["answer"])
    if judge is not None:
        judge.warm_up()
    order = list(data.corpus)
    position = {doc_id: n for n, doc_id in enumerate(order)}
    started = time.perf_counter()
    records = []
    for done, item in enumerate(items, start=1):
        answer: Answer = pipeline.run({"query": item.question, **inputs}, outputs=["answer"])["answer"]
        unrelated = data.corpus[order[position[item.id] - 1]]  # the abstract before this one (wraps around)
        records.append(_score(item, answer, judge, unrelated))
        if progress:
            progress("answering", done, len(items))
    seconds = time.perf_counter() - started
    return AnswerReport(
        dataset=data.name,
        pipeline=pipeline.name or "pipeline",
        answer_mode=answer_mode,
        questions=len(records),
        retrieval_hit_rate=_mean([r["hit"] for r in records]) or 0.0,
        decision_accuracy=_mean([r["decision"] == r["gold"] for r in records]) or 0.0,
        undecided=_mean([r["decision"] is None for r in records]) or 0.0,
        token_f1=_mean([r["f1"] for r in records]) or 0.0,
        citation_validity=_mean([r["valid"] for r in records if r["valid"] is not None]),
        cited=_mean([r["valid"] is not None for r in records]) or 0.0,
        faithfulness=_mean([r["faithfulness"] for r in records if r["faithfulness"] is not None]),
        faithfulness_control=_mean([r["control"] for r in records if r["control"] is not None]),
        judge=_describe(judge),
        seconds=seconds,
        index=index_info,
        per_question=records,
    )


def _score(item: QAItem, answer: Answer, judge: Reranker | None, unrelated: str) -> dict[str, Any]:
    """The per-question record: what was answered and each metric's value for it."""
    text = _MARKER.sub(" ", answer.text)
    marked = bool(_MARKER.search(answer.text))
    faithfulness = control = None
    if judge is not None and answer.citations:
        statement = " ".join(text.split())
        scores = judge.score(statement, [c.hit.chunk.text for c in answer.citations] + [unrelated])
        faithfulness, control = sum(scores[:-1]) / (len(scores) - 1), scores[-1]
    return {
        "id": item.id,
        "answer": answer.text,
        "abstained": answer.abstained,
        "gold": item.decision,
        "decision": answer_decision(text),
        "hit": any(hit.chunk.path == item.id for hit in answer.hits),
        "f1": token_f1(text, item.long_answer),
        "valid": (not answer.invalid_citations) if marked else None,
        "faithfulness": faithfulness,
        "control": control,
    }


def _mean(values: Sequence[float | bool]) -> float | None:
    return sum(values) / len(values) if values else None


def _describe(judge: Reranker | None) -> str | None:
    if judge is None:
        return None
    settings = [getattr(judge, name, None) for name in ("model", "method")]
    return " ".join([type(judge).__name__, *(str(s) for s in settings if s is not None)])
