"""Traces of `rag serve`: the OpenTelemetry SDK set up with the OTLP exporter by `rag serve --otel` (or when
`OTEL_EXPORTER_OTLP_ENDPOINT` is set). FastAPI makes one server span per request (`POST /v1/query`, with the
route and status); the spans of `rag.core.tracing` nest under it."""

from __future__ import annotations

import logging

from rag.core.errors import MissingDependencyError

__all__ = ["configure_otel"]

logger = logging.getLogger(__name__)


def configure_otel() -> None:
    """Install the OpenTelemetry SDK's tracer provider with a batching OTLP/HTTP exporter (the endpoint and
    headers from the standard `OTEL_EXPORTER_OTLP_*` variables; default http://localhost:4318)."""
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "opentelemetry-sdk", "otel", "rag serve --otel") from exc
    provider = TracerProvider(resource=Resource.create({"service.name": "rag"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    logger.info("OpenTelemetry traces are exported over OTLP/HTTP")
