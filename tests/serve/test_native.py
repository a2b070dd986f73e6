"""The native API on a real server: /v1/query, /v1/answer (JSON and SSE), health, and the error envelope."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from rag.api import RAG
from rag.serve.protocol import ANSWER_FIELDS
from tests.serve.fakes import ECHO, EchoGenerator, answer_pipeline, retrieval_pipeline
from tests.serve.helpers import assert_envelope, serving, sse_events


def test_query_returns_hits_shaped_like_rag_query_json(client: httpx.Client, echo_index: Path) -> None:
    response = client.post("/v1/query", json={"query": "what do sea otters eat and why does bread rise", "top_k": 2})
    assert response.status_code == 200
    hits = response.json()["hits"]
    expected = [
        h.to_dict()
        for h in RAG(echo_index, answer_pipeline()).query("what do sea otters eat and why does bread rise", top_k=2)
    ]
    assert hits == expected and len(hits) == 2
    assert hits[0]["source"]["path"] == "otters.md"


def test_answer_json_has_answer_citations_hits_usage(client: httpx.Client, generator: EchoGenerator) -> None:
    response = client.post("/v1/answer", json={"question": "Why does bread dough rise? Yeast? Otters?", "top_k": 1})
    assert response.status_code == 200
    data = response.json()
    assert set(data) == set(ANSWER_FIELDS) and data["mode"] == "generate" and data["abstained"] is False
    assert data["hits"][0]["source"]["path"] == "bread.md" and len(data["hits"]) == 1
    assert data["answer"].endswith("[1].") and "Bread" in data["answer"]
    assert [c["n"] for c in data["citations"]] == [1] and data["citations"][0]["source"]["path"] == "bread.md"
    assert data["usage"]["completion_tokens"] == 7 and data["usage"]["prompt_tokens"] > 10


def test_answer_passes_decoding_options_to_the_generator(client: httpx.Client, generator: EchoGenerator) -> None:
    body = {"question": "volcano", "max_tokens": 3, "strategy": "sample", "temperature": 0.5, "sample_top_k": 7}
    data = client.post("/v1/answer", json=body).json()
    assert generator.seen[-1] == {"max_tokens": 3, "strategy": "sample", "temperature": 0.5, "sample_top_k": 7}
    old = {**body, "sampling_top_k": 9}
    del old["sample_top_k"]
    client.post("/v1/answer", json=old)  # the old name, accepted until the next release
    assert generator.seen[-1]["sample_top_k"] == 9
    assert data["usage"]["completion_tokens"] == 3


def test_invalid_decoding_combination_is_a_422_envelope(client: httpx.Client) -> None:
    response = client.post("/v1/answer", json={"question": "volcano", "temperature": 0.7})
    error = assert_envelope(response, 422, "temperature")
    assert "greedy" in error["message"] and error["code"] == "invalid_decoding"


def test_answer_streams_tokens_then_the_answer(client: httpx.Client) -> None:
    with client.stream("POST", "/v1/answer", json={"question": "What do sea otters eat?", "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r.read().decode())
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "answer" and set(kinds[:-1]) == {"token"} and len(kinds) > 3
    final = json.loads(events[-1][1])
    streamed = "".join(json.loads(data)["text"] for kind, data in events if kind == "token")
    assert streamed.strip() == final["answer"] and final["citations"][0]["source"]["path"] == "otters.md"


def test_limits_and_bad_input_are_422_envelopes(client: httpx.Client) -> None:
    assert_envelope(client.post("/v1/query", json={"query": "x", "top_k": 11}), 422, "top_k")
    assert_envelope(client.post("/v1/query", json={"query": "x", "top_k": 0}), 422, "top_k")
    assert_envelope(client.post("/v1/query", json={"top_k": 2}), 422, "query")
    assert_envelope(client.post("/v1/query", json={"query": ""}), 422, "query")
    assert_envelope(client.post("/v1/query", json={"query": " \n\t "}), 422, "query")
    assert_envelope(client.post("/v1/query", json={"query": "\x1c"}), 422, "query")  # blank to str.strip() only
    assert_envelope(client.post("/v1/answer", json={"question": "   "}), 422, "question")
    assert_envelope(client.post("/v1/query", json={"query": "x", "pipeline": "evil.yaml"}), 422, "pipeline")
    assert_envelope(client.post("/v1/answer", json={"question": "x", "max_tokens": 65}), 422, "max_tokens")
    assert_envelope(client.post("/v1/answer", json={"question": "x", "speculative": {"method": "ngram"}}), 422)
    error = assert_envelope(
        client.post("/v1/query", content=b"{not json", headers={"content-type": "application/json"}), 422
    )
    assert "JSON" in error["message"]
    assert_envelope(client.post("/v1/query", json={"query": 5}), 422, "query")


def test_unknown_routes_and_methods_are_envelopes(client: httpx.Client) -> None:
    assert assert_envelope(client.get("/v1/nothing"), 404)["type"] == "not_found_error"
    assert assert_envelope(client.get("/v1/query"), 405)["code"] == "method_not_allowed"


def test_health_and_readiness(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["index"].startswith("gen-") and ready["pipelines"] == ["echo"]


def test_openapi_is_derived_from_the_pipeline(client: httpx.Client, tmp_path: Path, echo_index: Path) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert schemas["QueryRequest"]["properties"]["top_k"]["anyOf"][0]["maximum"] == 10
    answer = schemas["AnswerRequest"]["properties"]
    assert {"question", "stream", "top_k", "max_tokens", "strategy", "sample_top_k", "temperature"} <= set(answer)
    assert answer["sampling_top_k"]["deprecated"] is True
    assert answer["max_tokens"]["anyOf"][0]["maximum"] == 64
    assert not {"speculative", "quantization", "prefix_caching"} & set(answer)
    # a retrieval-only pipeline: no /v1/answer, and the query model has what the pipeline takes
    with serving(echo_index, retrieval_pipeline(name="echo")) as other:
        paths = other.get("/openapi.json").json()["paths"]
        assert "/v1/query" in paths and "/v1/answer" not in paths
        assert_envelope(other.post("/v1/answer", json={"question": "x"}), 404)
    assert client.get("/docs").status_code == 200


def test_generator_without_decoding_input_takes_no_decoding_options(echo_index: Path) -> None:
    pipeline = answer_pipeline()
    pipeline_dict = pipeline.to_dict()
    del pipeline_dict["inputs"]["decoding"]
    from rag.core.serialization import pipeline_from_dict

    plain = pipeline_from_dict(pipeline_dict, [ECHO])
    with serving(echo_index, plain) as other:
        props = other.get("/openapi.json").json()["components"]["schemas"]["AnswerRequest"]["properties"]
        assert set(props) == {"question", "stream", "top_k", "filters", "collection"}
        assert_envelope(other.post("/v1/answer", json={"question": "x", "max_tokens": 3}), 422, "max_tokens")
        assert other.post("/v1/answer", json={"question": "otters"}).json()["citations"]


def test_fields_are_strictly_typed(client: httpx.Client) -> None:
    for value in (True, "5", 5.0):
        assert_envelope(client.post("/v1/query", json={"query": "otters", "top_k": value}), 422, "top_k")
    assert_envelope(client.post("/v1/answer", json={"question": "otters?", "stream": "yes"}), 422, "stream")


def test_filters_limit_query_and_answer_and_bad_ones_are_400s(client: httpx.Client) -> None:
    question = "what do sea otters eat and why does bread rise"
    for filters in ("path == bread.md", {"path": {"$in": ["bread.md"]}}):
        response = client.post("/v1/query", json={"query": question, "filters": filters})
        assert response.status_code == 200, response.text
        assert [hit["source"]["path"] for hit in response.json()["hits"]] == ["bread.md"]
    answer = client.post("/v1/answer", json={"question": question, "filters": "not path == bread.md"}).json()
    assert all(c["source"]["path"] != "bread.md" for c in answer["citations"])
    assert all(h["source"]["path"] != "bread.md" for h in answer["hits"])
    error = assert_envelope(client.post("/v1/query", json={"query": question, "filters": "tenant == acme"}), 400)
    assert "no chunk of this index has a field 'tenant'" in error["message"]
    assert_envelope(client.post("/v1/query", json={"query": question, "filters": {"path": {"$like": "x"}}}), 400)
    assert_envelope(client.post("/v1/query", json={"query": question, "filters": 7}), 422, "filters")
