"""OpenAI-compatible endpoints: `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/models`.

`model` names one of the pipelines configured at start-up: its name in the default collection, COLLECTION/NAME in
another (or its name, with the extra field `collection`); the key's scope is ANDed into `filters`. The answer's
citations travel as an
extra `citations` field of the completion (and of the last streamed chunk), in the native shape, with
`abstained`, `answerability`, `claims` and `retracted`; requests may set rag's `answer_mode` and `filters`
(extra fields).
"""

from __future__ import annotations

import base64
import functools
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from rag.core.errors import RagError
from rag.core.types import Answer
from rag.serve.auth import api_key_of
from rag.serve.collections import Collections
from rag.serve.errors import ApiError, ErrorEnvelope, envelope, error_responses, from_rag_error
from rag.serve.keys import ApiKey, KeyRing
from rag.serve.metrics import Metrics
from rag.serve.openai_protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    CompletionChunk,
    CompletionRequest,
    EmbeddingList,
    EmbeddingRequest,
    GenerationRequest,
    ModelCard,
    ModelList,
    TextCompletion,
    last_user_message,
    openai_decoding,
)
from rag.serve.protocol import generator_decoding
from rag.serve.routes import SSE_HEADERS, collect, start_stream
from rag.serve.service import ServedPipeline
from rag.serve.streaming import event_stream, json_data, sse_event

__all__ = ["STREAM_MODELS", "openai_router"]

STREAM_MODELS: list[type[BaseModel]] = [ChatCompletionChunk, CompletionChunk]
"""Models that only streamed events use (the OpenAPI document's components must hold them)."""

_NO_MODEL = (404, "No served pipeline or collection has this name for this key (`model_not_found`, see /v1/models)")
_CANNOT_ANSWER = (
    400,
    "The pipeline cannot answer as asked: it only retrieves (`no_answer`) or cannot honour the settings "
    "(`invalid_value`)",
)
_GENERATION_ERRORS = error_responses(_CANNOT_ANSWER, _NO_MODEL, 413, 422, 500, 502, 503)


def _generation_responses(chunk: type[ChatCompletionChunk | CompletionChunk]) -> dict[int | str, dict[str, Any]]:
    """A completion, or with stream=true its chunks (`data: {...}`), an error envelope if it fails, then `[DONE]`."""
    data = {"anyOf": [{"const": "[DONE]"}, json_data(chunk, ErrorEnvelope)]}
    stream = event_stream({"message": data})
    description = "The completion, or with stream=true its chunks, the last with citations, then `[DONE]`"
    return {200: {"description": description, "content": {"text/event-stream": stream}}, **_GENERATION_ERRORS}


logger = logging.getLogger(__name__)


def openai_router(collections: Collections, metrics: Metrics, ring: KeyRing) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["openai"])
    settings = collections.settings
    identified = Depends(api_key_of(ring))

    @router.get("/models", response_model=ModelList, summary="The served pipelines this key may use")
    async def models(key: ApiKey = identified) -> Response:
        return JSONResponse({"object": "list", "data": collections.models(key)})

    def card(model_id: str, key: ApiKey) -> Response:
        collection, served = collections.model(model_id, None, key)
        started = collection.service.started
        return JSONResponse({"id": served.model, "object": "model", "created": started, "owned_by": "rag"})

    @router.get(
        "/models/{model_id}",
        response_model=ModelCard,
        summary="One served pipeline",
        responses=error_responses(404, 500),
    )
    async def model(model_id: str, key: ApiKey = identified) -> Response:
        return card(model_id, key)

    @router.get(
        "/models/{collection}/{model_id}",
        response_model=ModelCard,
        summary="One served pipeline of a collection",
        responses=error_responses(404, 500),
    )
    async def collection_model(collection: str, model_id: str, key: ApiKey = identified) -> Response:
        return card(f"{collection}/{model_id}", key)

    async def run(
        body: GenerationRequest, question: str, max_tokens: int | None, request: Request, kind: str, key: ApiKey
    ) -> Response:
        collection, served = collections.model(body.model, body.collection, key)
        service = collection.service
        decoding: dict[str, Any] = {}
        if "decoding" in served.pipeline.inputs:
            base = generator_decoding(served.pipeline)
            decoding = openai_decoding(body, base, max_tokens, settings.max_tokens)
        call = functools.partial(
            service.ask,
            served,
            question,
            None,
            decoding,
            answer_mode=body.answer_mode,
            filters=body.filters,
            scope=key.scope(),
        )
        header = {"id": f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}", "created": int(time.time())}
        header["model"] = served.model
        if body.stream:
            first, stream = await start_stream(call)
            usage = bool(body.stream_options and body.stream_options.include_usage)
            events = _chunks(first, stream, header, kind, max_tokens, usage, served, metrics)
            return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)
        answer = await collect(call, request)
        metrics.answered(served.model, answer)
        if kind == "chat":
            choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": answer.text}}
        else:
            choice = {"index": 0, "text": answer.text}
        choice |= {"finish_reason": _finish_reason(answer, max_tokens), "logprobs": None}
        obj = "chat.completion" if kind == "chat" else "text_completion"
        body_out = header | {"object": obj, "choices": [choice], "usage": _usage(answer)}
        return JSONResponse(body_out | _grounding(answer))

    @router.post(
        "/chat/completions",
        response_model=ChatCompletion,
        summary="OpenAI chat completions, answered from the index",
        responses=_generation_responses(ChatCompletionChunk),
    )
    async def chat_completions(body: ChatCompletionRequest, request: Request, key: ApiKey = identified) -> Response:
        question = last_user_message(body.messages, settings.max_query_chars)
        return await run(body, question, body.max_completion_tokens or body.max_tokens, request, "chat", key)

    @router.post(
        "/completions",
        response_model=TextCompletion,
        summary="OpenAI completions: the prompt is the question",
        responses=_generation_responses(CompletionChunk),
    )
    async def completions(body: CompletionRequest, request: Request, key: ApiKey = identified) -> Response:
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if len(prompts) != 1 or not prompts[0].strip():
            raise ApiError(422, "prompt must be one non-empty string", param="prompt")
        if len(prompts[0]) > settings.max_query_chars:
            raise ApiError(422, f"prompt is longer than {settings.max_query_chars} characters", param="prompt")
        return await run(body, prompts[0], body.max_tokens, request, "completion", key)

    @router.post(
        "/embeddings",
        response_model=EmbeddingList,
        summary="Embeddings from a pipeline's dense embedding model",
        responses=error_responses(
            (400, "The pipeline has no dense embedding model (`no_embedder`)"), _NO_MODEL, 413, 422, 500, 503
        ),
    )
    async def embeddings(body: EmbeddingRequest, key: ApiKey = identified) -> Response:
        collection, served = collections.model(body.model, body.collection, key)
        service = collection.service
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        if len(texts) > settings.max_embedding_inputs:
            raise ApiError(422, f"at most {settings.max_embedding_inputs} inputs per request", param="input")
        if any(len(t) > settings.max_query_chars * 4 for t in texts):
            raise ApiError(422, f"each input may have at most {settings.max_query_chars * 4} characters", param="input")
        vectors = await run_in_threadpool(service.embed, served, texts, body.input_type == "query")
        if body.dimensions is not None and body.dimensions != vectors.shape[1]:
            message = f"this model gives {vectors.shape[1]} dimensions; leave dimensions out or ask for that"
            raise ApiError(422, message, param="dimensions")
        data = []
        for i, vector in enumerate(vectors):
            value: Any = (
                base64.b64encode(vector.tobytes()).decode() if body.encoding_format == "base64" else vector.tolist()
            )
            data.append({"object": "embedding", "index": i, "embedding": value})
        tokens = sum(len(t.split()) for t in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return JSONResponse({"object": "list", "data": data, "model": served.model, "usage": usage})

    return router


def _grounding(answer: Answer) -> dict[str, Any]:
    """The extra fields of a completion (and of the last streamed chunk): citations, abstention, claims and the
    sentences the support check retracted from what was streamed."""
    data = answer.to_dict()
    return {key: data[key] for key in ("citations", "abstained", "decision", "answerability", "claims", "retracted")}


def _usage(answer: Answer) -> dict[str, int]:
    prompt, completion = answer.usage.get("prompt_tokens", 0), answer.usage.get("completion_tokens", 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _finish_reason(answer: Answer, max_tokens: int | None) -> str:
    done = answer.usage.get("completion_tokens", 0)
    return "length" if max_tokens is not None and done >= max_tokens else "stop"


async def _chunks(
    first: str | Answer,
    stream: AsyncGenerator[str | Answer, None],
    header: dict[str, Any],
    kind: str,
    max_tokens: int | None,
    include_usage: bool,
    served: ServedPipeline,
    metrics: Metrics,
) -> AsyncIterator[str]:
    """OpenAI stream chunks (`data: {...}`), the last one with `finish_reason` and citations, then `[DONE]`."""
    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"

    def chunk(text: str | None, finish: str | None = None, role: bool = False) -> dict[str, Any]:
        if kind == "chat":
            delta: dict[str, Any] = {"role": "assistant"} if role else {}
            if text is not None:
                delta["content"] = text
            choice: dict[str, Any] = {"index": 0, "delta": delta}
        else:
            choice = {"index": 0, "text": text or ""}
        return header | {"object": obj, "choices": [choice | {"finish_reason": finish, "logprobs": None}]}

    item = first
    finished = False
    try:
        if kind == "chat":
            yield sse_event(chunk("", role=True))
        while not isinstance(item, Answer):
            yield sse_event(chunk(item))
            item = await anext(stream)
        finished = True
        metrics.answered(served.model, item)
        last = chunk(None, _finish_reason(item, max_tokens))
        yield sse_event(last | _grounding(item))
        if include_usage:
            yield sse_event(header | {"object": obj, "choices": [], "usage": _usage(item)})
    except RagError as exc:
        finished = True
        yield sse_event(from_rag_error(exc).body())
    except Exception:
        finished = True
        logger.exception("streamed completion failed")
        yield sse_event(envelope("internal server error; the server log has the details", "server_error"))
    finally:
        if not finished:
            metrics.cancelled.labels(pipeline=served.model).inc()
        await stream.aclose()
    yield sse_event("[DONE]")
