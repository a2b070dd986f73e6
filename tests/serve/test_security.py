"""API keys, body limits, CORS, the start-up warning, and failures that never leak internals."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from rag.serve.keys import KeyRing
from rag.serve.settings import ServerSettings, load_api_keys
from tests.serve.fakes import FailingGenerator, answer_pipeline
from tests.serve.helpers import assert_envelope, serving

PROTECTED = [
    ("POST", "/v1/query", {"query": "otters"}),
    ("POST", "/v1/answer", {"question": "otters"}),
    ("POST", "/v1/chat/completions", {"model": "echo", "messages": [{"role": "user", "content": "otters"}]}),
    ("POST", "/v1/completions", {"model": "echo", "prompt": "otters"}),
    ("GET", "/v1/models", None),
    ("GET", "/v1/documents", None),
    ("GET", "/v1/jobs/" + "0" * 32, None),
    ("GET", "/metrics", None),
]


def test_api_keys_guard_every_endpoint_but_health(echo_index: Path) -> None:
    with serving(echo_index, answer_pipeline(), api_keys=("k-one", "k-two")) as client:
        for method, path, body in PROTECTED:
            missing = client.request(method, path, json=body)
            assert assert_envelope(missing, 401)["code"] == "missing_api_key", path
            assert missing.headers["www-authenticate"] == "Bearer"
            wrong = client.request(method, path, json=body, headers={"Authorization": "Bearer k-three"})
            assert assert_envelope(wrong, 403)["type"] == "permission_error", path
            good = client.request(method, path, json=body, headers={"Authorization": "Bearer k-two"})
            assert good.status_code in (200, 404), (path, good.text)  # 404: the made-up job id
        basic = client.get("/v1/models", headers={"Authorization": "Basic azpvbmU="})
        assert_envelope(basic, 401)
        for path in ("/healthz", "/readyz", "/"):
            assert client.get(path).status_code == 200, path


def test_api_keys_from_environment_and_file(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("# team keys\nfile-key\n\n  other-key  \n")
    env = load_api_keys({"RAG_API_KEYS": "env-a, env-b,,"})
    assert env == ("env-a", "env-b") and load_api_keys({}) == ()
    ring = KeyRing(env, keys_file)
    for key in ("env-a", "env-b", "file-key", "other-key"):
        found = ring.find(key)
        assert found is not None and not found.scoped, key
    assert ring.find("file-ke") is None and ring.find("") is None and ring.find("env-a ") is None
    assert not KeyRing() and KeyRing((), keys_file)
    settings = ServerSettings(index=tmp_path, api_keys=env, api_keys_file=str(keys_file), pipelines=("default",))
    again = ServerSettings.from_json(settings.to_json(), {"RAG_API_KEYS": "env-a"})
    assert again.api_keys == ("env-a",) and again.api_keys_file == str(keys_file)
    assert "env-b" not in settings.to_json()


def test_body_limit_declared_and_streamed(echo_index: Path) -> None:
    with serving(echo_index, answer_pipeline(), max_body_mb=0.001) as client:
        big = {"query": "x" * 2000}
        assert assert_envelope(client.post("/v1/query", json=big), 413)["code"] == "body_too_large"

        def chunks():  # no content-length: the limit is counted as the body arrives
            yield b'{"query": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'"}'

        streamed = client.post("/v1/query", content=chunks(), headers={"content-type": "application/json"})
        assert_envelope(streamed, 413)
        assert client.post("/v1/query", json={"query": "otters"}).status_code == 200


def test_cors_is_off_by_default_and_on_for_listed_origins(echo_index: Path) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    with serving(echo_index, answer_pipeline()) as client:
        response = client.post("/v1/query", json={"query": "otters"}, headers={"Origin": "https://app.example"})
        assert "access-control-allow-origin" not in response.headers
        assert "access-control-allow-origin" not in client.options("/v1/query", headers=preflight).headers
    with serving(echo_index, answer_pipeline(), cors_origins=("https://app.example",)) as client:
        response = client.post("/v1/query", json={"query": "otters"}, headers={"Origin": "https://app.example"})
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        other = client.post("/v1/query", json={"query": "otters"}, headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_unexpected_errors_never_leak_internals(echo_index: Path) -> None:
    with serving(echo_index, answer_pipeline(FailingGenerator(words=0))) as client:
        response = client.post("/v1/answer", json={"question": "otters"})
        error = assert_envelope(response, 500)
        assert "secret" not in response.text and "passwd" not in response.text and "RuntimeError" not in response.text
        assert error["type"] == "server_error"
    with serving(echo_index, answer_pipeline(FailingGenerator(words=2))) as client:  # fails mid-stream
        text = client.post("/v1/answer", json={"question": "otters", "stream": True}).text
        assert text.count("event: token") == 2 and "event: error" in text and "secret" not in text


def test_no_pipeline_file_or_class_from_requests(client: httpx.Client) -> None:
    chat = {"model": "default", "messages": [{"role": "user", "content": "otters"}]}
    assert assert_envelope(client.post("/v1/chat/completions", json=chat), 404, "model")["code"] == "model_not_found"
    chat["model"] = "/etc/passwd"
    assert_envelope(client.post("/v1/chat/completions", json=chat), 404, "model")
    chat["model"] = "os.system"
    assert_envelope(client.post("/v1/chat/completions", json=chat), 404, "model")


def test_warning_without_keys_on_a_public_host(echo_index: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="rag.serve.app"):
        with serving(echo_index, answer_pipeline(), host="0.0.0.0"):  # the setting only: it binds 127.0.0.1
            pass
        assert "no API keys" in caplog.text
        caplog.clear()
        with serving(echo_index, answer_pipeline(), host="127.0.0.1"):
            pass
        with serving(echo_index, answer_pipeline(), host="0.0.0.0", api_keys=("k",)):
            pass
        assert "no API keys" not in caplog.text
