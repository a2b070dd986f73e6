"""What the `rag` commands share: the terminal (consoles, progress bar, errors as one line or one JSON
document), the common options, and where indexes live. Every command module imports these from here."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from rag.core.errors import ConfigError, RagError

# no emoji codes: a document's "root:x:0:0" must not print as "root❌0:0"
err = Console(stderr=True, emoji=False)
out = Console(soft_wrap=True, emoji=False)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def shown(text: str) -> str:
    """`text` safe to print: control characters (terminal escape sequences, a newline in a file name) as \\xNN.
    Markup is the console's business: print document text and paths with `markup=False` or through `escape`."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def index_path(index: str, index_dir: str | None) -> Path:
    """`--index NAME` inside `--index-dir` ($RAG_INDEX_DIR, else ./indexes). A name is a name: no folder
    separators and not "." or "..", so `--index ../../x` cannot write outside the index dir."""
    if not index.strip() or index in (".", "..") or "/" in index or "\\" in index or "\0" in index:
        raise ConfigError(
            f"--index takes an index name such as 'docs', got {index!r}; to keep indexes in another folder, "
            "give that folder with --index-dir (or $RAG_INDEX_DIR)"
        )
    return Path(index_dir or os.environ.get("RAG_INDEX_DIR") or "indexes") / index


@contextlib.contextmanager
def guard(as_json: bool) -> Iterator[None]:
    """Turn RagErrors into a one-line message (or a JSON error) and exit status 1."""
    try:
        if as_json:  # keep stdout for the one JSON document: anything printed by libraries goes to stderr
            with contextlib.redirect_stdout(sys.stderr):
                yield
        else:
            yield
    except RagError as exc:
        if as_json:
            click.echo(json.dumps({"error": {"message": str(exc), "type": type(exc).__name__}}))
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def emit(data: dict[str, Any]) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


@contextlib.contextmanager
def progress_bar(enabled: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    if not enabled or not err.is_terminal:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


index_option = click.option("--index", "index", default="default", show_default=True, help="Index name.")
filter_option = click.option(
    "--filter",
    "filters",
    default=None,
    metavar="EXPR",
    help='Only chunks whose metadata passes EXPR, e.g. "type in [pdf, md] and modified >= 2026-01-01" '
    "(docs/filters.md).",
)
index_dir_option = click.option(
    "--index-dir", default=None, help="Folder holding the indexes [default: $RAG_INDEX_DIR or ./indexes]."
)
pipeline_option = click.option(
    "--pipeline", default=None, help="Pipeline name (a file in pipelines/) or path to a YAML file."
)
allow_option = click.option(
    "--allow",
    "allowed",
    multiple=True,
    metavar="MODULE.CLASS",
    help="Allow a component class of your own (full dotted name) in the pipeline file; repeatable.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
engine_option = click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Run in this process, or on a Ray cluster (needs pip install 'rag[ray]').",
)
address_option = click.option(
    "--address",
    default=None,
    help="Ray cluster to join with --engine ray: 'auto' or 'ray://HOST:10001' [default: $RAY_ADDRESS, else a new one].",
)


def check_engine(engine: str, address: str | None) -> str:
    """The engine asked for; --address without --engine ray is an error."""
    if address is not None and engine != "ray":
        raise ConfigError(f"--address {address} names a Ray cluster; give --engine ray too")
    return engine


def print_hits(hits: list[Any], as_json: bool, timings: dict[str, Any] | None = None) -> None:
    """Hits as `{"hits": [...], "timings": {...}}` JSON (timings when given), or ranked with path, score and the
    start of the text."""
    if as_json:
        emit({"hits": [h.to_dict() for h in hits]} | ({"timings": timings} if timings is not None else {}))
        return
    for rank, hit in enumerate(hits, start=1):
        path = escape(shown(hit.chunk.path))
        out.print(f"[bold]{rank}.[/bold] {path}  [dim]score {hit.score:.4f}[/dim]", highlight=False)
        out.print("   " + shown(" ".join(hit.chunk.text.split())[:300]), highlight=False, markup=False)
