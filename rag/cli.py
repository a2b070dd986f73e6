"""The `rag` command line: index folders, query and ask, list and show pipelines.

The CLI owns the terminal: progress bars and tables go to stderr/stdout here, never from the
library. With `--json` a command prints exactly one JSON document on stdout (errors too, as
`{"error": {"message", "type"}}`) and everything else goes to stderr.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from rag.cli_common import (
    address_option,
    allow_option,
    check_engine,
    emit,
    engine_option,
    guard,
    index_dir_option,
    index_option,
    index_path,
    json_option,
    out,
    pipeline_option,
    print_hits,
    progress_bar,
)
from rag.core.errors import ConfigError

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rag")
def main() -> None:
    """Retrieval-augmented generation: index folders, query them, ask questions."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # the CLI draws its own progress


@main.command("index")
@click.argument("path")
@index_option
@index_dir_option
@pipeline_option
@allow_option
@click.option("--strict", is_flag=True, help="Fail (and write nothing) if any file cannot be read.")
@click.option("--rebuild", is_flag=True, help="Build the index anew, replacing the old one when done.")
@click.option("--wait", type=float, default=0.0, help="Seconds to wait for another run holding the index.")
@engine_option
@address_option
@json_option
def index_cmd(
    path: str,
    index: str,
    index_dir: str | None,
    pipeline: str | None,
    allowed: tuple[str, ...],
    strict: bool,
    rebuild: bool,
    wait: float,
    engine: str,
    address: str | None,
    as_json: bool,
) -> None:
    """Index the documents in folder PATH (only new and changed files are embedded).

    With --engine ray, reading, chunking and embedding run as Ray Data jobs (see docs/scaling.md).
    """
    from rag.api import RAG

    with guard(as_json), progress_bar(True) as progress:
        rag = RAG(index_path(index, index_dir), pipeline, allowed)
        if check_engine(engine, address) == "ray":
            from rag.distributed.ray_engine import RayEngine
            from rag.indexer import index_folder

            ray_engine = RayEngine(address=address, staging=rag.folder.root)
            report = index_folder(
                path,
                rag.folder.root,
                rag.pipeline,
                strict=strict,
                rebuild=rebuild,
                wait=wait,
                progress=progress,
                engine=ray_engine,
            )
        else:
            report = rag.index(path, strict=strict, rebuild=rebuild, wait=wait, progress=progress)
    data = report.to_dict()
    nothing_indexed = report.failed and not (report.added + report.changed + report.unchanged)
    if as_json:
        emit(data)
    else:
        files = data["files"]
        table = Table(show_header=True, header_style="bold")
        for column in (*files, "chunks", "embedded", "seconds"):
            table.add_column(column, justify="right")
        table.add_row(
            *(str(v) for v in files.values()),
            str(report.chunks_total),
            str(report.chunks_embedded),
            f"{report.seconds:.1f}",
        )
        out.print(table)
        for failure in report.failures:
            click.echo(f"skipped {failure['path']}: {failure['reason']}", err=True)
    if nothing_indexed:
        click.echo("error: no file could be indexed; see the reasons above", err=True)
        sys.exit(1)


@main.command("query")
@click.argument("text")
@index_option
@index_dir_option
@pipeline_option
@allow_option
@click.option("--top-k", type=click.IntRange(min=1), default=None, help="Number of hits.")
@json_option
def query_cmd(
    text: str,
    index: str,
    index_dir: str | None,
    pipeline: str | None,
    allowed: tuple[str, ...],
    top_k: int | None,
    as_json: bool,
) -> None:
    """Retrieve the chunks that best match TEXT."""
    from rag.api import RAG

    with guard(as_json):
        hits = RAG(index_path(index, index_dir), pipeline, allowed).query(text, top_k=top_k)
    print_hits(hits, as_json)


@main.command("ask")
@click.argument("question")
@index_option
@index_dir_option
@pipeline_option
@allow_option
@click.option("--passages", type=click.IntRange(min=1), default=None, help="Number of passages to retrieve.")
@click.option(
    "--answer-mode",
    type=click.Choice(["extractive", "grounded", "generate"]),
    default=None,
    help="Quote the passages, write and check each sentence, or write freely [default: the pipeline's].",
)
@click.option("--strategy", type=click.Choice(["greedy", "sample", "beam", "best_of_n"]), default=None)
@click.option("--temperature", type=float, default=None)
@click.option("--top-k", type=int, default=None, help="Sample from the K most likely tokens (0: all).")
@click.option("--top-p", type=float, default=None, help="Sample from the smallest set of tokens with this mass.")
@click.option("--min-p", type=float, default=None, help="Drop tokens below this fraction of the top probability.")
@click.option("--max-tokens", type=int, default=None, help="Longest answer, in tokens.")
@click.option("--seed", type=int, default=None, help="Make sampling reproducible.")
@click.option("--num-beams", type=int, default=None, help="Beam search with this many beams.")
@click.option("--best-of", type=int, default=None, metavar="N", help="Sample N answers and keep the best-scoring one.")
@click.option("--speculative", default=None, metavar="ngram|draft:MODEL", help="Speculative decoding.")
@click.option("--stream", is_flag=True, help="Print the answer as it is generated.")
@click.option("--generator", type=click.Choice(["transformers", "vllm", "openai"]), default=None)
@click.option("--model", default=None, help="The generator's model (with --generator).")
@click.option("--base-url", default=None, help="The OpenAI-compatible server (with --generator openai).")
@json_option
def ask_cmd(
    question: str,
    index: str,
    index_dir: str | None,
    pipeline: str | None,
    allowed: tuple[str, ...],
    passages: int | None,
    answer_mode: str | None,
    stream: bool,
    generator: str | None,
    model: str | None,
    base_url: str | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Answer QUESTION from the index, citing the passages used, or say that they do not answer it.

    --answer-mode picks how (docs/answers.md). Decoding options override the pipeline's for this question;
    --generator runs the pipeline with another backend (keeping its decoding options). See docs/generation.md.
    """
    from rag.api import RAG
    from rag.core.types import Answer
    from rag.generate.select import replace_generator

    if not question.strip():
        raise click.BadParameter("the question is empty; ask a question in words", param_hint="QUESTION")
    with guard(as_json):
        rag = RAG(index_path(index, index_dir), pipeline, allowed)
        if generator is not None:
            rag = RAG(rag.folder.root, replace_generator(rag.pipeline, generator, model, base_url, allowed), allowed)
        elif model is not None or base_url is not None:
            raise ConfigError("--model and --base-url choose the generator's backend; give --generator too")
        decoding = _decoding_overrides(**options)
        if stream and not as_json:
            answer, streamed = None, ""
            for item in rag.ask_stream(question, top_k=passages, decoding=decoding, answer_mode=answer_mode):
                if isinstance(item, Answer):
                    answer = item
                else:
                    streamed += item
                    out.print(item, end="", highlight=False, markup=False)
            assert answer is not None
            out.print()
            if streamed.strip() != answer.text.strip():  # the support check changed what was streamed
                _print_retracted(answer)
        else:
            answer = rag.ask(question, top_k=passages, decoding=decoding, answer_mode=answer_mode)
            out.print(answer.text, highlight=False, markup=False)
    if as_json:
        data = answer.to_dict()
        keys = ("answer", "mode", "abstained", "decision", "answerability", "citations", "claims", "retracted")
        emit({key: data[key] for key in (*keys, "invalid_citations", "hits", "usage")})
        return
    _print_sources(answer)


def _print_retracted(answer: Any) -> None:
    """After a stream: what the support check took back, and the answer as it stands now."""
    for claim in answer.retracted:
        out.print(f"[yellow]Retracted (no passage supports it):[/yellow] {escape(claim.text)}")
    out.print("[bold]Answer:[/bold] " + escape(answer.text))


_HOW = {"overlap": " (attributed by word overlap)", "support": " (found by the support check)"}


def _print_sources(answer: Any) -> None:
    out.print()
    if answer.abstained:
        out.print(
            "[bold]No answer:[/bold] the passages retrieved do not answer this question "
            f"(answerability {answer.answerability:.2f}, under the calibrated threshold)."
            if answer.answerability is not None
            else "[bold]No answer:[/bold] nothing relevant was retrieved."
        )
        return
    cited = answer.citations or []
    label = "Sources" if cited else "Passages given to the model (the answer cites none)"
    if answer.hits:
        out.print(f"[bold]{label}:[/bold]")
    if not cited:
        for n, hit in enumerate(answer.hits, start=1):
            out.print(f"  [{n}] {hit.chunk.path}", highlight=False, markup=False)
        return
    for citation in cited:
        hit = citation.hit
        if citation.start is not None:
            page = f" p. {citation.page}" if citation.page else ""
            where = f" chars {citation.start}-{citation.end}{page}"
        else:
            pages = hit.chunk.metadata.get("pages")
            where = f" p. {', '.join(map(str, pages))}" if pages else ""
        how = {"overlap": " (attributed by word overlap)", "support": " (found by the support check)"}.get(
            citation.by, ""
        )
        out.print(f"  [{citation.n}] {hit.chunk.path}{where}{how}", highlight=False, markup=False)
        if citation.quote and citation.by != "quote":
            out.print(f'      "{" ".join(citation.quote.split())}"', highlight=False, markup=False)


def _decoding_overrides(
    strategy: str | None,
    temperature: float | None,
    top_k: int | None,
    top_p: float | None,
    min_p: float | None,
    max_tokens: int | None,
    seed: int | None,
    num_beams: int | None,
    best_of: int | None,
    speculative: str | None,
) -> dict[str, Any]:
    """The decoding options given on the command line (validated by the generator's DecodingConfig)."""
    given = {
        "strategy": strategy,
        "temperature": temperature,
        "top_k": top_k,
        "top_p": top_p,
        "min_p": min_p,
        "max_tokens": max_tokens,
        "seed": seed,
        "num_beams": num_beams,
        "best_of": best_of,
    }
    decoding = {name: value for name, value in given.items() if value is not None}
    if num_beams is not None and strategy is None:
        decoding["strategy"] = "beam"
    if best_of is not None and strategy is None:
        decoding["strategy"] = "best_of_n"
    if speculative is not None:
        method, _, draft = speculative.partition(":")
        if method not in ("ngram", "draft") or (method == "draft") != bool(draft):
            raise ConfigError(f"--speculative must be 'ngram' or 'draft:MODEL', got {speculative!r}")
        decoding["speculative"] = {"method": method, **({"model": draft} if draft else {})}
    return decoding


@main.command("eval")
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
    as_json: bool,
) -> None:
    """Score retrieval on the BEIR-format dataset in DATASET_DIR (nDCG@10, recall, MRR, MAP, speed).

    One pipeline (--pipeline, default "default"), or several side by side: --compare P1 P2 ...
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
            evaluate(dataset, p, top_k=top_k, chunking=chunking, use_cache=not no_cache, progress=progress)
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


@main.group("train")
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
    from rag.models import cache_dir
    from rag.rerank.train import train_reranker

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


@main.command("serve")
@index_option
@index_dir_option
@click.option(
    "--pipeline",
    "pipelines",
    multiple=True,
    help="Pipeline to serve (name or YAML path); repeat to serve several, chosen by `model` in OpenAI "
    "requests (the first is the default) [default: the index's own].",
)
@allow_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Worker processes.")
@click.option(
    "--api-keys-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="File with one API key per line (also: $RAG_API_KEYS, comma-separated). None: no authentication.",
)
@click.option(
    "--cors-origin", "cors_origins", multiple=True, help="Origin allowed by CORS; repeatable [default: none]."
)
@click.option(
    "--max-top-k", type=click.IntRange(min=1), default=50, show_default=True, help="Largest top_k a request may ask."
)
@click.option("--max-tokens", type=click.IntRange(min=1), default=1024, show_default=True, help="Largest max_tokens.")
@click.option(
    "--max-body-mb", type=click.FloatRange(min=0.001), default=1.0, show_default=True, help="Request body limit."
)
@click.option(
    "--max-upload-mb", type=click.FloatRange(min=0.001), default=20.0, show_default=True, help="Upload limit."
)
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="uvicorn in this process (--workers), or a Ray Serve deployment (needs pip install 'rag[ray]').",
)
@address_option
@click.option("--replicas", type=click.IntRange(min=1), default=1, show_default=True, help="Ray Serve replicas.")
@click.option(
    "--autoscale",
    default=None,
    metavar="MIN-MAX",
    help="Ray Serve autoscaling between MIN and MAX replicas (instead of --replicas), e.g. 1-4.",
)
@click.option(
    "--target-requests",
    type=click.FloatRange(min=0, min_open=True),
    default=2.0,
    show_default=True,
    help="Ongoing requests per replica the autoscaler aims at.",
)
@click.option("--replica-cpus", type=click.FloatRange(min=0), default=1.0, show_default=True, help="CPUs per replica.")
@click.option("--replica-gpus", type=click.FloatRange(min=0), default=0.0, show_default=True, help="GPUs per replica.")
def serve_cmd(
    index: str,
    index_dir: str | None,
    pipelines: tuple[str, ...],
    allowed: tuple[str, ...],
    host: str,
    port: int,
    workers: int,
    api_keys_file: str | None,
    cors_origins: tuple[str, ...],
    max_top_k: int,
    max_tokens: int,
    max_body_mb: float,
    max_upload_mb: float,
    engine: str,
    address: str | None,
    replicas: int,
    autoscale: str | None,
    target_requests: float,
    replica_cpus: float,
    replica_gpus: float,
) -> None:
    """Serve the index over HTTP: native and OpenAI-compatible endpoints, and a web page at /.

    With --engine ray the app is deployed with Ray Serve: --replicas or --autoscale MIN-MAX,
    --replica-cpus/--replica-gpus per replica (see docs/scaling.md).
    """
    import logging

    from rag.core.errors import MissingDependencyError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
    with guard(False):
        try:
            from rag.serve.app import serve
            from rag.serve.settings import ServerSettings, load_api_keys
        except ImportError as exc:
            raise MissingDependencyError(exc.name or "fastapi", "serve", "rag serve") from exc
        settings = ServerSettings(
            index=index_path(index, index_dir),
            pipelines=pipelines or (None,),
            allowed=allowed,
            api_keys=load_api_keys(api_keys_file),
            api_keys_file=api_keys_file,
            host=host,
            cors_origins=cors_origins,
            max_top_k=max_top_k,
            max_tokens=max_tokens,
            max_body_mb=max_body_mb,
            max_upload_mb=max_upload_mb,
        )
        if check_engine(engine, address) == "ray":
            from rag.distributed.ray_serve import RayServeSettings, serve_with_ray

            if workers != 1:
                raise ConfigError("--workers is for the local engine; with --engine ray give --replicas or --autoscale")
            low, high = _replica_range(autoscale) if autoscale else (1, 1)
            deploy = RayServeSettings(
                replicas=replicas,
                autoscaling=autoscale is not None,
                min_replicas=low,
                max_replicas=high,
                target_ongoing_requests=target_requests,
                num_cpus=replica_cpus,
                num_gpus=replica_gpus,
                address=address,
            )
            serve_with_ray(settings, deploy, port=port)
            return
        serve(settings, port=port, workers=workers)


def _replica_range(text: str) -> tuple[int, int]:
    """MIN-MAX of --autoscale."""
    low, sep, high = text.partition("-")
    if not (sep and low.strip().isdigit() and high.strip().isdigit()):
        raise ConfigError(f"--autoscale must be MIN-MAX replicas, like 1-4; got {text!r}")
    return int(low), int(high)


@main.command("pipelines")
def pipelines_cmd() -> None:
    """List the shipped pipelines."""
    from rag.core.serialization import load_pipeline, shipped_pipelines

    with guard(False):
        for name, path in shipped_pipelines().items():
            out.print(f"[bold]{name}[/bold]  {load_pipeline(path).description}", highlight=False)


@main.group("pipeline")
def pipeline_group() -> None:
    """Inspect a pipeline."""


@pipeline_group.command("show")
@click.argument("name")
def pipeline_show(name: str) -> None:
    """Print pipeline NAME (a shipped name or a YAML path), validated, as YAML."""
    from rag.core.serialization import dump_pipeline, load_pipeline

    with guard(False):
        click.echo(dump_pipeline(load_pipeline(name)), nl=False)


from rag.distributed.shard_cli import shard_group  # noqa: E402  (command modules import rag.cli_common, not this)
from rag.eval.answers_cli import calibrate_answers_cmd, eval_answers_cmd  # noqa: E402

main.add_command(eval_answers_cmd)
main.add_command(calibrate_answers_cmd)
main.add_command(shard_group)
