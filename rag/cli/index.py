"""`rag index`, `rag check` and `rag query`."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

import click
from rich.table import Table

from rag.cli.common import (
    address_option,
    allow_option,
    check_engine,
    emit,
    engine_option,
    filter_option,
    guard,
    index_dir_option,
    index_option,
    index_path,
    json_option,
    out,
    pipeline_option,
    print_hits,
    progress_bar,
    shown,
)
from rag.core.run_report import recording

if TYPE_CHECKING:
    from rag.check import CheckReport

__all__ = ["check_cmd", "index_cmd", "query_cmd"]


@click.command("index")
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
        runner = None
        if check_engine(engine, address) == "ray":
            from rag.distributed.ray_engine import RayEngine

            runner = RayEngine(address=address, staging=rag.folder.root)
        report = rag.index(path, strict=strict, rebuild=rebuild, wait=wait, progress=progress, engine=runner)
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
            click.echo(f"skipped {shown(failure['path'])}: {shown(failure['reason'])}", err=True)
        for entry in report.skipped:
            click.echo(f"skipped {shown(entry['path'])}: {entry['reason']}", err=True)
    if nothing_indexed:
        click.echo("error: no file could be indexed; see the reasons above", err=True)
        sys.exit(1)


@click.command("check")
@index_option
@index_dir_option
@allow_option
@click.option("--repair", is_flag=True, help="Rebuild or re-index from the index's folder what is wrong.")
@click.option("--wait", type=float, default=0.0, help="Seconds to wait for another run holding the index.")
@json_option
def check_cmd(
    index: str, index_dir: str | None, allowed: tuple[str, ...], repair: bool, wait: float, as_json: bool
) -> None:
    """Verify an index: its pointer and manifest, chunk store, every retriever's ids and rows, and the files in its
    folder against what it holds. Exits with status 1 when something is wrong (after --repair: still wrong).
    """
    from rag.api import RAG

    with guard(as_json):
        report = RAG(index_path(index, index_dir), allowed=allowed).check(repair=repair, wait=wait)
    if as_json:
        emit(report.to_dict())
    else:
        _print_check(report)
    if not report.ok:
        sys.exit(1)


def _print_check(report: CheckReport) -> None:
    for problem in report.before:
        click.echo(f"found: {problem.check}: {shown(problem.detail)}")
    if report.repaired is not None:
        files = report.repaired.to_dict()["files"]
        rebuilt = any(p.repair == "rebuild" for p in report.before)
        click.echo(f"repaired: {'rebuilt' if rebuilt else 're-indexed'} from the folder ({files})")
    counts = report.counts
    if counts:
        retrievers = ", ".join(f"{name} {n}" for name, n in counts["retrievers"].items())
        click.echo(
            f"{shown(report.index)}: {report.generation}, {counts['files']} files, {counts['chunks']} chunks"
            + (f"; retrievers: {retrievers}" if retrievers else "")
        )
    for kind, paths in report.drift.items():
        for path in paths[:5]:
            click.echo(f"  {kind}: {shown(path)}")
    for failure in report.unreadable:
        click.echo(f"  unreadable at the last run: {shown(failure['path'])}: {shown(failure['reason'])}")
    for problem in report.problems:
        click.echo(f"problem: {problem.check}: {shown(problem.detail)} (repair: {problem.repair})", err=True)
    if report.ok:
        click.echo("ok")
    elif report.repaired is None and any(p.repair != "none" for p in report.problems):
        click.echo("run `rag check --repair` to repair it", err=True)


@click.command("query")
@click.argument("text")
@index_option
@index_dir_option
@pipeline_option
@allow_option
@click.option("--top-k", type=click.IntRange(min=1), default=None, help="Number of hits.")
@filter_option
@click.option("--allow-unknown-fields", is_flag=True, help="A filter on a field no chunk has matches nothing.")
@json_option
def query_cmd(
    text: str,
    index: str,
    index_dir: str | None,
    pipeline: str | None,
    allowed: tuple[str, ...],
    top_k: int | None,
    filters: str | None,
    allow_unknown_fields: bool,
    as_json: bool,
) -> None:
    """Retrieve the chunks that best match TEXT (only those passing --filter, when given)."""
    from rag.api import RAG

    with guard(as_json):
        rag = RAG(index_path(index, index_dir), pipeline, allowed)
        with recording() as report:
            started = time.perf_counter()
            hits = rag.query(text, top_k=top_k, filters=filters, allow_unknown_fields=allow_unknown_fields)
            total = (time.perf_counter() - started) * 1000
    print_hits(hits, as_json, {"total_ms": round(total, 3), **report.to_dict()})
