"""The server over the real default pipeline (MiniLM + BM25 + SmolLM2 on CPU), kept short."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from tests.serve.helpers import DOCS, serving, sse_events, write_docs

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    from rag.api import RAG

    root = tmp_path_factory.mktemp("default-serve")
    RAG(root / "index", "default").index(write_docs(root / "docs", DOCS))
    with serving(root / "index", max_tokens=64) as c:
        c.timeout = httpx.Timeout(300)
        yield c


def short(client: httpx.Client) -> dict[str, int]:
    """max_tokens, when the pipeline lets requests set decoding options."""
    props = client.get("/openapi.json").json()["components"]["schemas"]["AnswerRequest"]["properties"]
    return {"max_tokens": 12} if "max_tokens" in props else {}


def test_hybrid_query_and_extractive_answers(client: httpx.Client) -> None:
    hits = client.post("/v1/query", json={"query": "Which Sicilian mountain erupts?", "top_k": 2}).json()
    assert hits["hits"][0]["source"]["path"] == "volcano.md"
    data = client.post("/v1/answer", json={"question": "Why does bread dough rise?", "top_k": 2}).json()
    assert data["mode"] == "extractive" and not data["abstained"] and data["hits"][0]["source"]["path"] == "bread.md"
    [citation] = data["citations"]
    assert citation["by"] == "quote" and citation["claim"] == 0 and citation["span"]["text"][:-1] in data["answer"]
    body = {"question": "What do sea otters eat?", "top_k": 2, "stream": True}
    events = sse_events(client.post("/v1/answer", json=body).text)
    assert [kind for kind, _ in events] == ["token", "answer"]  # a quote arrives in one piece
    final = json.loads(events[-1][1])
    assert json.loads(events[0][1])["text"] == final["answer"]
    refused = client.post("/v1/answer", json={"question": "What do sea otters eat?", "answer_mode": "creative"})
    assert refused.status_code == 422 and refused.json()["error"]["param"] == "answer_mode"


def test_grounded_stream_retracts_what_the_check_removes(client: httpx.Client) -> None:
    body = {"question": "What do sea otters eat?", "top_k": 2, "stream": True, "answer_mode": "grounded"}
    events = sse_events(client.post("/v1/answer", json={**body, **short(client)}).text)
    assert events[0][0] == "token" and events[-1][0] == "answer"
    streamed = "".join(json.loads(d)["text"] for k, d in events if k == "token")
    retracted = [json.loads(d) for k, d in events if k == "retract"]
    final = json.loads(events[-1][1])
    assert final["usage"]["completion_tokens"] > 0 and final["mode"] in ("grounded", "extractive")
    assert [r["text"] for r in retracted] == [c["text"] for c in final["retracted"]]
    assert all(streamed.strip()[r["start"] : r["end"]] == r["text"] for r in retracted)
    assert all(claim["supported"] for claim in final["claims"])


def test_openai_chat_and_embeddings(client: httpx.Client) -> None:
    openai = pytest.importorskip("openai")
    api = openai.OpenAI(base_url=str(client.base_url) + "/v1", api_key="unused", max_retries=0, timeout=300)
    model = api.models.list().data[0].id
    assert model == "default"
    reply = api.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Where is Etna?"}], max_tokens=12
    )
    assert reply.choices[0].message.content and reply.model_extra["abstained"] is False
    generated = api.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Where is Etna?"}],
        max_tokens=12,
        extra_body={"answer_mode": "generate"},
    )
    assert generated.usage.completion_tokens > 0
    vectors = api.embeddings.create(model=model, input=["sea otters", "volcano"]).data
    assert len(vectors[0].embedding) == 384
    assert abs(np.linalg.norm(vectors[0].embedding) - 1) < 1e-3
