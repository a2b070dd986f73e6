"""`rag serve` (the HTTP API, locally or on Ray Serve) and `rag mcp` (the index to MCP clients over stdio)."""

from __future__ import annotations

import os

import click

from rag.cli.common import (
    address_option,
    allow_option,
    check_engine,
    guard,
    index_dir_option,
    index_option,
    index_path,
    pipeline_option,
)
from rag.core.errors import ConfigError

__all__ = ["keys_group", "mcp_cmd", "serve_cmd"]


@click.command("serve")
@index_option
@index_dir_option
@click.option(
    "--pipeline",
    "pipelines",
    multiple=True,
    help="Pipeline to serve (name or YAML path); repeat to serve several, chosen by `model` in OpenAI "
    "requests (the first is the default) [default: the index's own].",
)
@click.option(
    "--collection",
    "collection_specs",
    multiple=True,
    metavar="NAME[=INDEX]",
    help="Also serve index INDEX (default: NAME, in --index-dir) as collection NAME, with the pipeline it was "
    "built with; repeatable. Without an explicit --index, the first collection is the default one.",
)
@allow_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Worker processes.")
@click.option(
    "--api-keys-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="File with one API key per line, or the YAML file of scoped keys `rag keys add` writes (read again when "
    "it changes; also: $RAG_API_KEYS, comma-separated). None: no authentication.",
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
    "--job-memory-mb",
    type=click.FloatRange(min=1),
    default=4096.0,
    show_default=True,
    help="Memory one indexing job of uploads may use before it is stopped.",
)
@click.option(
    "--job-timeout-s",
    type=click.FloatRange(min=1),
    default=3600.0,
    show_default=True,
    help="Time one indexing job of uploads may run before it is stopped.",
)
@click.option(
    "--otel",
    is_flag=True,
    help="Export OpenTelemetry traces over OTLP/HTTP (also when $OTEL_EXPORTER_OTLP_ENDPOINT is set); "
    "needs pip install 'rag[otel]'.",
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
    collection_specs: tuple[str, ...],
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
    job_memory_mb: float,
    job_timeout_s: float,
    otel: bool,
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
            from rag.serve.settings import CollectionSettings, ServerSettings, load_api_keys
        except ImportError as exc:
            raise MissingDependencyError(exc.name or "fastapi", "serve", "rag serve") from exc
        collections = []
        for spec in collection_specs:
            name, _, folder = spec.partition("=")
            collections.append(CollectionSettings(name, index_path(folder or name, index_dir)))
        explicit = click.get_current_context().get_parameter_source("index") != click.core.ParameterSource.DEFAULT
        settings = ServerSettings(
            index=index_path(index, index_dir) if explicit or not collections else None,
            pipelines=pipelines or (None,),
            collections=tuple(collections),
            allowed=allowed,
            api_keys=load_api_keys(),
            api_keys_file=api_keys_file,
            host=host,
            cors_origins=cors_origins,
            max_top_k=max_top_k,
            max_tokens=max_tokens,
            max_body_mb=max_body_mb,
            max_upload_mb=max_upload_mb,
            job_memory_mb=job_memory_mb,
            job_timeout_s=job_timeout_s,
            otel=otel or bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")),
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


@click.command("mcp")
@index_option
@index_dir_option
@pipeline_option
@allow_option
def mcp_cmd(index: str, index_dir: str | None, pipeline: str | None, allowed: tuple[str, ...]) -> None:
    """Serve the index to MCP clients (agents, IDEs) over stdio: tools search, ask and list_indexes.

    Configure a client with the command `rag mcp --index NAME` (see docs/serving.md).
    """
    from rag.api import RAG
    from rag.serve.mcp import mcp_server

    with guard(False):
        root = index_path(index, index_dir)
        rag = RAG(root, pipeline, allowed)
        rag.folder.require_current()  # a missing index is an error now, not at the first tool call
        server = mcp_server(rag, root.parent)
    server.run("stdio")


@click.group("keys")
def keys_group() -> None:
    """API keys of `rag serve --api-keys-file FILE`: each limited to collections and to a tenant's documents."""


_keys_file_option = click.option(
    "--file", "path", required=True, type=click.Path(dir_okay=False), help="The YAML key file (created if need be)."
)


@keys_group.command("add")
@click.argument("name")
@_keys_file_option
@click.option("--collection", "collections", multiple=True, help="A collection it may use; repeatable [default: all].")
@click.option("--tenant", default=None, help="It sees only chunks with tenant == TENANT; its uploads get that tenant.")
@click.option("--filter", "filter_text", default=None, metavar="EXPR", help="A filter ANDed into all it asks.")
def keys_add_cmd(
    name: str, path: str, collections: tuple[str, ...], tenant: str | None, filter_text: str | None
) -> None:
    """Make a key NAME, store its hash in the key file, and print the key (shown this once)."""
    from rag.serve.keys import add_key

    with guard(False):
        key = add_key(path, name, collections, tenant, filter_text)
    click.echo(key)
    click.echo(f"(stored as a hash in {path}; a running server admits it within a second)", err=True)


@keys_group.command("remove")
@click.argument("name")
@_keys_file_option
def keys_remove_cmd(name: str, path: str) -> None:
    """Revoke the key NAME (a running server refuses it within a second)."""
    from rag.serve.keys import remove_key

    with guard(False):
        remove_key(path, name)
    click.echo(f"removed the key '{name}' from {path}")


@keys_group.command("list")
@_keys_file_option
def keys_list_cmd(path: str) -> None:
    """The keys of the key file: names and scopes (never the keys)."""
    import json

    from rag.serve.keys import list_keys

    with guard(False):
        for entry in list_keys(path):
            click.echo(json.dumps(entry, ensure_ascii=False))
