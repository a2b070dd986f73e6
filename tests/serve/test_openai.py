"""The OpenAI-compatible endpoints, through the official `openai` client (plain and streaming)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from rag.core.pipeline import Pipeline
from tests.serve.fakes import EchoGenerator, FakeEmbedder, answer_pipeline, retrieval_pipeline
from tests.serve.helpers import assert_envelope, running

pytest.importorskip("openai")


@pytest.fixture(scope="module")
def server(echo_index: Path) -> Iterator[tuple[str, EchoGenerator]]:
    from rag.serve.app import create_app
    from rag.serve.settings import ServerSettings

    generator = EchoGenerator(words=5, source="passage")
    retrieval = retrieval_pipeline(name="search")
    pipelines: tuple[Pipeline, ...] = (answer_pipeline(generator), retrieval)
    app = create_app(ServerSettings(index=echo_index, pipelines=pipelines, api_keys=("sk-test",), max_tokens=50))
    for served in app.state.service.served["search"].pipelines:
        served.components["bm25"].embedder = FakeEmbedder()  # type: ignore[attr-defined]
    with running(app) as url:
        yield url, generator


@pytest.fixture
def client(server: tuple[str, EchoGenerator]) -> openai.OpenAI:
    return openai.OpenAI(base_url=server[0] + "/v1", api_key="sk-test", max_retries=0)


def test_models_lists_the_served_pipelines(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["echo", "search"]


def test_chat_completion(client: openai.OpenAI, server: tuple[str, EchoGenerator]) -> None:
    messages: Any = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Tell me about Rust"},
        {"role": "assistant", "content": "Which one?"},
        {"role": "user", "content": [{"type": "text", "text": "What do sea otters eat?"}]},
    ]
    completion = client.chat.completions.create(model="echo", messages=messages, max_tokens=4, temperature=0.3, seed=1)
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == "# Sea otters [1]."
    assert choice.finish_reason == "length" and completion.model == "echo"
    assert completion.usage is not None and completion.usage.completion_tokens == 4
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 4
    assert (
        completion.model_extra is not None and completion.model_extra["citations"][0]["source"]["path"] == "otters.md"
    )
    assert server[1].seen[-1] == {"max_tokens": 4, "strategy": "sample", "temperature": 0.3, "seed": 1}


def test_one_model_and_strictly_typed_fields(client: openai.OpenAI) -> None:
    model = client.models.retrieve("echo")
    assert (model.id, model.object, model.owned_by) == ("echo", "model", "rag")
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.models.retrieve("nope")
    messages: Any = [{"role": "user", "content": "What do sea otters eat?"}]
    for field, value in (("max_tokens", "5"), ("max_tokens", True), ("stream", 1), ("temperature", "0.5")):
        with pytest.raises(openai.UnprocessableEntityError, match=field):
            client.chat.completions.create(model="echo", messages=messages, extra_body={field: value})


def test_chat_completion_takes_filters_as_an_extra_body_field(client: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "What do sea otters eat?"}]
    completion = client.chat.completions.create(
        model="echo", messages=messages, extra_body={"filters": {"path": {"$ne": "otters.md"}}}
    )
    assert completion.model_extra is not None
    assert all(c["source"]["path"] != "otters.md" for c in completion.model_extra["citations"])
    with pytest.raises(openai.BadRequestError, match="no chunk of this index has a field 'tenant'"):
        client.chat.completions.create(model="echo", messages=messages, extra_body={"filters": "tenant == acme"})


def test_chat_completion_streams(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "Why does bread dough rise?"}],
        stream=True,
        stream_options={"include_usage": True},
        temperature=0,
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "# Bread Bread dough rises [1]."
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishing) == 1 and finishing[0].choices[0].finish_reason == "stop"
    assert finishing[0].model_extra is not None and finishing[0].model_extra["citations"][0]["n"] == 1
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6 and not chunks[-1].choices


def test_completions_plain_and_streaming(client: openai.OpenAI) -> None:
    completion = client.completions.create(model="echo", prompt="Mount Etna volcano", max_tokens=3)
    assert completion.choices[0].text == "# Etna [1]." and completion.object == "text_completion"
    pieces = [c.choices[0].text for c in client.completions.create(model="echo", prompt="Etna", stream=True)]
    assert "".join(pieces) == "# Etna Mount Etna is [1]."


def test_embeddings_float_and_base64(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="search", input=["a b c", "hello"])  # the client asks for base64
    assert [d.index for d in result.data] == [0, 1]
    assert np.allclose(result.data[0].embedding, [5, 2, 1]) and np.allclose(result.data[1].embedding, [5, 0, 1])
    floats = client.embeddings.create(
        model="search", input="a b", encoding_format="float", extra_body={"input_type": "query"}
    )
    assert floats.data[0].embedding == [-3.0, -1.0, -1.0]
    with pytest.raises(openai.BadRequestError, match="no dense embedding model"):
        client.embeddings.create(model="echo", input="x")
    with pytest.raises(openai.UnprocessableEntityError):
        client.embeddings.create(model="search", input=[[1, 2, 3]])


def test_errors_come_back_as_openai_errors(client: openai.OpenAI, server: tuple[str, EchoGenerator]) -> None:
    with pytest.raises(openai.NotFoundError) as found:
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "x"}])
    assert found.value.code == "model_not_found"
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}], n=2)
    with pytest.raises(openai.UnprocessableEntityError, match="at most 50"):
        client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "x"}], max_tokens=51)
    with pytest.raises(openai.BadRequestError, match="no 'answer' output"):
        client.chat.completions.create(model="search", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.PermissionDeniedError):
        openai.OpenAI(base_url=server[0] + "/v1", api_key="wrong", max_retries=0).models.list()
    response = httpx.post(
        server[0] + "/v1/chat/completions",
        json={"model": "echo", "messages": [{"role": "assistant", "content": "x"}]},
        headers={"Authorization": "Bearer sk-test"},
    )
    assert_envelope(response, 422, "messages")
