"""OpenTelemetry spans (rag.core.tracing), recorded with the SDK's in-memory exporter: the Python API, each
pipeline component, index runs and server requests; no text unless asked for."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from rag.api import RAG
from tests.serve.fakes import answer_pipeline
from tests.serve.helpers import serving, write_docs

_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):  # the global provider is set once per process
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def by_name(exporter: InMemorySpanExporter, name: str) -> list[dict]:
    return [dict(s.attributes or {}) for s in exporter.get_finished_spans() if s.name == name]


def test_index_query_and_ask_are_traced_without_text(spans: InMemorySpanExporter, tmp_path: Path) -> None:
    rag = RAG(tmp_path / "idx", answer_pipeline())
    rag.index(write_docs(tmp_path / "docs"))
    (run,) = by_name(spans, "rag.index")
    assert run["rag.added"] == 4 and run["rag.chunks_embedded"] > 0 and run["rag.pipeline"] == "echo"
    spans.clear()
    rag.query("what do sea otters eat and why does bread rise", top_k=2)
    (query,) = by_name(spans, "rag.query")
    assert query["rag.hits"] == 2 and query["rag.top_k"] == 2 and "rag.query_text" not in query
    assert [s["rag.component"] for s in by_name(spans, "rag.component")] == ["bm25"]
    spans.clear()
    pieces: list[str] = []
    answer = rag.ask("What do sea otters eat?", on_token=pieces.append)
    (ask,) = by_name(spans, "rag.ask")
    assert ask["rag.abstained"] is answer.abstained and ask["rag.citations"] == len(answer.citations)
    assert ask["rag.first_token_ms"] > 0 and "rag.question" not in ask
    components = {s["rag.component"]: s for s in by_name(spans, "rag.component")}
    assert set(components) == {"bm25", "prompt", "generator", "answer"}
    assert components["generator"]["rag.completion_tokens"] > 0 and components["bm25"]["rag.hits"] > 0
    text = " ".join(str(value) for s in spans.get_finished_spans() for value in (s.attributes or {}).values())
    assert "otters" not in text  # no document or question text by default


def test_text_is_recorded_only_when_asked(spans: InMemorySpanExporter, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    rag = RAG(tmp_path / "idx", answer_pipeline())
    rag.index(write_docs(tmp_path / "docs"))
    monkeypatch.setenv("RAG_TRACE_TEXT", "1")
    rag.query("sea otters")
    assert by_name(spans, "rag.query")[0]["rag.query_text"] == "sea otters"


def test_each_server_request_is_a_span_with_the_api_spans_inside(spans: InMemorySpanExporter, tmp_path: Path) -> None:
    index = tmp_path / "index"
    RAG(index, answer_pipeline()).index(write_docs(tmp_path / "docs"))
    with serving(index, answer_pipeline()) as client:
        spans.clear()
        assert client.post("/v1/query", json={"query": "sea otters"}).status_code == 200
    finished = spans.get_finished_spans()
    (request,) = [s for s in finished if (s.attributes or {}).get("http.route") == "/v1/query"]
    assert request.attributes["http.response.status_code"] == 200
    (query,) = [s for s in finished if s.name == "rag.query"]
    assert query.context.trace_id == request.context.trace_id  # the API's span is part of the request's trace
