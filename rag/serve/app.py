"""The app factory: `create_app(settings)` builds a FastAPI app for the configured pipelines.

Nothing happens at import. The factory reads the pipeline definitions (cheap) to derive the request
models; the app's lifespan loads the models and the index once per worker process, before the
first request. `serve()` runs it on uvicorn, in this process or in several workers.

    from rag.serve import ServerSettings, create_app
    app = create_app(ServerSettings(index="indexes/docs", api_keys=("secret",)))
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import anyio
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from pydantic import BaseModel

from rag import __version__
from rag.core.errors import MissingDependencyError
from rag.serve.auth import KeyGuard, require_api_key
from rag.serve.documents import DocumentFolder, JobQueue
from rag.serve.documents_routes import documents_router
from rag.serve.errors import ErrorEnvelope, error_responses, install_error_handlers
from rag.serve.index_job import IndexJobRunner
from rag.serve.limits import BodyLimitMiddleware
from rag.serve.metrics import CONTENT_TYPE_LATEST, Metrics, MetricsMiddleware
from rag.serve.openai_routes import STREAM_MODELS as OPENAI_STREAM_MODELS
from rag.serve.openai_routes import openai_router
from rag.serve.protocol import request_models
from rag.serve.routes import STREAM_MODELS as NATIVE_STREAM_MODELS
from rag.serve.routes import health_router, native_router
from rag.serve.service import RagService
from rag.serve.settings import SETTINGS_ENV, ServerSettings, is_loopback
from rag.serve.streaming import component_schemas
from rag.serve.tracing import configure_otel

__all__ = ["app_from_env", "create_app", "serve"]

logger = logging.getLogger(__name__)

_DESCRIPTION = """Retrieval and answers from one index, generated from its pipeline.

Native: `POST /v1/query`, `POST /v1/answer` (`"stream": true` for Server-Sent Events).
OpenAI-compatible: `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/models`.
Uploads: `POST /v1/documents`, then `GET /v1/jobs/{id}`. Every error is
`{"error": {"message", "type", "param", "code"}}`."""


def create_app(settings: ServerSettings) -> FastAPI:
    """A new app serving `settings.pipelines` over `settings.index`; see the module docstring."""
    service = RagService(settings)
    service.load_pipelines()
    metrics = Metrics()
    for served in service.served.values():
        for pipeline in served.pipelines:
            metrics.instrument(served.name, pipeline)
    documents = DocumentFolder(settings.index, lambda: service.default.mirrored_source())
    run = IndexJobRunner(
        settings.index, service.default.pipeline, settings.job_memory_mb, settings.job_timeout_s, settings.index_wait_s
    )
    jobs = JobQueue(documents, run, lambda: service.sync(wait=True, strict=True))
    mcp = _mcp_tools(service, settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if not settings.api_keys and not is_loopback(settings.host):
            logger.warning(
                "no API keys are configured and the server listens on %s: anyone who can reach it can use it; "
                "set RAG_API_KEYS or --api-keys-file",
                settings.host,
            )
        await anyio.to_thread.run_sync(jobs.recover)
        await anyio.to_thread.run_sync(service.start)
        try:
            async with mcp.session_manager.run() if mcp is not None else contextlib.nullcontext():
                yield
        finally:
            await anyio.to_thread.run_sync(jobs.close)

    if settings.otel:
        configure_otel()
    app = FastAPI(title="rag", version=__version__, description=_DESCRIPTION, lifespan=lifespan)
    app.state.service = service
    app.state.metrics = metrics
    app.state.jobs = jobs
    install_error_handlers(app)
    auth = [Depends(require_api_key(settings.api_keys))] if settings.api_keys else []
    refused = error_responses(401, 403) if settings.api_keys else {}
    app.include_router(health_router(service))
    models = request_models(service.default.pipeline, settings)
    app.include_router(native_router(service, models, metrics), dependencies=auth, responses=refused)
    app.include_router(openai_router(service, metrics), dependencies=auth, responses=refused)
    app.include_router(documents_router(documents, jobs), dependencies=auth, responses=refused)
    if mcp is not None:  # the MCP tools over streamable HTTP, behind the same keys
        tools = mcp.streamable_http_app(streamable_http_path="/", stateless_http=True, json_response=True)
        app.mount("/mcp", KeyGuard(tools, settings.api_keys) if settings.api_keys else tools)

    @app.get(
        "/metrics",
        dependencies=auth,
        tags=["health"],
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
        responses=refused,
    )
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:  # FastAPI's, with the models that error answers and streamed events refer to
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = FastAPI.openapi(app)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        extra: list[type[BaseModel]] = [ErrorEnvelope, *NATIVE_STREAM_MODELS, *OPENAI_STREAM_MODELS]
        for name, definition in component_schemas(extra).items():
            components.setdefault(name, definition)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

    page = resources.files("rag.serve").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    async def index_page() -> HTMLResponse:
        return HTMLResponse(page)

    mb = 1024 * 1024
    app.add_middleware(
        BodyLimitMiddleware,
        limit=int(settings.max_body_mb * mb),
        upload_limit=int(settings.max_upload_mb * mb),
        upload_paths=("/v1/documents",),
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def app_from_env() -> FastAPI:
    """The app for one uvicorn worker process, from the settings `serve()` put in `$RAG_SERVE_SETTINGS`."""
    return create_app(ServerSettings.from_json(os.environ[SETTINGS_ENV]))


def serve(settings: ServerSettings, port: int = 8000, workers: int = 1, log_level: str = "info") -> None:
    """Run the app on uvicorn until interrupted; with `workers > 1`, each worker process loads its own models."""
    import uvicorn

    if workers > 1:
        os.environ[SETTINGS_ENV] = settings.to_json()
        uvicorn.run(
            "rag.serve.app:app_from_env",
            factory=True,
            host=settings.host,
            port=port,
            workers=workers,
            log_level=log_level,
        )
        return
    app = create_app(settings)
    app.state.service.start()  # here, so that a model or index that cannot load is reported before listening
    uvicorn.run(app, host=settings.host, port=port, log_level=log_level)


def _mcp_tools(service: RagService, settings: ServerSettings) -> Any:
    """The MCP server of the default pipeline's tools (docs/serving.md), or None without the `mcp` package."""
    try:
        from rag.serve.mcp import describe_index, tools_server

        return tools_server(
            lambda query, top_k, filters: service.query(service.default, query, top_k, filters),
            lambda question, mode, top_k, filters: service.ask(
                service.default, question, top_k, None, answer_mode=mode, filters=filters
            ),
            lambda: [describe_index(settings.index, True)],
            lambda: service.read(service.default, lambda rag: rag.documents()),
            lambda path: service.read(service.default, lambda rag: rag.document_text(path)),
        )
    except MissingDependencyError:
        logger.info("the mcp package is not installed: no MCP tools at /mcp/ (pip install 'rag[mcp]')")
        return None
