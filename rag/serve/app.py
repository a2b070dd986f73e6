"""The app factory: `create_app(settings)` builds a FastAPI app for the configured collections and pipelines.

Nothing happens at import. The factory reads the pipeline definitions (cheap) to derive the request
models, and the API keys; the app's lifespan loads the models and the indexes once per worker process, before
the first request. `serve()` runs it on uvicorn, in this process or in several workers.

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
from rag.serve.auth import STATE_KEY, KeyGuard, api_key_of, operator_only
from rag.serve.collections import Collections
from rag.serve.documents_routes import documents_router
from rag.serve.errors import ErrorEnvelope, error_responses, install_error_handlers
from rag.serve.keys import FULL_ACCESS, ApiKey, KeyRing
from rag.serve.limits import BodyLimitMiddleware
from rag.serve.metrics import CONTENT_TYPE_LATEST, Metrics, MetricsMiddleware
from rag.serve.openai_routes import STREAM_MODELS as OPENAI_STREAM_MODELS
from rag.serve.openai_routes import openai_router
from rag.serve.protocol import request_models
from rag.serve.routes import STREAM_MODELS as NATIVE_STREAM_MODELS
from rag.serve.routes import health_router, native_router
from rag.serve.settings import SETTINGS_ENV, ServerSettings, is_loopback
from rag.serve.streaming import component_schemas
from rag.serve.tracing import configure_otel

__all__ = ["app_from_env", "create_app", "serve"]

logger = logging.getLogger(__name__)

_DESCRIPTION = """Retrieval and answers from indexes (collections), generated from their pipelines.

Native: `POST /v1/query`, `POST /v1/answer` (`"stream": true` for Server-Sent Events), `GET /v1/collections`.
OpenAI-compatible: `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/models`.
Uploads: `POST /v1/documents`, then `GET /v1/jobs/{id}`. Every error is
`{"error": {"message", "type", "param", "code"}}`."""


def create_app(settings: ServerSettings) -> FastAPI:
    """A new app serving `settings.served()` collections; see the module docstring."""
    collections = Collections(settings)
    ring = KeyRing(settings.api_keys, settings.api_keys_file, [c.name for c in collections])
    metrics = Metrics()
    for collection in collections:
        for served in collection.service.served.values():
            for pipeline in served.pipelines:
                metrics.instrument(served.model, pipeline)
    mcp = _mcp_tools(collections)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if not ring and not is_loopback(settings.host):
            logger.warning(
                "no API keys are configured and the server listens on %s: anyone who can reach it can use it; "
                "set RAG_API_KEYS or --api-keys-file",
                settings.host,
            )
        for collection in collections:
            await anyio.to_thread.run_sync(collection.jobs.recover)
            await anyio.to_thread.run_sync(collection.service.start)
        try:
            async with mcp.session_manager.run() if mcp is not None else contextlib.nullcontext():
                yield
        finally:
            for collection in collections:
                await anyio.to_thread.run_sync(collection.jobs.close)

    if settings.otel:
        configure_otel()
    app = FastAPI(title="rag", version=__version__, description=_DESCRIPTION, lifespan=lifespan)
    app.state.collections = collections
    app.state.service = collections.default.service
    app.state.metrics = metrics
    app.state.jobs = collections.default.jobs
    install_error_handlers(app)
    refused = error_responses(401, 403) if ring else {}
    identified = Depends(api_key_of(ring))
    app.include_router(health_router(collections))
    models = request_models([c.service.default.pipeline for c in collections], settings)
    app.include_router(native_router(collections, models, metrics, ring), responses=refused)
    app.include_router(openai_router(collections, metrics, ring), responses=refused)
    app.include_router(documents_router(collections, ring), responses=refused)
    if mcp is not None:  # the MCP tools over streamable HTTP, behind the same keys
        tools = mcp.streamable_http_app(streamable_http_path="/", stateless_http=True, json_response=True)
        app.mount("/mcp", KeyGuard(tools, ring))

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics (keys without a scope only)",
        response_class=PlainTextResponse,
        responses=refused,
    )
    async def prometheus(key: ApiKey = identified) -> Response:
        operator_only(key, "/metrics")
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
    for collection in app.state.collections:  # here, so that a model or index that cannot load is reported before
        collection.service.start()  # listening
    uvicorn.run(app, host=settings.host, port=port, log_level=log_level)


def _mcp_tools(collections: Collections) -> Any:
    """The MCP server of the collections' tools (docs/mcp.md): each call uses the collection it names (left out: the
    first its key may use), within the key's scope; None without the `mcp` package."""
    from rag.serve.mcp import describe_index, tools_server

    def key_of(request: Any) -> ApiKey:
        return getattr(request.state, STATE_KEY, FULL_ACCESS) if request is not None else FULL_ACCESS

    def find(request: Any, collection: str | None, query: str, top_k: int | None, filters: Any) -> Any:
        key = key_of(request)
        service = collections.get(collection, key).service
        return service.query(service.default, query, top_k, filters, key.scope())

    def answer(
        request: Any, collection: str | None, question: str, mode: str | None, top_k: int | None, filters: Any
    ) -> Any:
        key = key_of(request)
        service = collections.get(collection, key).service
        return service.ask(service.default, question, top_k, None, answer_mode=mode, filters=filters, scope=key.scope())

    def indexes(request: Any) -> list[dict[str, Any]]:
        key = key_of(request)
        if key.scoped:  # the names only: counts would tell of documents outside its scope
            return [{"name": c.name, "served": True} for c in collections.visible(key)]
        return [describe_index(c.service.collection.index, True) | {"name": c.name} for c in collections]

    def documents(request: Any, collection: str | None) -> Any:
        key = key_of(request)
        service = collections.get(collection, key).service
        return service.read(service.default, lambda rag: rag.documents(key.scope()))

    def document(request: Any, collection: str | None, path: str) -> Any:
        key = key_of(request)
        service = collections.get(collection, key).service
        return service.read(service.default, lambda rag: rag.document_text(path, key.scope()))

    try:
        return tools_server(find, answer, indexes, documents, document)
    except MissingDependencyError:
        logger.info("the mcp package is not installed: no MCP tools at /mcp/ (pip install 'rag[mcp]')")
        return None
