"""`rag shard index` and `rag shard query`: sharded indexes from the command line (see docs/scaling.md)."""

from __future__ import annotations

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
from rag.core.errors import ConfigError

__all__ = ["shard_group"]


@click.group("shard")
def shard_group() -> None:
    """Sharded indexes: shard folders listed by a manifest, queried by fan-out (see docs/scaling.md)."""


@shard_group.command("index")
@click.argument("path")
@index_option
@index_dir_option
@pipeline_option
@allow_option
@click.option("--shards", type=click.IntRange(min=1), required=True, help="Number of shards.")
@click.option("--strict", is_flag=True, help="Fail (and write nothing to a shard) if any of its files cannot be read.")
@click.option("--rebuild", is_flag=True, help="Build every shard anew (needed to change the number of shards).")
@click.option("--wait", type=float, default=0.0, help="Seconds to wait for another run holding the index.")
@engine_option
@address_option
@json_option
def shard_index_cmd(
    path: str,
    index: str,
    index_dir: str | None,
    pipeline: str | None,
    allowed: tuple[str, ...],
    shards: int,
    strict: bool,
    rebuild: bool,
    wait: float,
    engine: str,
    address: str | None,
    as_json: bool,
) -> None:
    """Index folder PATH into a sharded index: each file goes to one of --shards ordinary index folders."""
    from rag.api import DEFAULT_PIPELINE
    from rag.core.serialization import load_pipeline
    from rag.distributed.shards import index_sharded

    with guard(as_json), progress_bar(True) as progress:
        root = index_path(index, index_dir)
        ray_engine = None
        if check_engine(engine, address) == "ray":
            from rag.distributed.ray_engine import RayEngine

            ray_engine = RayEngine(address=address, staging=root)
        report = index_sharded(
            path,
            root,
            load_pipeline(pipeline or DEFAULT_PIPELINE, allowed),
            shards,
            strict=strict,
            rebuild=rebuild,
            wait=wait,
            progress=progress,
            engine=ray_engine,
        )
    data = report.to_dict()
    if as_json:
        emit(data)
        return
    table = Table(show_header=True, header_style="bold")
    for column in ("shard", *data["files"], "chunks", "embedded", "seconds"):
        table.add_column(column, justify="right")
    for n, part in enumerate([*data["shards"], data]):
        label = f"{n:03d}" if n < len(data["shards"]) else "all"
        table.add_row(
            label,
            *(str(v) for v in part["files"].values()),
            *(str(v) for v in part["chunks"].values()),
            f"{part['seconds']:.1f}",
        )
    out.print(table)
    for failure in data["failures"]:
        click.echo(f"skipped {shown(failure['path'])}: {shown(failure['reason'])}", err=True)


@shard_group.command("query")
@click.argument("text")
@index_option
@index_dir_option
@allow_option
@click.option("--top-k", type=click.IntRange(min=1), default=None, help="Number of hits.")
@filter_option
@click.option("--allow-unknown-fields", is_flag=True, help="A filter on a field no chunk has matches nothing.")
@click.option(
    "--fanout",
    type=click.Choice(["threads", "ray"]),
    default="threads",
    show_default=True,
    help="Search the shards in threads here, or in one Ray actor per shard.",
)
@address_option
@json_option
def shard_query_cmd(
    text: str,
    index: str,
    index_dir: str | None,
    allowed: tuple[str, ...],
    top_k: int | None,
    filters: str | None,
    allow_unknown_fields: bool,
    fanout: str,
    address: str | None,
    as_json: bool,
) -> None:
    """Retrieve the chunks that best match TEXT from every shard (merged into one top-k); --filter keeps to the
    chunks whose metadata passes it, inside every shard."""
    from rag.distributed.shards import ShardedIndex

    with guard(as_json):
        if fanout == "ray":
            from rag.distributed import import_ray

            ray = import_ray("rag shard query --fanout ray")
            if not ray.is_initialized():
                ray.init(address=address, include_dashboard=False)
        elif address is not None:
            raise ConfigError(f"--address {address} names a Ray cluster; give --fanout ray too")
        sharded = ShardedIndex(index_path(index, index_dir), allowed, fanout=fanout)
        hits = sharded.query(text, top_k=top_k, filters=filters, allow_unknown_fields=allow_unknown_fields)
    print_hits(hits, as_json)
