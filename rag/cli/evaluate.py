"""`rag eval` (retrieval on a BEIR dataset), `rag tune` (a hybrid's fusion from labels) and `rag train reranker`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from rag.cli.common import (
    allow_option,
    emit,
    filter_option,
    guard,
    json_option,
    out,
    pipeline_option,
    progress_bar,
)
from rag.core.errors import ConfigError

if TYPE_CHECKING:
    from rag.eval.tune import TuneReport

__all__ = ["eval_cmd", "train_group", "tune_cmd"]


@click.command("eval")
@click.argument("dataset_dir")
@click.argument("compared", nargs=-1, metavar="[PIPELINE]...")
@pipeline_option
@click.option("--compare", "compare", is_flag=True, help="Evaluate the PIPELINEs given after it into one table.")
@allow_option
@click.option("--split", default="test", show_default=True, help="Which qrels/SPLIT.tsv to score against.")
@click.option("--top-k", type=click.IntRange(min=1), default=100, show_default=True, help="Documents ranked per query.")
@click.option(
    "--chunking",
    type=click.Choice(["document", "pipeline"]),
    default="document",
    show_default=True,
    help="Index each document whole, or cut it with the pipeline's chunker (documents ranked by their best chunk).",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use only the first N queries.")
@click.option("--run-file", type=click.Path(dir_okay=False), default=None, help="Write the ranking in TREC run format.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Draw nDCG@10 against latency into a PNG.")
@click.option("--no-cache", is_flag=True, help="Do not read or fill the document embedding cache.")
@filter_option
@click.option("--allow-unknown-fields", is_flag=True, help="A filter on a field no chunk has matches nothing.")
@json_option
def eval_cmd(
    dataset_dir: str,
    compared: tuple[str, ...],
    pipeline: str | None,
    compare: bool,
    allowed: tuple[str, ...],
    split: str,
    top_k: int,
    chunking: str,
    limit: int | None,
    run_file: str | None,
    plot: str | None,
    no_cache: bool,
    filters: str | None,
    allow_unknown_fields: bool,
    as_json: bool,
) -> None:
    """Score retrieval on the BEIR-format dataset in DATASET_DIR (nDCG@10, recall, MRR, MAP, speed).

    One pipeline (--pipeline, default "default"), or several side by side: --compare P1 P2 ...
    --filter keeps every query to the chunks whose metadata passes it (the corpus' fields: path is the document
    id, title); relevant documents outside it count as missed.
    """
    from rag.api import DEFAULT_PIPELINE
    from rag.core.serialization import load_pipeline
    from rag.eval.beir import load_beir
    from rag.eval.plot import plot_quality_latency
    from rag.eval.runner import evaluate, write_run_file

    with guard(as_json), progress_bar(True) as progress:
        if compare != bool(compared):
            raise ConfigError("name the pipelines to compare after --compare (rag eval DIR --compare P1 P2 ...)")
        if pipeline and compare:
            raise ConfigError("give either --pipeline or --compare, not both")
        if run_file and len(compared) > 1:
            raise ConfigError("--run-file writes one pipeline's ranking; use it with --pipeline")
        dataset = load_beir(dataset_dir, split)
        if limit is not None:
            dataset = dataset.first_queries(limit)
        names = list(compared) or [pipeline or DEFAULT_PIPELINE]
        pipelines = [load_pipeline(name, allowed) for name in names]  # every file checked before any indexing
        reports = [
            evaluate(
                dataset,
                p,
                top_k=top_k,
                chunking=chunking,
                use_cache=not no_cache,
                progress=progress,
                filters=filters,
                allow_unknown_fields=allow_unknown_fields,
            )
            for p in pipelines
        ]
        if run_file:
            write_run_file(reports[0], run_file)
        if plot:
            plot_quality_latency(reports, plot)
    data = [report.to_dict() for report in reports]
    if as_json:
        emit(data[0] if len(data) == 1 else {"dataset": dataset.name, "split": split, "pipelines": data})
        return
    table = Table(title=f"{dataset.name} ({split}, {len(dataset.queries)} queries)")
    for column in ("pipeline", *data[0]["metrics"], "QPS", "p50 ms", "p95 ms"):
        table.add_column(column, justify="left" if column == "pipeline" else "right")
    for row in data:
        table.add_row(
            row["pipeline"],
            *(f"{value:.4f}" for value in row["metrics"].values()),
            f"{row['qps']:.1f}",
            f"{row['latency_ms']['p50']:.1f}",
            f"{row['latency_ms']['p95']:.1f}",
        )
    out.print(table)
    for row in data:
        index = row["index"]
        for name, part in index["parts"].items():
            reused = "reused" if part["reused"] else f"built in {part['build_seconds']:.1f} s"
            click.echo(f"{row['pipeline']}: {name} index {part['path']} ({reused})", err=True)


@click.command("tune")
@click.argument("dataset_dir")
@pipeline_option
@allow_option
@click.option("--split", default="train", show_default=True, help="The judged queries to tune on (qrels/SPLIT.tsv).")
@click.option("--report-split", default=None, help="Also score the result on these other queries (e.g. test).")
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True, help="Cross-validation folds.")
@click.option("--synthetic", is_flag=True, help="Tune on queries made from the documents (no labels needed).")
@click.option("--force", is_flag=True, help="Tune even on fewer than 20 judged queries.")
@click.option("--out", "out_file", default=None, help="Write the tuned pipeline (YAML) here.")
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True, help="Candidates shown.")
@json_option
def tune_cmd(
    dataset_dir: str,
    pipeline: str | None,
    allowed: tuple[str, ...],
    split: str,
    report_split: str | None,
    folds: int,
    synthetic: bool,
    force: bool,
    out_file: str | None,
    top: int,
    as_json: bool,
) -> None:
    """Learn a hybrid pipeline's fusion (method, k, leg weights, per-leg depth) from DATASET_DIR's judged queries,
    and where a reranker takes its candidates, how many it reranks and how its scores are blended.

    Reports the cross-validated (held-out) nDCG@10 gain over the pipeline as it is, and writes the pipeline with
    the settings best on all the queries (--out).
    """
    from rag.api import DEFAULT_PIPELINE
    from rag.core.serialization import dump_pipeline, load_pipeline, pipeline_from_dict
    from rag.eval.beir import load_beir
    from rag.eval.tune import compare_on, synthetic_dataset, tune_fusion, with_fusion

    with guard(as_json):
        used = load_pipeline(pipeline or DEFAULT_PIPELINE, allowed)
        dataset = load_beir(dataset_dir, split)
        if synthetic:
            dataset = synthetic_dataset(dataset)
        report = tune_fusion(dataset, used, folds=folds, force=force)
        data = report.to_dict()
        if report_split:
            data["report"] = compare_on(load_beir(dataset_dir, report_split), used, report)
        if out_file:
            tuned = pipeline_from_dict(with_fusion(used, report), allowed, out_file)
            Path(out_file).write_text(dump_pipeline(tuned), encoding="utf-8")
    if as_json:
        emit(data)
        return
    _print_stage(report, f"{dataset.name} ({dataset.split}, {report.queries} queries): fusion '{report.fusion}'", top)
    if report.rerank is not None:
        title = f"reranking by '{report.rerank.fusion}' after the chosen fusion: how many candidates, which blend"
        _print_stage(report.rerank, title, top)
    if "report" in data:
        other = data["report"]
        low, high = other["gain_interval_95"]
        click.echo(
            f"on {other['split']} ({other['queries']} queries): tuned {other['tuned']:.4f} against "
            f"{other['baseline']:.4f}, gain {other['tuned'] - other['baseline']:+.4f} "
            f"(95% interval {low:+.4f} to {high:+.4f})"
        )
    if out_file:
        click.echo(f"wrote {out_file}")


def _print_stage(report: TuneReport, title: str, top: int) -> None:
    """One tuned stage: the best candidates and the held-out estimate."""
    table = Table(title=title)
    table.add_column("candidate")
    table.add_column("nDCG@10 (all queries)", justify="right")
    for candidate, score in report.tried[:top]:
        marks = " (chosen)" if candidate == report.chosen else ""
        marks += " (the pipeline's)" if candidate == report.baseline else ""
        table.add_row(candidate.label() + marks, f"{score:.4f}")
    out.print(table)
    low, high = report.gain_interval
    tuned, baseline = report.held_out["tuned"], report.held_out["baseline"]
    click.echo(
        f"held out ({report.folds} folds): tuned {tuned:.4f} against the pipeline's {baseline:.4f}, "
        f"gain {report.gain:+.4f} (95% interval {low:+.4f} to {high:+.4f})"
    )
    if report.chosen == report.baseline:
        click.echo("kept the pipeline's own settings: the held-out gain's interval does not exclude zero")


@click.group("train")
def train_group() -> None:
    """Train models from your own relevance labels."""


@train_group.command("reranker")
@click.argument("dataset_dir")
@click.option("--split", default="train", show_default=True, help="Which qrels/SPLIT.tsv to learn from.")
@click.option(
    "--base-model",
    default="sentence-transformers/all-MiniLM-L6-v2",
    show_default=True,
    help="Model to fine-tune (hub name or folder).",
)
@click.option("--out", default=None, help="Model folder [default: ~/.cache/rag/models/reranker-DATASET].")
@click.option(
    "--pipeline", default="bm25", show_default=True, help="Pipeline whose retrievers mine the hard negatives."
)
@allow_option
@click.option("--negatives", type=click.IntRange(min=1), default=4, show_default=True, help="Hard negatives per query.")
@click.option(
    "--random-negatives", type=click.IntRange(min=0), default=0, show_default=True, help="Random negatives per query."
)
@click.option("--epochs", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=2e-5, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--max-length", type=click.IntRange(min=8), default=256, show_default=True, help="Tokens per pair.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@json_option
def train_reranker_cmd(
    dataset_dir: str,
    split: str,
    base_model: str,
    out: str | None,
    pipeline: str,
    allowed: tuple[str, ...],
    negatives: int,
    random_negatives: int,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    max_length: int,
    device: str,
    as_json: bool,
) -> None:
    """Fine-tune a cross-encoder reranker on the BEIR-format labels in DATASET_DIR (see docs/reranking.md)."""
    from rag.core.serialization import load_pipeline
    from rag.eval.beir import load_beir
    from rag.runtime.cache import cache_dir
    from rag.train.reranker import train_reranker

    with guard(as_json), progress_bar(True) as progress:
        dataset = load_beir(dataset_dir, split)
        target = out or str(cache_dir() / "models" / f"reranker-{dataset.name}")
        report = train_reranker(
            dataset,
            load_pipeline(pipeline, allowed),
            target,
            base_model=base_model,
            negatives=negatives,
            random_negatives=random_negatives,
            epochs=epochs,
            learning_rate=learning_rate,
            batch_size=batch_size,
            max_length=max_length,
            device=device,
            progress=progress,
        )
    if as_json:
        emit(report.to_dict())
        return
    click.echo(
        f"trained {report.out} from {report.base_model} on {report.dataset}/{report.split}: {report.queries} queries, "
        f"{report.positives} positive and {report.negatives} negative pairs, {report.epochs} epoch(s), "
        f"{report.seconds:.0f} s"
    )
