"""`OpenAIGenerator`: generate through any OpenAI-compatible server (`vllm serve`, llama.cpp's server).

Requests go to ``{base_url}/chat/completions`` (or ``/completions`` with ``mode="completions"``). The
decoding options travel in the request body: the standard ones (temperature, top_p, n, seed, stop,
penalties, logprobs, ``response_format`` for a JSON schema) and vLLM's extras (top_k, min_p,
repetition_penalty, min_tokens, ``use_beam_search`` + length_penalty), the latter only when set, so a
strict server is not sent fields it does not know. Connection errors, 429 and 5xx are retried with
exponential backoff (honouring ``Retry-After``); a parameter the server rejects is a `ConfigError`
carrying the server's message. httpx is imported in `warm_up()`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from rag.core.errors import ConfigError, MissingDependencyError, ModelLoadError
from rag.generate.base import Generator
from rag.generate.decoding import GENERAL_OPTIONS, SAMPLING_OPTIONS, BackendSupport, DecodingConfig, check_supported

__all__ = ["OPENAI_SUPPORT", "OpenAIGenerator", "request_params"]

logger = logging.getLogger(__name__)

_MODES = ("chat", "completions")
_SAMPLING = frozenset({"temperature", *SAMPLING_OPTIONS, "n"})
_AT_SERVER_START = {
    "speculative": "set it when starting the server: vllm serve MODEL --speculative-config "
    '\'{"method": "ngram", "num_speculative_tokens": 5}\'',
    "prefix_caching": "set it when starting the server: vllm serve MODEL --enable-prefix-caching "
    "(or --no-enable-prefix-caching)",
    "quantization": "set it when starting the server: vllm serve MODEL --quantization METHOD",
}

OPENAI_SUPPORT = BackendSupport(
    name="openai",
    options={
        "greedy": GENERAL_OPTIONS,
        "sample": GENERAL_OPTIONS | _SAMPLING,
        "beam": frozenset({"max_tokens", "seed", "n", "num_beams", "length_penalty"}),
        "best_of_n": GENERAL_OPTIONS | _SAMPLING | {"best_of"},
    },
    reasons={
        **_AT_SERVER_START,
        "scorer": "the openai backend scores candidates by mean token log-probability (scorer 'mean_logprob')",
        "beam.early_stopping": "vLLM's server beam search has no early stopping",
    },
)


def request_params(config: DecodingConfig, mode: str = "chat") -> dict[str, Any]:
    """The request-body fields for `config` (OpenAI fields plus vLLM's extras when set)."""
    check_supported(config, OPENAI_SUPPORT)
    body: dict[str, Any] = {"max_tokens": config.max_tokens, "temperature": config.effective_temperature}
    if config.strategy == "beam":
        return body | {"use_beam_search": True, "n": config.num_beams, "length_penalty": config.length_penalty}
    used = config.used_options()
    for name, field in (("top_p", "top_p"), ("top_k", "sample_top_k"), ("min_p", "min_p"), ("seed", "seed")):
        if field in used:
            body[name] = getattr(config, field)
    for name in ("presence_penalty", "frequency_penalty"):
        if name in used:
            body[name] = getattr(config, name)
    for name in ("repetition_penalty", "min_tokens"):  # vLLM extras
        if name in used:
            body[name] = getattr(config, name)
    n = config.best_of if config.strategy == "best_of_n" else config.n
    if n > 1:
        body["n"] = n
    if config.stop:
        body["stop"] = list(config.stop)
    logprobs = 0 if config.strategy == "best_of_n" and config.logprobs is None else config.logprobs
    if logprobs is not None:
        body |= {"logprobs": True, "top_logprobs": logprobs} if mode == "chat" else {"logprobs": logprobs}
    if config.json_schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": config.json_schema},
        }
    return body


class OpenAIGenerator(Generator):
    """Reply to chat messages through an OpenAI-compatible HTTP server.

    `decoding` holds `DecodingConfig` options (validated here, before any request); `run` and `stream`
    take per-request overrides. `api_key_env` names the environment variable holding the API key (the
    key itself is never a setting); when it is unset or empty no key is sent. `timeout` bounds connecting
    and each wait for data (not the whole reply); `backoff` is the first retry's delay, doubled each time.
    `replies` lists every returned sequence (n samples, beams, or best-of-N candidates), best first
    where ranked; `candidates` lists them as ``{"text", "score"}`` for beam and best-of-N (and n > 1 samples),
    the score being the mean token log-probability when the server returned log-probabilities, else None
    (vLLM's server does not return beam scores); it is empty for one greedy or sampled reply.
    """

    outputs: ClassVar[dict[str, Any]] = {
        "reply": str,
        "replies": list[str],
        "usage": dict[str, int],
        "candidates": list[dict[str, Any]],
    }

    def __init__(
        self,
        model: str,
        base_url: str = "http://127.0.0.1:8000/v1",
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_retries: int = 2,
        backoff: float = 0.5,
        mode: str = "chat",
        decoding: dict[str, Any] | None = None,
    ) -> None:
        problems = self.model_problem(model, "the name the server serves")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            problems.append(f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {base_url!r}")
        if api_key_env is not None and (not isinstance(api_key_env, str) or not api_key_env):
            problems.append(f"api_key_env must be None or the name of an environment variable, got {api_key_env!r}")
        for name, value in (("timeout", timeout), ("backoff", backoff)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                problems.append(f"{name} must be a number of seconds > 0, got {value!r}")
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            problems.append(f"max_retries must be an integer >= 0, got {max_retries!r}")
        if mode not in _MODES:
            problems.append(f"mode must be one of {', '.join(_MODES)}, got {mode!r}")
        if problems:
            raise ConfigError("OpenAIGenerator: " + "; ".join(problems))
        self.decoding = self._decoding_settings(decoding)
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self.mode = mode
        self._client: Any = None

    def warm_up(self) -> None:
        """Create the HTTP client (once); reads the API key from `api_key_env`."""
        if self._client is not None:
            return
        try:
            import httpx
        except ImportError as exc:
            raise MissingDependencyError("httpx", "openai", "OpenAIGenerator") from exc
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(base_url=self.base_url, timeout=self.timeout, headers=headers)

    def run(
        self,
        messages: list[dict[str, str]],
        decoding: dict[str, Any] | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Reply to chat `messages`; `decoding` overrides options for this request only.

        With `on_token`, greedy and sample (n = 1) replies are streamed and each piece is passed to it as it
        arrives; other strategies pass the whole chosen reply once. The pieces join to the reply before
        stripping. An empty message list means there is nothing to answer from: no request is sent.
        """
        config = self._config(decoding)
        if not messages:
            return {"reply": "", "replies": [], "usage": _usage({}), "candidates": []}
        if on_token is not None and config.strategy in ("greedy", "sample") and config.n == 1:
            usage: dict[str, Any] = {}
            pieces = []
            for piece in self._stream(messages, config.merged(stream=True), usage):
                on_token(piece)
                pieces.append(piece)
            reply = "".join(pieces)
            return {"reply": reply.strip(), "replies": [reply], "usage": _usage(usage), "candidates": []}
        body = self._body(messages, config)
        with self._open(body) as response:
            try:
                data = json.loads(response.read())
            except ValueError as exc:
                raise ModelLoadError(
                    f"{self._url} answered with a body that is not JSON: {response.text[:200]!r}"
                ) from exc
        choices = data.get("choices") or []
        if not choices:
            raise ModelLoadError(f"{self._url}: the server returned no choices: {json.dumps(data)[:500]}")
        ranked = [(self._text(choice), _mean_logprob(choice)) for choice in choices]
        if config.strategy == "best_of_n":
            ranked.sort(key=lambda pair: math.inf if pair[1] is None else -pair[1])
        ranked = ranked[: config.n] if config.strategy == "beam" else ranked
        texts = [text for text, _ in ranked]
        if on_token is not None:
            on_token(texts[0])
        listed = config.strategy in ("beam", "best_of_n") or len(ranked) > 1
        candidates = [{"text": text.strip(), "score": score} for text, score in ranked] if listed else []
        usage = data.get("usage") or {}
        return {"reply": texts[0].strip(), "replies": texts, "usage": _usage(usage), "candidates": candidates}

    def generate_batch(
        self, batch: list[list[dict[str, str]]], decoding: dict[str, Any] | None = None, concurrency: int = 16
    ) -> list[dict[str, Any]]:
        """Reply to every conversation in `batch`, at most `concurrency` requests in flight; results in order.

        Concurrent requests are what a server with continuous batching (vLLM) needs to batch them.
        """
        from concurrent.futures import ThreadPoolExecutor

        self._batch_config(batch, decoding)  # bad input fails once, before any request
        self.warm_up()
        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(batch)))) as pool:
            return list(pool.map(lambda messages: self.run(messages, decoding), batch))

    def stream(self, messages: list[dict[str, str]], decoding: dict[str, Any] | None = None) -> Iterator[str]:
        """Yield the reply's text pieces as the server sends them (server-sent events)."""
        config = self._config({**(decoding or {}), "stream": True})
        if messages:
            yield from self._stream(messages, config, {})

    def _stream(self, messages: list[dict[str, str]], config: DecodingConfig, usage: dict[str, Any]) -> Iterator[str]:
        body = self._body(messages, config) | {"stream": True, "stream_options": {"include_usage": True}}
        with self._open(body) as response:
            yield from self._events(response, usage)

    @property
    def _url(self) -> str:
        return f"{self.base_url}/{'chat/completions' if self.mode == 'chat' else 'completions'}"

    def check_decoding(self, config: DecodingConfig) -> None:
        check_supported(config, OPENAI_SUPPORT)

    def _body(self, messages: list[dict[str, str]], config: DecodingConfig) -> dict[str, Any]:
        self._check_messages(messages)
        if self.mode == "chat":
            prompt: dict[str, Any] = {"messages": messages}
        else:
            prompt = {"prompt": "\n\n".join(m["content"] for m in messages)}
        return {"model": self.model, **prompt, **request_params(config, self.mode)}

    def _text(self, choice: dict[str, Any]) -> str:
        if self.mode == "chat":
            return str((choice.get("message") or {}).get("content") or "")
        return str(choice.get("text") or "")

    def _events(self, response: Any, usage: dict[str, Any]) -> Iterator[str]:
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                return
            event = json.loads(payload)
            if "error" in event:
                raise ModelLoadError(f"{self._url}: the server failed mid-stream: {_error_message(event)}")
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content") if self.mode == "chat" else choice.get("text")
                if piece:
                    yield piece
            if event.get("usage"):
                usage.update(event["usage"])

    @contextlib.contextmanager
    def _open(self, body: dict[str, Any]) -> Iterator[Any]:
        """A successful (streamed) response to `body`; retries connection errors, timeouts, 429 and 5xx."""
        self.warm_up()
        import httpx

        path = "/chat/completions" if self.mode == "chat" else "/completions"
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = self._client.send(self._client.build_request("POST", path, json=body), stream=True)
            except httpx.TimeoutException as exc:
                if last:
                    raise self._timeout(exc, attempt + 1) from exc
                delay, why = self.backoff * 2**attempt, f"timed out ({type(exc).__name__})"
            except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
                if last:
                    raise ModelLoadError(
                        f"cannot reach {self._url}: {exc or type(exc).__name__} (after {attempt + 1} attempt(s)); "
                        f"start the server, e.g. `vllm serve {self.model}`, or fix base_url"
                    ) from exc
                delay, why = self.backoff * 2**attempt, str(exc) or type(exc).__name__
            else:
                if response.status_code < 400:
                    break
                response.read()
                response.close()
                if last or not (response.status_code == 429 or response.status_code >= 500):
                    raise _status_error(self._url, response)
                delay = _retry_after(response) or self.backoff * 2**attempt
                why = f"HTTP {response.status_code}"
            logger.warning("%s: %s; retry %d of %d in %.2f s", self._url, why, attempt + 1, self.max_retries, delay)
            time.sleep(delay)
        try:
            yield response
        except httpx.TimeoutException as exc:
            raise self._timeout(exc, attempt + 1) from exc
        finally:
            response.close()

    def _timeout(self, exc: Exception, attempts: int) -> ModelLoadError:
        return ModelLoadError(
            f"{self._url} did not answer within {self.timeout:g} s ({type(exc).__name__}, {attempts} attempt(s)); "
            "raise timeout or check the server's load"
        )


def _status_error(url: str, response: Any) -> Exception:
    message = f"{url} answered HTTP {response.status_code}: {_error_message(_json_or_text(response))}"
    if response.status_code in (400, 422):
        return ConfigError(f"the server rejected the request: {message}; change the decoding options it names")
    if response.status_code in (401, 403):
        return ConfigError(f"{message}; put the API key in the environment variable named by api_key_env")
    if response.status_code == 404:
        return ModelLoadError(f"{message}; check base_url (it usually ends in /v1) and the model name")
    return ModelLoadError(message)


def _json_or_text(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _error_message(data: Any) -> str:
    """The message of an OpenAI error envelope ``{"error": {"message", ...}}``, else the raw body."""
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        data = json.dumps(data)
    return str(data).strip()[:1000] or "(empty body)"


def _retry_after(response: Any) -> float | None:
    try:
        return max(float(response.headers.get("retry-after", "")), 0.0)
    except ValueError:
        return None


def _mean_logprob(choice: dict[str, Any]) -> float | None:
    logprobs = choice.get("logprobs")
    if not logprobs:
        return None
    if "content" in logprobs:  # chat
        values = [t["logprob"] for t in logprobs.get("content") or []]
    else:  # completions
        values = [v for v in logprobs.get("token_logprobs") or [] if v is not None]
    return sum(values) / len(values) if values else -math.inf


def _usage(usage: dict[str, Any]) -> dict[str, int]:
    return {
        "prompt_tokens": int(usage.get("prompt_tokens") or 0),
        "completion_tokens": int(usage.get("completion_tokens") or 0),
    }
