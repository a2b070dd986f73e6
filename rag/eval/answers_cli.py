"""`rag eval-answers`: the command over `rag.eval.answers.evaluate_answers` (registered by `rag.cli`)."""

from __future__ import annotations

import click

from rag.cli_common import allow_option, emit, guard, json_option, out, progress_bar

__all__ = ["eval_answers_cmd"]

_METRICS = (
    ("retrieval_hit_rate", "own abstract among the passages given"),
    ("decision_accuracy", "yes/no/maybe read from the answer = gold"),
    ("undecided", "answers with no yes/no/maybe word"),
    ("token_f1", "token F1 against the long answer"),
    ("cited", "answers writing a [n] marker"),
    ("citation_validity", "of those, all markers name a given passage"),
    ("faithfulness", "judge score of (answer, cited passage)"),
    ("faithfulness_control", "judge score of (answer, unrelated abstract)"),
)


@click.command("eval-answers")
@click.argument("dataset_dir")
@click.option("--pipeline", default=None, help="Pipeline with a generator: a name or a YAML path [default: default].")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Answer only the first N questions.")
@click.option(
    "--chunking",
    type=click.Choice(["document", "pipeline"]),
    default="document",
    show_default=True,
    help="Index each abstract whole, or cut it with the pipeline's chunker.",
)
@click.option("--no-judge", is_flag=True, help="Skip faithfulness (loads no judge model).")
@allow_option
@json_option
def eval_answers_cmd(
    dataset_dir: str,
    pipeline: str | None,
    limit: int | None,
    chunking: str,
    no_judge: bool,
    allowed: tuple[str, ...],
    as_json: bool,
) -> None:
    """Score a generating pipeline's answers on the PubMedQA folder DATASET_DIR (see docs/evaluation.md).

    Retrieval hit rate, yes/no/maybe accuracy, token F1 against the long answer, citation validity and
    faithfulness judged by SmolLM2.
    """
    from rich.table import Table

    from rag.api import DEFAULT_PIPELINE
    from rag.core.serialization import load_pipeline
    from rag.eval.answers import default_judge, evaluate_answers

    with guard(as_json), progress_bar(True) as progress:
        report = evaluate_answers(
            load_pipeline(pipeline or DEFAULT_PIPELINE, allowed),
            dataset_dir,
            limit,
            judge=None if no_judge else default_judge(),
            chunking=chunking,
            progress=progress,
        )
    data = report.to_dict()
    if as_json:
        emit(data)
        return
    table = Table(title=f"{data['dataset']}: {data['pipeline']}, {data['questions']} questions, {data['seconds']} s")
    for column in ("metric", "value", "meaning"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for name, meaning in _METRICS:
        value = data[name]
        table.add_row(name, "n/a" if value is None else f"{value:.3f}", meaning)
    out.print(table)
    if data["judge"]:
        click.echo(f"faithfulness judge: {data['judge']}", err=True)
