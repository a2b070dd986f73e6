"""OpenTelemetry spans for requests, pipeline components and index runs (`opentelemetry-api` only).

Nothing is recorded unless an OpenTelemetry SDK is configured (the API's default tracer does nothing): `rag serve
--otel` or `OTEL_EXPORTER_OTLP_ENDPOINT` set one up with the OTLP exporter (`pip install 'rag[otel]'`), or the
application embedding `rag` configures its own. Spans carry counts, names, settings and timings, never document
or query text, unless `RAG_TRACE_TEXT=1`.

    rag.query / rag.ask          one per call of the Python API (query, top_k, answer mode, hits, abstention)
    rag.component                one per pipeline component run (name, type, hits out, tokens, time to first token)
    rag.index                    one per index run (files added, changed, removed, failed; chunks embedded)

and under `rag serve`, FastAPI's own span of each request (`POST /v1/answer`: route, status) is their parent.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace

__all__ = ["TEXT_ENV", "record_text", "span"]

TEXT_ENV = "RAG_TRACE_TEXT"
"""Set to 1 to record query and question text in spans (off by default: it may be private)."""

_tracer = trace.get_tracer("rag")


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[trace.Span]:
    """A span named `name` around the block, with `attributes` (None values left out); an exception in the block
    is recorded on it and raised again."""
    with _tracer.start_as_current_span(name, attributes=_plain(attributes)) as current:
        yield current


def record_text(current: trace.Span, name: str, text: str) -> None:
    """Put `text` on the span as attribute `name`, only when `RAG_TRACE_TEXT=1`."""
    if os.environ.get(TEXT_ENV) == "1":
        current.set_attribute(name, text)


def _plain(attributes: dict[str, Any]) -> dict[str, Any]:
    return {f"rag.{key}": value for key, value in attributes.items() if isinstance(value, str | bool | int | float)}
