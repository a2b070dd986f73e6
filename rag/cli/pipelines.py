"""`rag pipelines` and `rag pipeline show`."""

from __future__ import annotations

import click
from rich.markup import escape

from rag.cli.common import (
    guard,
    out,
)

__all__ = ["pipeline_group", "pipelines_cmd"]


@click.command("pipelines")
def pipelines_cmd() -> None:
    """List the shipped pipelines."""
    from rag.core.serialization import load_pipeline, shipped_pipelines

    with guard(False):
        for name, path in shipped_pipelines().items():
            out.print(f"[bold]{escape(name)}[/bold]  {escape(load_pipeline(path).description)}", highlight=False)


@click.group("pipeline")
def pipeline_group() -> None:
    """Inspect a pipeline."""


@pipeline_group.command("show")
@click.argument("name")
def pipeline_show(name: str) -> None:
    """Print pipeline NAME (a shipped name or a YAML path), validated, as YAML."""
    from rag.core.serialization import dump_pipeline, load_pipeline

    with guard(False):
        click.echo(dump_pipeline(load_pipeline(name)), nl=False)
