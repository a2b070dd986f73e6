"""The native API: `/v1/query`, `/v1/answer` (JSON or Server-Sent Events), `/v1/collections`, `/healthz`, `/readyz`.

A request names its collection in `collection` (left out: the first its key may use); the key's scope (its
tenant, its filter) is ANDed into the request's `filters`.

This module does not use `from __future__ import annotations`: the request models are built at
start-up from the pipeline, and FastAPI reads the endpoints' annotations as real classes.
"""

import functools
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, cast

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from rag.core.errors import RagError
from rag.core.types import Answer
from rag.serve.auth import api_key_of
from rag.serve.collections import Collections
from rag.serve.errors import ApiError, ErrorEnvelope, envelope, error_response, error_responses, from_rag_error
from rag.serve.keys import ApiKey, KeyRing
from rag.serve.metrics import Metrics
from rag.serve.protocol import (
    AnswerResponse,
    CollectionList,
    HealthResponse,
    QueryResponse,
    ReadyResponse,
    RequestModels,
    RetractEvent,
    TokenEvent,
    answer_body,
    decoding_overrides,
    generator_decoding,
    hits_body,
)
from rag.serve.service import ServedPipeline
from rag.serve.streaming import Generation, event_stream, generate, json_data, sse_event

__all__ = ["SSE_HEADERS", "STREAM_MODELS", "collect", "health_router", "native_router", "start_stream"]

logger = logging.getLogger(__name__)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
"""Headers of streamed answers; X-Accel-Buffering keeps nginx from buffering the stream."""

STREAM_MODELS: list[type[BaseModel]] = [TokenEvent, RetractEvent]
"""Models that only streamed events use (the OpenAPI document's components must hold them)."""

_ANSWER_EVENTS = event_stream(
    {
        "token": json_data(TokenEvent),
        "retract": json_data(RetractEvent),
        "answer": json_data(AnswerResponse),
        "error": json_data(ErrorEnvelope),
    }
)


async def start_stream(call: Generation) -> tuple[str | Answer, AsyncGenerator[str | Answer, None]]:
    """Start a generation and wait for its first item, so that early errors get a proper status."""
    stream = generate(call)
    try:
        first = await anext(stream)
    except BaseException:
        await stream.aclose()
        raise
    return first, stream


async def collect(call: Generation, request: Request) -> Answer:
    """The final answer of a generation; stops it when the client goes away meanwhile."""
    stream = generate(call)
    try:
        async for item in stream:
            if isinstance(item, Answer):
                return item
            if await request.is_disconnected():
                raise ApiError(499, "the client went away", code="client_closed")
    finally:
        await stream.aclose()
    raise ApiError(500, "the generation ended without an answer")


_NO_COLLECTION = (404, "No collection of this name for this key (`collection_not_found`)")


def native_router(collections: Collections, models: RequestModels, metrics: Metrics, ring: KeyRing) -> APIRouter:
    """Routes for each collection's default pipeline, with request models derived from them."""
    router = APIRouter(prefix="/v1", tags=["native"])
    QueryRequest = models.query
    identified = Depends(api_key_of(ring))

    @router.get(
        "/collections",
        response_model=CollectionList,
        summary="The collections this key may use, with their pipelines",
        responses=error_responses(500),
    )
    async def list_collections(key: ApiKey = identified) -> Response:
        listed = [
            {"name": c.name, "pipelines": [p.model for p in c.service.served.values()], "default": i == 0}
            for i, c in enumerate(collections.visible(key))
        ]
        return JSONResponse({"collections": listed})

    @router.post(
        "/query",
        response_model=QueryResponse,
        summary="Retrieval hits for a query",
        responses=error_responses(400, _NO_COLLECTION, 413, 422, 500, 503),
    )
    async def query(body: QueryRequest, key: ApiKey = identified) -> Response:  # type: ignore[valid-type]
        request = cast(Any, body)  # a model built from the pipeline: its fields are known at run time
        service = collections.get(request.collection, key).service
        top_k, filters = getattr(body, "top_k", None), request.filters
        hits = await run_in_threadpool(service.query, service.default, request.query, top_k, filters, key.scope())
        return JSONResponse(hits_body(hits))

    if models.answer is not None:
        AnswerRequest = models.answer

        @router.post(
            "/answer",
            response_model=AnswerResponse,
            summary="An answer with citations (streamed as Server-Sent Events with stream=true)",
            responses={
                200: {
                    "description": "The answer, or with stream=true its events: `token`s, a `retract` for each "
                    "sentence the support check took back, then `answer` (or one `error`)",
                    "content": {"text/event-stream": _ANSWER_EVENTS},
                },
                **error_responses(400, _NO_COLLECTION, 413, 422, 500, 502, 503),
            },
        )
        async def answer(body: AnswerRequest, request: Request, key: ApiKey = identified) -> Response:  # type: ignore[valid-type]
            fields = cast(Any, body)  # a model built from the pipeline: its fields are known at run time
            service = collections.get(fields.collection, key).service
            served = service.default
            decoding = decoding_overrides(body, models, generator_decoding(served.pipeline))
            top_k, mode = getattr(body, "top_k", None), getattr(body, "answer_mode", None)
            call = functools.partial(
                service.ask,
                served,
                fields.question,
                top_k,
                decoding,
                answer_mode=mode,
                filters=fields.filters,
                scope=key.scope(),
            )
            if fields.stream:
                first, stream = await start_stream(call)
                return StreamingResponse(
                    _answer_events(first, stream, served, metrics), media_type="text/event-stream", headers=SSE_HEADERS
                )
            result = await collect(call, request)
            metrics.answered(served.model, result)
            return JSONResponse(answer_body(result))

    return router


async def _answer_events(
    first: str | Answer, stream: AsyncGenerator[str | Answer, None], served: ServedPipeline, metrics: Metrics
) -> AsyncIterator[str]:
    """`token` events ({"text"}), then a `retract` event ({"text", "start", "end"}) for each streamed sentence the
    support check took back, then one `answer` event (as /v1/answer's JSON); or one `error` event."""
    item = first
    finished = False
    try:
        while True:
            if isinstance(item, Answer):
                metrics.answered(served.model, item)
                finished = True
                for claim in item.retracted:
                    yield sse_event({"text": claim.text, "start": claim.start, "end": claim.end}, "retract")
                yield sse_event(answer_body(item), "answer")
                return
            yield sse_event({"text": item}, "token")
            item = await anext(stream)
    except RagError as exc:
        finished = True
        yield sse_event(from_rag_error(exc).body(), "error")
    except Exception:
        finished = True
        logger.exception("streamed answer failed")
        yield sse_event(envelope("internal server error; the server log has the details", "server_error"), "error")
    finally:
        if not finished:
            metrics.cancelled.labels(pipeline=served.model).inc()
        await stream.aclose()


def health_router(collections: Collections) -> APIRouter:
    """Liveness and readiness (of the default collection: every collection loads before the server is ready);
    never behind API keys."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz", response_model=HealthResponse, summary="Liveness: the process answers")
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    @router.get(
        "/readyz",
        response_model=ReadyResponse,
        summary="Readiness: models loaded and an index being served",
        responses=error_responses(
            (
                503,
                "Not ready: models still loading (`not_ready`), no index yet (`no_index`) or an index that cannot "
                "be loaded (`index_unusable`)",
            )
        ),
    )
    async def readyz() -> Response:
        services = collections.services
        if not all(service.ready for service in services):
            return error_response(ApiError(503, "loading models", code="not_ready"))
        if problem := next((s.problem for s in services if s.problem), None):
            return error_response(ApiError(503, problem, code="index_unusable"))
        service = services[0]
        if service.generation is None:
            message = "no index yet: upload documents (POST /v1/documents) or run `rag index`"
            return error_response(ApiError(503, message, code="no_index"))
        body = {"status": "ready", "index": service.generation.name, "pipelines": list(service.served)}
        return JSONResponse(body)

    return router
