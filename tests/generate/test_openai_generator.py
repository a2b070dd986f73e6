"""OpenAIGenerator against a real HTTP server on loopback that records what we send."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from rag.core.errors import ConfigError, ModelLoadError
from rag.generate.decoding import DecodingConfig
from rag.generate.openai_generator import OpenAIGenerator, request_params

USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]


def chat_response(*texts: str, logprobs: list[list[float]] | None = None) -> dict[str, Any]:
    choices = []
    for i, text in enumerate(texts):
        choice: dict[str, Any] = {"index": i, "message": {"role": "assistant", "content": text}}
        if logprobs is not None:
            choice["logprobs"] = {"content": [{"token": "t", "logprob": v} for v in logprobs[i]]}
        choices.append(choice)
    return {"id": "x", "object": "chat.completion", "choices": choices, "usage": USAGE}


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    events: list[dict[str, Any]] | None = None  # server-sent events, then [DONE]
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeServer:
    """Answers each POST with the next scripted `Reply` (a canned chat reply when none is left)."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    script: list[Reply] = field(default_factory=list)

    def bodies(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests]


def _handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            server.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
            reply = server.script.pop(0) if server.script else Reply(body=chat_response("Paris [1]."))
            time.sleep(reply.delay)
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if reply.events is not None:
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for event in reply.events:
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
                return
            data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer(url="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    httpd.daemon_threads = True
    httpd.block_on_close = False  # type: ignore[attr-defined]
    fake.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield fake
    httpd.shutdown()
    httpd.server_close()


def generator(server: FakeServer, **kwargs: Any) -> OpenAIGenerator:
    return OpenAIGenerator(model="smol", base_url=server.url, backoff=0.01, **kwargs)


def test_greedy_chat_sends_only_standard_fields_and_parses_reply(server: FakeServer) -> None:
    out = generator(server).run(MESSAGES)
    assert out == {
        "reply": "Paris [1].",
        "replies": ["Paris [1]."],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3},
        "candidates": [],
    }
    [request] = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["body"] == {"model": "smol", "messages": MESSAGES, "max_tokens": 256, "temperature": 0.0}


def test_sampling_options_and_vllm_extras_travel_in_the_body(server: FakeServer) -> None:
    decoding = {"strategy": "sample", "temperature": 0.7, "top_p": 0.9, "sample_top_k": 40, "min_p": 0.05, "seed": 3}
    decoding |= {"repetition_penalty": 1.1, "presence_penalty": 0.5, "frequency_penalty": -0.5, "n": 2}
    decoding |= {"min_tokens": 2, "max_tokens": 32, "stop": ["\n\n"], "logprobs": 2}
    server.script.append(Reply(body=chat_response("a", "b")))
    out = generator(server, decoding=decoding).run(MESSAGES)
    assert out["replies"] == ["a", "b"]
    body = server.bodies()[0]
    expected = {k: v for k, v in decoding.items() if k not in ("strategy", "logprobs", "sample_top_k")}
    assert {k: body[k] for k in expected} == expected
    assert body["top_k"] == 40  # the OpenAI protocol's (vLLM's) name for sample_top_k
    assert body["logprobs"] is True and body["top_logprobs"] == 2


def test_per_request_override_changes_only_that_request(server: FakeServer) -> None:
    gen = generator(server, decoding={"strategy": "sample", "temperature": 0.9, "top_p": 0.8})
    gen.run(MESSAGES, decoding={"strategy": "greedy"})
    gen.run(MESSAGES)
    first, second = server.bodies()
    assert first["temperature"] == 0.0 and "top_p" not in first
    assert second["temperature"] == 0.9 and second["top_p"] == 0.8


def test_beam_search_uses_vllm_extras_and_keeps_n_beams(server: FakeServer) -> None:
    server.script.append(Reply(body=chat_response("best", "second", "third")))
    gen = generator(server, decoding={"strategy": "beam", "num_beams": 3, "n": 2, "length_penalty": 0.8})
    pieces: list[str] = []
    out = gen.run(MESSAGES, on_token=pieces.append)
    assert out["reply"] == "best" and out["replies"] == ["best", "second"]
    assert out["candidates"] == [{"text": "best", "score": None}, {"text": "second", "score": None}]
    assert pieces == ["best"]  # not streamed: the chosen reply, once
    body = server.bodies()[0]
    assert body["use_beam_search"] is True and body["n"] == 3 and body["length_penalty"] == 0.8
    assert body["temperature"] == 0.0


def test_best_of_n_picks_the_candidate_with_the_highest_mean_logprob(server: FakeServer) -> None:
    texts, logprobs = ("unsure", "confident", "meh"), [[-2.0, -3.0], [-0.1, -0.3], [-1.0]]
    server.script.append(Reply(body=chat_response(*texts, logprobs=logprobs)))
    out = generator(server, decoding={"strategy": "best_of_n", "best_of": 3, "temperature": 0.8}).run(MESSAGES)
    assert out["reply"] == "confident" and out["replies"] == ["confident", "meh", "unsure"]
    assert out["candidates"] == [
        {"text": "confident", "score": pytest.approx(-0.2)},
        {"text": "meh", "score": -1.0},
        {"text": "unsure", "score": -2.5},
    ]
    body = server.bodies()[0]
    assert body["n"] == 3 and body["logprobs"] is True and body["top_logprobs"] == 0


def test_json_schema_becomes_response_format(server: FakeServer) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    generator(server, decoding={"json_schema": schema}).run(MESSAGES)
    assert server.bodies()[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema},
    }


def test_completions_mode_posts_a_prompt(server: FakeServer) -> None:
    server.script.append(Reply(body={"choices": [{"index": 0, "text": " Paris."}], "usage": USAGE}))
    out = generator(server, mode="completions", decoding={"logprobs": 1}).run(MESSAGES)
    assert out["reply"] == "Paris."
    request = server.requests[0]
    assert request["path"] == "/v1/completions"
    assert request["body"]["prompt"] == "Be brief.\n\nCapital of France?"
    assert request["body"]["logprobs"] == 1 and "messages" not in request["body"]


def test_stream_yields_the_pieces_in_order(server: FakeServer) -> None:
    pieces = ["Par", "is", " [1]."]
    events = [{"choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces]
    events.append({"choices": [], "usage": USAGE})
    server.script.append(Reply(events=events))
    assert list(generator(server).stream(MESSAGES)) == pieces
    body = server.bodies()[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_run_with_on_token_streams_and_joins_the_pieces(server: FakeServer) -> None:
    pieces = [" Par", "is", " [1].\n"]
    events = [{"choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces]
    events.append({"choices": [], "usage": USAGE})
    server.script.append(Reply(events=events))
    received: list[str] = []
    out = generator(server).run(MESSAGES, on_token=received.append)
    assert received == pieces
    assert out == {
        "reply": "Paris [1].",
        "replies": [" Paris [1].\n"],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3},
        "candidates": [],
    }
    assert server.bodies()[0]["stream"] is True


def test_no_messages_sends_no_request(server: FakeServer) -> None:
    out = generator(server).run([], on_token=lambda piece: None)
    assert out["reply"] == "" and out["candidates"] == [] and list(generator(server).stream([])) == []
    assert server.requests == []


def test_an_error_event_mid_stream_is_raised(server: FakeServer) -> None:
    events = [{"choices": [{"index": 0, "delta": {"content": "Pa"}}]}, {"error": {"message": "engine died"}}]
    server.script.append(Reply(events=events))
    with pytest.raises(ModelLoadError, match="engine died"):
        list(generator(server).stream(MESSAGES))


def test_stream_refuses_beam_search(server: FakeServer) -> None:
    with pytest.raises(ConfigError, match="stream=true needs one answer"):
        list(generator(server, decoding={"strategy": "beam"}).stream(MESSAGES))
    assert server.requests == []


def test_retries_after_503_and_429_then_succeeds(server: FakeServer) -> None:
    server.script += [Reply(status=503, body={"error": {"message": "loading"}})]
    server.script += [Reply(status=429, body={"error": {"message": "busy"}}, headers={"Retry-After": "0"})]
    out = generator(server, max_retries=2).run(MESSAGES)
    assert out["reply"] == "Paris [1]." and len(server.requests) == 3


def test_gives_up_after_max_retries_with_the_server_message(server: FakeServer) -> None:
    server.script += [Reply(status=500, body={"error": {"message": "CUDA out of memory"}})] * 2
    with pytest.raises(ModelLoadError, match=r"HTTP 500: CUDA out of memory"):
        generator(server, max_retries=1).run(MESSAGES)
    assert len(server.requests) == 2


def test_rejected_parameter_is_a_config_error_with_the_server_message_and_no_retry(server: FakeServer) -> None:
    message = "top_k must be 0 (disable), or at least 1, got -5."
    server.script.append(Reply(status=400, body={"error": {"message": message, "type": "BadRequestError"}}))
    with pytest.raises(ConfigError, match=re.escape(f"HTTP 400: {message}")):
        generator(server, max_retries=3).run(MESSAGES)
    assert len(server.requests) == 1


def test_unknown_model_is_a_model_load_error(server: FakeServer) -> None:
    server.script.append(Reply(status=404, body={"error": {"message": "The model `smol` does not exist."}}))
    with pytest.raises(ModelLoadError, match=r"does not exist.*check base_url"):
        generator(server).run(MESSAGES)


def test_a_body_that_is_not_json_is_reported(server: FakeServer) -> None:
    server.script.append(Reply(body=b"<html>proxy error</html>"))
    with pytest.raises(ModelLoadError, match="not JSON: '<html>proxy error</html>'"):
        generator(server).run(MESSAGES)


def test_timeout_is_reported_with_the_limit(server: FakeServer) -> None:
    server.script.append(Reply(delay=5.0, body=chat_response("late")))
    started = time.perf_counter()
    with pytest.raises(ModelLoadError, match=r"did not answer within 0.2 s"):
        generator(server, timeout=0.2, max_retries=0).run(MESSAGES)
    assert time.perf_counter() - started < 4.0


def test_connection_refused_says_how_to_start_the_server() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gen = OpenAIGenerator(model="smol", base_url=f"http://127.0.0.1:{port}/v1", max_retries=1, backoff=0.01)
    with pytest.raises(
        ModelLoadError, match=rf"cannot reach http://127.0.0.1:{port}/v1/chat/completions: .*vllm serve smol"
    ):
        gen.run(MESSAGES)


def test_api_key_is_read_from_the_named_environment_variable(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_SERVER_KEY", "sk-test")
    gen = generator(server, api_key_env="MY_SERVER_KEY")
    gen.run(MESSAGES)
    assert server.requests[0]["auth"] == "Bearer sk-test"
    assert "sk-test" not in json.dumps(gen.to_dict())
    monkeypatch.delenv("MY_SERVER_KEY")
    generator(server, api_key_env="MY_SERVER_KEY").run(MESSAGES)
    assert server.requests[1]["auth"] is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": ""}, "model must be"),
        ({"base_url": "localhost:8000"}, "base_url must be an http(s) URL"),
        ({"timeout": 0}, "timeout must be a number of seconds > 0"),
        ({"max_retries": -1}, "max_retries must be an integer >= 0"),
        ({"mode": "chatt"}, "mode must be one of chat, completions"),
        ({"api_key_env": ""}, "api_key_env must be None or the name"),
        ({"decoding": {"strategy": "sampel"}}, "did you mean 'sample'?"),
        ({"decoding": {"prefix_caching": True}}, "--enable-prefix-caching"),
        ({"decoding": {"speculative": {"method": "ngram"}}}, "--speculative-config"),
        ({"decoding": {"strategy": "best_of_n", "scorer": "reranker"}}, "scorer 'mean_logprob'"),
    ],
)
def test_bad_settings_raise_config_error_before_any_request(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        OpenAIGenerator(**{"model": "smol", **kwargs})


def test_settings_round_trip_and_bad_messages() -> None:
    gen = OpenAIGenerator(model="smol", decoding={"strategy": "sample", "temperature": 0.5})
    assert gen.to_dict()["init"]["decoding"] == {"strategy": "sample", "temperature": 0.5}
    assert OpenAIGenerator(**gen.to_dict()["init"]) == gen
    with pytest.raises(ConfigError, match="messages must be a list of"):
        gen.run([{"content": "no role"}])


def test_request_params_for_a_strict_server_omit_unset_extras() -> None:
    assert request_params(DecodingConfig(max_tokens=8)) == {"max_tokens": 8, "temperature": 0.0}


def test_importing_the_module_does_not_import_httpx() -> None:
    code = "import sys, rag.generate.openai_generator, rag.generate.vllm_params; print('httpx' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_a_batch_sends_one_request_per_conversation_and_keeps_the_order(server: FakeServer) -> None:
    gen = generator(server)
    results = gen.generate_batch([MESSAGES, [], MESSAGES], {"max_tokens": 5}, concurrency=2)
    assert [r["reply"] for r in results] == ["Paris [1].", "", "Paris [1]."]
    assert len(server.requests) == 2 and all(body["max_tokens"] == 5 for body in server.bodies())
    with pytest.raises(ConfigError, match="top_p"):
        gen.generate_batch([MESSAGES], {"top_p": 2.0})
    assert len(server.requests) == 2
