"""Prometheus metrics of one app (its own registry, no globals): requests, latency per route and per
pipeline stage, tokens generated, and errors.

    rag_http_requests_total{method, route, status}
    rag_http_request_duration_seconds{route}          until the last byte of the response
    rag_pipeline_stage_duration_seconds{pipeline, component}
    rag_tokens_total{pipeline, kind}                  kind: prompt | completion
    rag_errors_total{route, type}                     answers with status >= 400, by envelope type
    rag_generations_cancelled_total{pipeline}         clients that went away mid-answer
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.core.pipeline import Pipeline
from rag.core.types import Answer
from rag.serve.errors import ERROR_TYPES

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "MetricsMiddleware"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """The metrics of one app and the hooks that feed them."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "rag_http_requests", "HTTP requests answered.", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "rag_http_request_duration_seconds", "Time to answer.", ["route"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.stages = Histogram(
            "rag_pipeline_stage_duration_seconds",
            "Time in each pipeline component.",
            ["pipeline", "component"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter("rag_tokens", "Tokens read and generated.", ["pipeline", "kind"], registry=r)
        self.errors = Counter("rag_errors", "Error answers.", ["route", "type"], registry=r)
        self.cancelled = Counter(
            "rag_generations_cancelled", "Answers stopped because the client went away.", ["pipeline"], registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def instrument(self, name: str, pipeline: Pipeline) -> None:
        """Time every component's `run` (once per component object, even when slots share it)."""
        for component_name, component in pipeline.components.items():
            if getattr(component, "_rag_timed", False):
                continue
            histogram = self.stages.labels(pipeline=name, component=component_name)
            component.run = _timed(component.run, histogram.observe)  # type: ignore[method-assign]
            component._rag_timed = True  # type: ignore[attr-defined]

    def answered(self, pipeline: str, answer: Answer) -> None:
        for kind in ("prompt", "completion"):
            count = answer.usage.get(f"{kind}_tokens")
            if count:
                self.tokens.labels(pipeline=pipeline, kind=kind).inc(count)


def _timed(run: Callable[..., Any], observe: Callable[[float], None]) -> Callable[..., Any]:
    @functools.wraps(run)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return run(*args, **kwargs)
        finally:
            observe(time.perf_counter() - started)

    return timed


class MetricsMiddleware:
    """Count and time every HTTP request by its route template (unmatched paths share one label)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            m = self.metrics
            m.requests.labels(method=scope["method"], route=route, status=str(status)).inc()
            m.latency.labels(route=route).observe(time.perf_counter() - started)
            if status >= 400:
                m.errors.labels(route=route, type=ERROR_TYPES.get(status, "error")).inc()
