"""`rag eval-answers` and `rag calibrate-answers` (registered by `rag.cli`)."""

from __future__ import annotations

import json
from typing import Any

import click

from rag.cli.common import allow_option, emit, guard, json_option, out, progress_bar

__all__ = ["calibrate_answers_cmd", "eval_answers_cmd"]

_MODES = ("extractive", "grounded", "generate")
_PUBMEDQA_METRICS = (
    ("retrieval_hit_rate", "own abstract among the passages given"),
    ("decision_accuracy", "yes/no/maybe read from the answer = gold"),
    ("undecided", "answers with no yes/no/maybe word"),
    ("token_f1", "token F1 against the long answer"),
    ("cited", "answers writing a [n] marker"),
    ("citation_validity", "of those, all markers name a given passage"),
    ("faithfulness", "judge score of (answer, cited passage)"),
    ("faithfulness_control", "judge score of (answer, unrelated abstract)"),
)
_QA_METRICS = (
    ("exact_match", "answerable: answer = a gold answer"),
    ("token_f1", "answerable: token F1, best gold"),
    ("contains_gold", "answerable: a gold answer is in the answer"),
    ("citation_holds_gold", "answerable: a cited passage holds a gold answer"),
    ("own_paragraph_retrieved", "answerable: own paragraph among the passages"),
    ("false_abstention", "answerable: abstained"),
    ("abstention", "unanswerable: abstained"),
    ("faithfulness", "answer sentences supported by what they cite"),
)


@click.command("eval-answers")
@click.argument("dataset_dir")
@click.option("--pipeline", default=None, help="Pipeline with an answer output: name or YAML path [default: default].")
@click.option(
    "--answer-mode",
    "answer_modes",
    type=click.Choice(_MODES),
    multiple=True,
    help="Answer mode to score; repeat to compare modes [default: the pipeline's].",
)
@click.option(
    "--split",
    type=click.Choice(["calibration", "report", "all"]),
    default="report",
    show_default=True,
    help="Question sets: the questions to score (calibration: first half of the articles).",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Answer only N questions (spread evenly).")
@click.option(
    "--chunking",
    type=click.Choice(["document", "pipeline"]),
    default="document",
    show_default=True,
    help="PubMedQA: index each abstract whole, or cut it with the pipeline's chunker.",
)
@click.option("--no-judge", is_flag=True, help="PubMedQA: skip faithfulness (loads no judge model).")
@click.option("--run-file", default=None, metavar="PATH", help="Write every answer and its scores as JSON lines.")
@allow_option
@json_option
def eval_answers_cmd(
    dataset_dir: str,
    pipeline: str | None,
    answer_modes: tuple[str, ...],
    split: str,
    limit: int | None,
    chunking: str,
    no_judge: bool,
    run_file: str | None,
    allowed: tuple[str, ...],
    as_json: bool,
) -> None:
    """Score a pipeline's answers on DATASET_DIR (see docs/evaluation.md and docs/answers.md).

    A folder with corpus.jsonl and questions.jsonl (squad2) is a question set: exact match, token F1, gold
    answer contained and cited, abstention on unanswerable questions, faithfulness, latency, per answer mode.
    A PubMedQA folder: yes/no/maybe accuracy, token F1, citation validity and faithfulness judged by SmolLM2.
    """
    from rag.api import DEFAULT_PIPELINE
    from rag.core.serialization import load_pipeline
    from rag.eval.squad import is_question_set

    with guard(as_json), progress_bar(True) as progress:
        loaded = load_pipeline(pipeline or DEFAULT_PIPELINE, allowed)
        modes: tuple[str | None, ...] = answer_modes or (None,)
        if is_question_set(dataset_dir):
            from rag.eval.qa_answers import evaluate_qa

            reports: list[Any] = [
                evaluate_qa(loaded, dataset_dir, split, mode, limit, progress=progress) for mode in modes
            ]
        else:
            from rag.eval.answers import default_judge, evaluate_answers

            judge = None if no_judge else default_judge()
            reports = [
                evaluate_answers(
                    loaded, dataset_dir, limit, judge=judge, chunking=chunking, answer_mode=mode, progress=progress
                )
                for mode in modes
            ]
    if run_file:
        with open(run_file, "w", encoding="utf-8") as fh:
            for report in reports:
                for record in report.per_question:
                    fh.write(json.dumps({"answer_mode": report.answer_mode, **record}, default=str) + "\n")
    documents = [report.to_dict() for report in reports]
    if as_json:
        emit(documents[0] if len(documents) == 1 else {"reports": documents})
        return
    for data in documents:
        _print_report(data)


def _print_report(data: dict[str, Any]) -> None:
    from rich.table import Table

    qa = "answerable" in data
    mode = data.get("answer_mode") or "pipeline's mode"
    title = f"{data['dataset']}: {data['pipeline']} ({mode}), {data['questions']} questions"
    title += f" ({data['answerable']} answerable, split {data['split']})" if qa else f", {data['seconds']} s"
    table = Table(title=title)
    for column in ("metric", "value", "meaning"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for name, meaning in _QA_METRICS if qa else _PUBMEDQA_METRICS:
        value = data[name]
        table.add_row(name, "n/a" if value is None else f"{value:.3f}", meaning)
    if qa:
        latency = data["latency_ms"]
        table.add_row("latency p50 / p95", f"{latency['p50']:.0f} / {latency['p95']:.0f} ms", "one question, warm")
    out.print(table)
    if data.get("judge"):
        click.echo(f"faithfulness judge: {data['judge']}", err=True)


@click.command("calibrate-answers")
@click.argument("dataset_dir")
@click.option("--pipeline", default=None, help="The pipeline whose retrieval is calibrated for [default: default].")
@click.option("--split", type=click.Choice(["calibration", "all"]), default="calibration", show_default=True)
@click.option("--out", "out_path", required=True, metavar="FILE.json", help="Where to write the calibration.")
@click.option(
    "--model",
    default="sentence-transformers/all-MiniLM-L6-v2",
    show_default=True,
    help="Sentence-embedding model of the similarity feature.",
)
@click.option(
    "--max-false-abstention",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.15,
    show_default=True,
    help="Share of answerable questions the threshold may abstain on.",
)
@click.option(
    "--max-false-support",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.05,
    show_default=True,
    help="Share of unsupported claims the grounded support check may let through.",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only N questions (spread evenly).")
@click.option(
    "--base",
    default=None,
    metavar="FILE.json",
    help="Calibration to extend: a PubMedQA folder adds its yes/no decision to it [default: the shipped one]; "
    "a question set keeps its yes/no decision.",
)
@allow_option
@json_option
def calibrate_answers_cmd(
    dataset_dir: str,
    pipeline: str | None,
    split: str,
    out_path: str,
    model: str,
    max_false_abstention: float,
    max_false_support: float,
    limit: int | None,
    base: str | None,
    allowed: tuple[str, ...],
    as_json: bool,
) -> None:
    """Fit the extractive scorer, the abstention threshold and the support check on the labelled questions of
    DATASET_DIR (a question set: corpus.jsonl + questions.jsonl), or the yes/no decision of polar questions on
    a PubMedQA folder (its questions outside the test split), and write the calibration to FILE.json, for
    `SentenceReader(calibration=...)` (see docs/answers.md)."""
    import dataclasses

    from rag.answer.extractive import AnswerCalibration
    from rag.api import DEFAULT_PIPELINE
    from rag.core.serialization import load_pipeline
    from rag.eval.calibrate_answers import calibrate_answers, calibrate_polar
    from rag.eval.squad import is_question_set

    with guard(as_json), progress_bar(True) as progress:
        loaded = load_pipeline(pipeline or DEFAULT_PIPELINE, allowed)
        if is_question_set(dataset_dir):
            calibration = calibrate_answers(
                loaded,
                dataset_dir,
                split,
                model=model,
                max_false_abstention=max_false_abstention,
                max_false_support=max_false_support,
                limit=limit,
                progress=progress,
            )
            if base is not None:
                calibration = dataclasses.replace(calibration, polar=AnswerCalibration.load(base).polar)
        else:
            start = AnswerCalibration.load(base)
            calibration = calibrate_polar(loaded, dataset_dir, start, limit=limit, progress=progress)
        calibration.save(out_path)
    summary = {
        "out": out_path,
        "abstain_below": round(calibration.abstain_below, 4),
        **calibration.source,
        "polar": {k: v for k, v in calibration.polar.items() if k != "model"},
    }
    if as_json:
        emit(summary)
        return
    out.print(json.dumps(summary, indent=1), highlight=False, markup=False)
