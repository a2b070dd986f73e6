"""`Generator`: the contract every generator backend keeps, and the checks they share, written once.

A generator is a component that replies to chat messages:

- inputs: `messages` (a list of ``{"role", "content"}`` dicts; an empty list means there is nothing to answer
  from: the reply is empty and no model runs), `decoding` (per-request `DecodingConfig` overrides) and
  `on_token` (receives the reply's text as it is generated);
- outputs: at least `reply` (stripped), `usage` (``prompt_tokens``, ``completion_tokens``) and `candidates`;
- `decoding` settings are validated in the constructor against what the backend can do (`check_decoding`),
  so a pipeline asking for something the backend cannot honour fails when it is built, not mid-answer;
- `answer_modes` lists the answer modes it can serve (`rag.answer.builder.ANSWER_MODES`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from rag.core.component import Component
from rag.core.errors import ConfigError
from rag.core.streaming import stream_call
from rag.generate.decoding import DecodingConfig

__all__ = ["Generator", "Messages"]

Messages = list[dict[str, str]]


class Generator(Component):
    """Base class of generator backends (see the module docstring)."""

    answer_modes: ClassVar[tuple[str, ...] | None] = ("extractive", "generate")
    """Grounded mode needs citation markers enforced while tokens are chosen; backends that do it add it."""
    decoding: DecodingConfig

    def check_decoding(self, config: DecodingConfig) -> None:
        """Raise a `ConfigError` naming what `config` asks that this backend cannot do (nothing here)."""

    def _decoding_settings(self, decoding: dict[str, Any] | None) -> DecodingConfig:
        """The constructor's `decoding` setting, parsed and checked against the backend."""
        config = DecodingConfig.from_dict(decoding or {})
        self.check_decoding(config)
        return config

    def _config(self, overrides: dict[str, Any] | None) -> DecodingConfig:
        """The generator's decoding settings with one request's `overrides`, checked against the backend."""
        config = self.decoding.merged(**overrides) if overrides else self.decoding
        self.check_decoding(config)
        return config

    def _check_messages(self, messages: Any) -> None:
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and {"role", "content"} <= m.keys() for m in messages
        ):
            raise ConfigError(
                f"{type(self).__name__}: messages must be a list of {{'role': ..., 'content': ...}} dicts, "
                f"got {messages!r}"
            )

    def _batch_config(self, batch: Any, decoding: dict[str, Any] | None) -> DecodingConfig:
        """The decoding settings of one `generate_batch` call, after checking `batch` (a list of message lists; an
        empty one is allowed), so bad input fails before any conversation is sent."""
        config = self._config(decoding)
        if not isinstance(batch, list):
            raise ConfigError(f"{type(self).__name__}: batch must be a list of message lists, got {batch!r}")
        for messages in batch:
            if messages:
                self._check_messages(messages)
        return config

    @staticmethod
    def model_problem(model: Any, what: str = "a non-empty model name or folder") -> list[str]:
        """[the problem with a `model` setting] when it is not a non-empty string, else []."""
        return [] if isinstance(model, str) and model.strip() else [f"model must be {what}, got {model!r}"]

    @staticmethod
    def empty_reply() -> dict[str, Any]:
        """The reply to an empty message list: nothing to answer from."""
        return {"reply": "", "usage": {"prompt_tokens": 0, "completion_tokens": 0}, "candidates": []}

    def _streamed(
        self,
        messages: Messages,
        decoding: dict[str, Any] | None,
        generate: Callable[[Messages, DecodingConfig, Callable[[str], None]], Any],
    ) -> Iterator[str]:
        """`stream` for a backend whose `generate(messages, config, on_token)` reports pieces as it goes: the pieces,
        from a worker thread; closing the iterator stops generation at the next piece."""
        config = self._config({**(decoding or {}), "stream": True})
        if not messages:
            return
        self._check_messages(messages)
        items = stream_call(lambda send: generate(messages, config, send), f"{type(self).__name__}.stream")
        with contextlib.closing(items):
            yield from (value for kind, value in items if kind == "piece")
