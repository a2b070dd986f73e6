"""Concurrent clients, a client that goes away mid-stream, and the Prometheus metrics."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.serve.fakes import EchoGenerator, answer_pipeline
from tests.serve.helpers import serving

QUESTIONS = {
    "What do sea otters eat?": "otters.md",
    "Where is the volcano Etna?": "volcano.md",
    "Why does bread dough rise with yeast?": "bread.md",
    "Is Rust a programming language?": "rust.md",
}


def test_concurrent_clients_get_their_own_answers(echo_index: Path) -> None:
    with serving(echo_index, answer_pipeline(EchoGenerator(words=4, delay=0.002, source="passage"))) as client:
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
        shared = httpx.Client(base_url=str(client.base_url), timeout=60, limits=limits)  # thread-safe, 32 connections

        def ask(i: int) -> tuple[str, str, str]:
            question = list(QUESTIONS)[i % len(QUESTIONS)]
            if i % 3 == 0:
                hits = shared.post("/v1/query", json={"query": question, "top_k": 1}).json()["hits"]
                return question, hits[0]["source"]["path"], ""
            if i % 3 == 1:
                data = shared.post("/v1/answer", json={"question": question}).json()
                return question, data["citations"][0]["source"]["path"], data["answer"]
            text = shared.post("/v1/answer", json={"question": question, "stream": True}).text
            data = json.loads(text.rsplit("data: ", 1)[1])
            return question, data["citations"][0]["source"]["path"], data["answer"]

        with shared, ThreadPoolExecutor(32) as pool:
            results = list(pool.map(ask, range(96)))
        for question, path, answer in results:
            assert path == QUESTIONS[question]
            assert not answer or answer.endswith("[1].")


def test_a_client_that_goes_away_cancels_its_generation(echo_index: Path) -> None:
    generator = EchoGenerator(words=400, delay=0.01, source="passage")
    with serving(echo_index, answer_pipeline(generator), max_tokens=1000) as client:
        host, port = str(client.base_url).removeprefix("http://").split(":")
        body = json.dumps({"question": "What do sea otters eat?", "stream": True, "max_tokens": 1000}).encode()
        request = (
            f"POST /v1/answer HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(request)
            received = b""
            while received.count(b"event: token") < 3:
                received += sock.recv(4096)
        deadline = time.monotonic() + 10
        while generator.cancelled == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert generator.cancelled == 1
        assert generator.emitted < 100  # stopped early: 400 words would take 4 s
        metrics = client.get("/metrics").text
        assert 'rag_generations_cancelled_total{pipeline="echo"} 1.0' in metrics


def test_metrics_count_requests_stages_tokens_and_errors(echo_index: Path) -> None:
    with serving(echo_index, answer_pipeline()) as client:
        client.post("/v1/query", json={"query": "otters"})
        client.post("/v1/answer", json={"question": "otters"})
        client.post("/v1/query", json={"top_k": 2})
        client.get("/v1/missing")
        response = client.get("/metrics")
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
        text = response.text
    assert 'rag_http_requests_total{method="POST",route="/v1/query",status="200"} 1.0' in text
    assert 'rag_http_requests_total{method="POST",route="/v1/query",status="422"} 1.0' in text
    assert 'rag_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert 'rag_errors_total{route="/v1/query",type="invalid_request_error"} 1.0' in text
    assert 'rag_http_request_duration_seconds_count{route="/v1/answer"} 1.0' in text
    for component in ("bm25", "prompt", "generator", "answer"):
        assert f'rag_pipeline_stage_duration_seconds_count{{component="{component}",pipeline="echo"}}' in text
    assert 'rag_pipeline_stage_duration_seconds_count{component="bm25",pipeline="echo"} 2.0' in text
    assert 'rag_tokens_total{kind="completion",pipeline="echo"} 9.0' in text
