"""Question sets in the squad2 layout: splits by article, spread samples, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.core.errors import ConfigError, InputPathError
from rag.eval.qa_answers import judge_supported
from rag.eval.squad import is_question_set, load_question_set


def write_set(folder: Path, questions: list[dict[str, object]] | None = None) -> Path:
    folder.mkdir(parents=True)
    corpus = [
        {"_id": f"a{a}-p{p}", "title": f"Article {a}", "text": f"Text {a} {p}."} for a in range(4) for p in range(2)
    ]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in corpus))
    if questions is None:
        questions = [
            {
                "_id": f"q{a}{p}{k}",
                "question": f"Q {a} {p}?",
                "answers": [f"Text {a}"] if k == 0 else [],
                "answerable": k == 0,
                "paragraph": f"a{a}-p{p}",
            }
            for a in range(4)
            for p in range(2)
            for k in range(2)
        ]
    (folder / "questions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in questions))
    return folder


def test_splits_follow_the_articles(tmp_path: Path) -> None:
    folder = write_set(tmp_path / "qa")
    assert is_question_set(folder) and not is_question_set(tmp_path)
    calibration = load_question_set(folder, "calibration")
    report = load_question_set(folder, "report")
    assert calibration.articles == 4
    assert {q.article for q in calibration.questions} == {1, 2} and {q.article for q in report.questions} == {3, 4}
    assert len(load_question_set(folder, "all").questions) == 16
    assert report.questions[0].answers == ("Text 2",) and report.questions[1].answers == ()
    assert report.as_beir().qrels["q200"] == {"a2-p0": 1}
    spread = report.spread(4)
    assert [q.id for q in spread] == ["q200", "q210", "q300", "q310"]  # both articles, both paragraphs
    assert report.spread(None) == report.questions


def test_bad_sets_are_refused_with_the_line(tmp_path: Path) -> None:
    with pytest.raises(InputPathError, match=r"corpus\.jsonl is missing"):
        load_question_set(tmp_path)
    with pytest.raises(ConfigError, match="split must be one of"):
        load_question_set(write_set(tmp_path / "ok"), "test")
    bad = write_set(
        tmp_path / "bad", [{"_id": "q", "question": "Q?", "answers": [], "answerable": True, "paragraph": "a0-p0"}]
    )
    with pytest.raises(InputPathError, match=r"questions.jsonl:1: needs 'answerable'"):
        load_question_set(bad, "all")
    unknown = write_set(
        tmp_path / "unknown", [{"_id": "q", "question": "Q?", "answers": ["x"], "answerable": True, "paragraph": "zz"}]
    )
    with pytest.raises(InputPathError, match="paragraph 'zz' is not in"):
        load_question_set(unknown, "all")


def test_the_faithfulness_judge_wants_the_words_and_every_number() -> None:
    passage = "The snorkelwind turbine spins at ninety revolutions per minute."
    assert judge_supported("The snorkelwind turbine spins at 90 revolutions per minute [1].", passage)
    assert not judge_supported("The snorkelwind turbine spins 90 times every second.", passage)
    assert not judge_supported("The turbine spins at 80 revolutions per minute.", passage)
    assert judge_supported("It does.", passage)  # nothing to check
