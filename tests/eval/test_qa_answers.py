"""`rag eval-answers` and `rag calibrate-answers` on squad2 with the real default pipeline (MiniLM, BM25)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from rag.answer.extractive import AnswerCalibration
from rag.answer.reader import SentenceReader
from rag.cli import main
from rag.core.errors import PipelineError
from rag.core.serialization import load_pipeline
from rag.core.types import Chunk, Hit
from rag.eval.calibrate_answers import calibrate_answers
from rag.eval.qa_answers import evaluate_qa

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SQUAD2 = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "squad2"


@pytest.fixture(scope="module")
def index_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not SQUAD2.is_dir():
        pytest.skip(f"squad2 is not at {SQUAD2}")
    return tmp_path_factory.mktemp("squad2-index")


def test_extractive_answers_on_report_questions(index_root: Path) -> None:
    report = evaluate_qa(load_pipeline("default"), SQUAD2, "report", "extractive", limit=16, index_root=index_root)
    data = report.to_dict()
    assert (data["questions"], data["split"], data["answer_mode"]) == (16, "report", "extractive")
    assert data["answerable"] + data["unanswerable"] == 16 and data["answerable"] >= 5
    assert data["faithfulness"] == 1.0  # quotes
    assert data["contains_gold"] >= 0.4 and data["own_paragraph_retrieved"] >= 0.6
    assert set(data["modes_used"]) <= {"extractive"} and data["latency_ms"]["p50"] > 0
    for record in report.per_question:
        assert record["abstained"] == record["answer"].startswith("I don't know")
        assert record["contains_gold"] == (record["answerable"] and not record["abstained"] and record["contains_gold"])


def test_cli_writes_a_run_file_and_refuses_a_mode_the_pipeline_lacks(index_root: Path, tmp_path: Path) -> None:
    run_file = tmp_path / "answers.jsonl"
    args = ["eval-answers", str(SQUAD2), "--answer-mode", "extractive", "--limit", "4", "--run-file", str(run_file)]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["questions"] == 4
    lines = [json.loads(line) for line in run_file.read_text().splitlines()]
    assert len(lines) == 4 and {"answer", "abstained", "contains_gold", "answer_mode"} <= set(lines[0])
    bm25 = CliRunner().invoke(main, ["eval-answers", str(SQUAD2), "--pipeline", "bm25", "--json"])
    assert bm25.exit_code == 1 and "no 'answer' output" in json.loads(bm25.stdout)["error"]["message"]
    with pytest.raises(PipelineError, match="no answer modes"):
        load_pipeline("hybrid").answer_modes("extractive")


def test_calibration_round_trips_and_drives_a_reader(index_root: Path, tmp_path: Path) -> None:
    calibration = calibrate_answers(load_pipeline("default"), SQUAD2, limit=40, index_root=index_root)
    assert calibration.source["split"] == "calibration" and calibration.source["questions"] == 40
    assert 0 < calibration.abstain_below < 1 and calibration.support["min_probability"] > 0
    path = tmp_path / "calibration.json"
    calibration.save(path)
    again = AnswerCalibration.load(path)
    assert again.to_dict() == json.loads(path.read_text())
    text = "The Normans gave their name to Normandy, a region in France."
    hits = [Hit(Chunk("n", "normans.md", text, 0, len(text)), 1.0)]
    reading = SentenceReader(calibration=str(path), abstain=False).run("Where is Normandy?", hits)["reading"]
    assert not reading.abstain and reading.best()[0][0].text == text
    path.write_text("{}")
    with pytest.raises(Exception, match="calibrate-answers"):
        AnswerCalibration.load(path)
