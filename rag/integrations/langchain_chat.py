"""A generator of ours as a LangChain chat model (`BaseChatModel`, so a Runnable in any LCEL chain).

`RagChatModel` wraps any component honouring the generator contract, ``run(messages, decoding=None,
on_token=None) -> {"reply", "usage", ...}`` (`TransformersGenerator`, `LlamaCppGenerator`, `VLLMGenerator`,
`OpenAIGenerator`, or one of your own). LangChain's system, human and AI messages become
``{"role", "content"}`` messages; tool messages and non-text content are refused.

LangChain's standard parameters map onto `DecodingConfig` options, per call or on the model:
``max_tokens`` -> ``max_tokens``; ``stop`` -> ``stop``; ``temperature`` 0 -> strategy ``greedy``,
above 0 -> strategy ``sample`` (kept when the decoding already says ``best_of_n`` or ``beam``) with that
temperature. ``decoding`` (on the model, or ``invoke(..., decoding={...})``) sets any other option and is
applied first. Replies carry ``usage_metadata`` (the generator's token counts) and ``model_name``;
streaming sends the text as the generator produces it (``on_token``), the usage on the last chunk.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from rag.core.errors import MissingDependencyError
from rag.core.streaming import stream_call

try:
    from langchain_core.callbacks import CallbackManagerForLLMRun
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ChatMessage, UsageMetadata
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
    from pydantic import Field, model_validator
except ImportError as exc:  # pragma: no cover - exercised with langchain-core hidden
    raise MissingDependencyError("langchain-core", "langchain", "the LangChain integration") from exc

from rag.core.component import Component
from rag.core.errors import ConfigError, PipelineError
from rag.core.pipeline import Pipeline
from rag.core.serialization import load_pipeline

__all__ = ["RagChatModel", "as_chat_model", "to_chat_messages"]

_ROLES = {"system": "system", "human": "user", "ai": "assistant"}
_CALL_OPTIONS = ("max_tokens", "temperature", "decoding")


class RagChatModel(BaseChatModel):
    """A generator component of ours as a LangChain chat model (see the module docstring)."""

    generator: Any
    """The generator component (anything honouring ``run(messages, decoding=None, on_token=None)``)."""
    decoding: dict[str, Any] = Field(default_factory=dict)
    max_tokens: int | None = None
    temperature: float | None = None
    stop: list[str] | None = None
    streaming: bool = False
    """When true, `invoke` streams too (callbacks see each piece)."""

    @model_validator(mode="after")
    def _check_generator(self) -> RagChatModel:
        generator = self.generator
        if not (isinstance(generator, Component) and "reply" in generator.outputs and callable(generator.run)):
            raise ConfigError(
                f"RagChatModel: generator must be a rag generator component (with a 'reply' output), got {generator!r}"
            )
        return self

    @property
    def _llm_type(self) -> str:
        return "rag"

    @property
    def model_name(self) -> str:
        """The generator's model setting, else its class name."""
        return str(self.generator.settings.get("model") or type(self.generator).__name__)

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"generator": self.generator.to_dict(), "decoding": self.decoding}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "rag"
        params["ls_model_name"] = kwargs["model"] if isinstance(kwargs.get("model"), str) else self.model_name
        if self.max_tokens is not None:
            params["ls_max_tokens"] = self.max_tokens
        return params

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        chat, decoding = self._request(messages, stop, kwargs)
        on_token = None
        if run_manager is not None:
            on_token = run_manager.on_llm_new_token
        result = self.generator.run(chat, decoding or None, on_token)
        message = AIMessage(
            content=result["reply"], usage_metadata=_usage(result), response_metadata=self._metadata(result)
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        chat, decoding = self._request(messages, stop, kwargs)
        for kind, value in stream_call(
            lambda on_token: self.generator.run(chat, decoding or None, on_token), "rag-langchain-stream"
        ):
            if kind == "piece":
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=value))
                if run_manager is not None:
                    run_manager.on_llm_new_token(value, chunk=chunk)
                yield chunk
            else:
                last = AIMessageChunk(
                    content="",
                    usage_metadata=_usage(value),
                    response_metadata=self._metadata(value),
                    chunk_position="last",
                )
                yield ChatGenerationChunk(message=last)

    def _request(
        self, messages: Sequence[BaseMessage], stop: list[str] | None, kwargs: Mapping[str, Any]
    ) -> tuple[list[dict[str, str]], dict[str, Any]]:
        unknown = sorted(set(kwargs) - set(_CALL_OPTIONS))
        if unknown:
            raise ConfigError(
                f"RagChatModel: unsupported call option(s) {', '.join(unknown)}; per call it takes "
                f"{', '.join(_CALL_OPTIONS)} and stop (tool calling is not supported)"
            )
        extra = kwargs.get("decoding") or {}
        if not isinstance(extra, Mapping):
            raise ConfigError(f"RagChatModel: decoding must be a mapping of DecodingConfig options, got {extra!r}")
        decoding: dict[str, Any] = {**self.decoding, **extra}
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if max_tokens is not None:
            decoding["max_tokens"] = max_tokens
        temperature = kwargs.get("temperature", self.temperature)
        if temperature is not None:
            decoding.update(_temperature(temperature, decoding.get("strategy")))
        stops = stop if stop is not None else self.stop
        if stops:
            decoding["stop"] = list(stops)
        return to_chat_messages(messages), decoding

    def _metadata(self, result: Mapping[str, Any]) -> dict[str, Any]:
        metadata: dict[str, Any] = {"model_name": self.model_name, "model_provider": "rag"}
        if result.get("candidates"):
            metadata["candidates"] = list(result["candidates"])
        return metadata


def to_chat_messages(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    """LangChain messages as our ``{"role", "content"}`` chat messages (system, user, assistant)."""
    out = []
    for message in messages:
        role = message.role if isinstance(message, ChatMessage) else _ROLES.get(message.type)
        if role not in ("system", "user", "assistant"):
            raise ConfigError(
                f"RagChatModel: cannot send a {type(message).__name__} (role {role or message.type!r}); "
                "only system, human and AI messages with text are supported (no tool calls)"
            )
        out.append({"role": role, "content": _text(message)})
    return out


def as_chat_model(
    pipeline: Pipeline | str | os.PathLike[str] = "default",
    *,
    component: str | None = None,
    allowed: Collection[str] = (),
    **options: Any,
) -> RagChatModel:
    """The generator of `pipeline` (its one component with a `reply` output, or `component`) as a chat model.

    `options` are `RagChatModel` fields: ``max_tokens``, ``temperature``, ``stop``, ``decoding``, ``streaming``.
    """
    if not isinstance(pipeline, Pipeline):
        pipeline = load_pipeline(pipeline, allowed)
    names = [name for name, c in pipeline.components.items() if "reply" in c.outputs]
    if component is None and len(names) != 1:
        raise PipelineError(
            f"pipeline '{pipeline.name}' has {len(names)} generators (components with a 'reply' output): "
            f"{', '.join(names) or 'none'}; name one with component=..."
        )
    name = component or names[0]
    if name not in names:
        raise PipelineError(
            f"pipeline '{pipeline.name}' has no generator named '{name}' (generators: {', '.join(names) or 'none'})"
        )
    return RagChatModel(generator=pipeline.components[name], **options)


def _text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        else:
            kind = block.get("type") if isinstance(block, dict) else type(block).__name__
            raise ConfigError(f"RagChatModel: only text content can be sent to the generator, got a {kind!r} block")
    return "".join(parts)


def _temperature(value: float, strategy: str | None) -> dict[str, Any]:
    if value == 0:
        return {"strategy": "beam" if strategy == "beam" else "greedy", "temperature": None}
    return {"strategy": strategy if strategy in ("sample", "best_of_n", "beam") else "sample", "temperature": value}


def _usage(result: Mapping[str, Any]) -> UsageMetadata:
    usage = result.get("usage") or {}
    prompt, completion = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
    return UsageMetadata(input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion)
