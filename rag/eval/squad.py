"""RAG question answering in the layout of `shared/data/squad2`: a corpus and questions with gold answers.

    corpus.jsonl     {"_id", "title", "text"} per line: one paragraph; paragraphs of one article share a title
    questions.jsonl  {"_id", "question", "answers": [gold texts], "answerable": bool, "paragraph": corpus _id}

Unanswerable questions (SQuAD 2.0's, written to look answerable) have no gold answers; their `paragraph` is the one
they were written against. Articles are numbered by the first appearance of their title in the corpus, from 1.

Splits, so that nothing is calibrated on the questions it is reported on: `calibration` holds the questions about
the first half of the articles (articles 1-6 of squad2's 12), `report` the rest, `all` every question.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from rag.core.errors import ConfigError, InputPathError
from rag.eval.beir import BeirDataset, jsonl_rows

__all__ = ["SQUAD_SPLITS", "QAQuestion", "QuestionSet", "is_question_set", "load_question_set"]

SQUAD_SPLITS = ("calibration", "report", "all")


@dataclass(frozen=True)
class QAQuestion:
    """One question: its gold answers (empty when unanswerable), its paragraph and that paragraph's article."""

    id: str
    question: str
    answers: tuple[str, ...]
    answerable: bool
    paragraph: str
    article: int


@dataclass(frozen=True)
class QuestionSet:
    """The corpus (id -> (title, text)) and the questions of one split."""

    name: str
    split: str
    corpus: dict[str, tuple[str, str]]
    questions: list[QAQuestion]
    articles: int
    corpus_sha256: str

    def as_beir(self) -> BeirDataset:
        """The corpus and questions as a BEIR dataset (each question judges its own paragraph relevant)."""
        return BeirDataset(
            name=self.name,
            split=self.split,
            corpus=self.corpus,
            queries={q.id: q.question for q in self.questions},
            qrels={q.id: {q.paragraph: 1} for q in self.questions},
            corpus_sha256=self.corpus_sha256,
        )

    def spread(self, limit: int | None) -> list[QAQuestion]:
        """At most `limit` questions taken evenly across the split (every article, answerable and not)."""
        if limit is None or limit >= len(self.questions):
            return list(self.questions)
        step = len(self.questions) / limit
        return [self.questions[int(i * step)] for i in range(limit)]


def is_question_set(folder: str | os.PathLike[str]) -> bool:
    """Whether `folder` has the layout of this module (corpus.jsonl and questions.jsonl)."""
    root = Path(folder).expanduser()
    return (root / "corpus.jsonl").is_file() and (root / "questions.jsonl").is_file()


def load_question_set(folder: str | os.PathLike[str], split: str = "report") -> QuestionSet:
    """Read the folder (see the module docstring); every problem is an InputPathError naming the file and line."""
    if split not in SQUAD_SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SQUAD_SPLITS)}, got {split!r}")
    root = Path(folder).expanduser()
    corpus_file, questions_file = root / "corpus.jsonl", root / "questions.jsonl"
    for path in (corpus_file, questions_file):
        if not path.is_file():
            raise InputPathError(f"{path} is missing; a question set folder has corpus.jsonl and questions.jsonl")
    digest = hashlib.sha256()
    corpus: dict[str, tuple[str, str]] = {}
    article_of: dict[str, int] = {}
    titles: dict[str, int] = {}
    for line_no, row in jsonl_rows(corpus_file, digest):
        doc_id, title = _text(row, "_id", corpus_file, line_no), str(row.get("title") or "")
        corpus[doc_id] = (title, str(row.get("text") or ""))
        article_of[doc_id] = titles.setdefault(title, len(titles) + 1)
    half = (len(titles) + 1) // 2
    questions = []
    for line_no, row in jsonl_rows(questions_file):
        paragraph = _text(row, "paragraph", questions_file, line_no)
        answers, answerable = row.get("answers", []), row.get("answerable")
        if paragraph not in corpus:
            raise InputPathError(f"{questions_file}:{line_no}: paragraph {paragraph!r} is not in {corpus_file}")
        if not isinstance(answerable, bool) or not isinstance(answers, list) or (answerable and not answers):
            raise InputPathError(
                f"{questions_file}:{line_no}: needs 'answerable' (true/false) and 'answers' (a list of gold texts, "
                f"not empty when answerable), got answerable={answerable!r}, answers={answers!r}"
            )
        article = article_of[paragraph]
        if split == "all" or (split == "calibration") == (article <= half):
            question = _text(row, "question", questions_file, line_no)
            item_id = _text(row, "_id", questions_file, line_no)
            questions.append(QAQuestion(item_id, question, tuple(map(str, answers)), answerable, paragraph, article))
    return QuestionSet(root.resolve().name, split, corpus, questions, len(titles), digest.hexdigest())


def _text(row: dict[str, object], name: str, path: Path, line_no: int) -> str:
    value = row.get(name)
    if value is None or str(value) == "":
        raise InputPathError(f"{path}:{line_no} has no '{name}'")
    return str(value)
