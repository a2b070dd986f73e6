"""Request and response models of the OpenAI-compatible endpoints, and the requests' mapping onto
`DecodingConfig` options.

Fields the server does not use (`user`, `logit_bias`, `tools`, ...) are accepted and ignored, so
clients that send them work unchanged; `n` above 1 is refused. Responses carry rag's grounding (citations,
abstention, claims) as extra fields.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rag.generate.decoding import DecodingConfig
from rag.serve.errors import ApiError
from rag.serve.protocol import COLLECTION_FIELD, FILTERS_FIELD, CitationModel, ClaimModel, check_decoding

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessage",
    "CompletionChunk",
    "CompletionRequest",
    "EmbeddingList",
    "EmbeddingRequest",
    "GenerationRequest",
    "ModelList",
    "TextCompletion",
    "last_user_message",
    "openai_decoding",
]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    role: str
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    include_usage: bool = False


class GenerationRequest(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False, strict=True)
    model: str = Field(description="A served pipeline: its name, or COLLECTION/NAME (see /v1/models).")
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(None, ge=1, le=1, description="Only 1: one answer per request.")
    stop: str | list[Annotated[str, Field(min_length=1)]] | None = None
    seed: int | None = Field(None, ge=0)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    answer_mode: Literal["extractive", "grounded", "generate"] | None = Field(
        None, description="rag's answer mode (extra body field); left out: the pipeline's (docs/answers.md)."
    )
    filters: FILTERS_FIELD[0] = FILTERS_FIELD[1]
    collection: COLLECTION_FIELD[0] = COLLECTION_FIELD[1]


class ChatCompletionRequest(GenerationRequest):
    """Retrieval runs on the last user message, which is answered from the passages found."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class CompletionRequest(GenerationRequest):
    """The prompt is taken as the question."""

    prompt: (
        Annotated[str, Field(min_length=1)]
        | Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=1)]
    ) = Field(description="The question: a string, or a list of exactly one string.")


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    model: str = Field(
        description="A served pipeline (its name, or COLLECTION/NAME); its dense embedding model embeds the input."
    )
    collection: COLLECTION_FIELD[0] = COLLECTION_FIELD[1]
    input: str | Annotated[list[str], Field(min_length=1)] = Field(
        description="A text or a list of texts (not tokens: the server has no tokenizer of OpenAI's models)."
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    input_type: Literal["query", "document"] = Field(
        "document", description="Embed as search queries or as documents (models with prompts differ)."
    )


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Grounding(BaseModel):
    """rag's extra fields of a completion: what the answer rests on (as in /v1/answer)."""

    citations: list[CitationModel]
    abstained: bool = Field(description="True when the passages do not answer the question (no citations then).")
    decision: str | None = Field(description='"yes" or "no" before an extractive answer to a yes/no question.')
    answerability: float | None = Field(description="Calibrated probability that the passages answer it.")
    claims: list[ClaimModel]
    retracted: list[ClaimModel] = Field(description="Sentences the support check removed from a grounded answer.")


class StreamGrounding(BaseModel):
    """The grounding fields, on the last chunk of a stream (the one with a `finish_reason`) only."""

    citations: list[CitationModel] | None = None
    abstained: bool | None = None
    decision: str | None = None
    answerability: float | None = None
    claims: list[ClaimModel] | None = None
    retracted: list[ClaimModel] | None = None


FinishReason = Literal["stop", "length"]


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: None


class ChatCompletion(Grounding):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class TextChoice(BaseModel):
    index: int
    text: str
    finish_reason: FinishReason
    logprobs: None


class TextCompletion(Grounding):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = Field(None, description="On the first chunk only.")
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    finish_reason: FinishReason | None
    logprobs: None


class ChatCompletionChunk(StreamGrounding):
    """One event of a streamed chat completion; with stream_options.include_usage, a last one has no choices and
    the usage."""

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class TextChunkChoice(BaseModel):
    index: int
    text: str
    finish_reason: FinishReason | None
    logprobs: None


class CompletionChunk(StreamGrounding):
    """One event of a streamed completion; with stream_options.include_usage, a last one has no choices and the
    usage."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[TextChunkChoice]
    usage: Usage | None = None


class EmbeddingData(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str = Field(description="Floats, or with encoding_format base64 their float32 bytes.")


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"]
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage


class ModelCard(BaseModel):
    id: str = Field(description="A served pipeline's name.")
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


def last_user_message(messages: list[ChatMessage], max_chars: int) -> str:
    """The text of the last user message (text parts joined), checked for length."""
    for message in reversed(messages):
        if message.role != "user":
            continue
        content = message.content
        if isinstance(content, list):
            content = "\n".join(str(p.get("text", "")) for p in content if p.get("type") == "text")
        text = (content or "").strip()
        if not text:
            break
        if len(text) > max_chars:
            raise ApiError(422, f"the question has {len(text)} characters; at most {max_chars}", param="messages")
        return text
    raise ApiError(422, "messages must end with a user message that has text", param="messages")


def openai_decoding(
    body: GenerationRequest, base: dict[str, Any], max_tokens: int | None, limit: int
) -> dict[str, Any]:
    """`DecodingConfig` overrides for an OpenAI request (temperature 0: greedy; above 0: sampling).

    Sampling options are dropped when the resulting strategy does not sample, as OpenAI ignores them.
    """
    decoding: dict[str, Any] = {}
    if max_tokens is not None:
        if max_tokens > limit:
            raise ApiError(422, f"max_tokens is {max_tokens}; this server allows at most {limit}", param="max_tokens")
        decoding["max_tokens"] = max_tokens
    if body.temperature is not None:
        if body.temperature == 0:
            decoding["strategy"] = "greedy"
        else:
            decoding |= {"strategy": "sample", "temperature": body.temperature}
    strategy = decoding.get("strategy") or DecodingConfig.from_dict(base).strategy
    if body.top_p is not None and body.top_p != 1 and strategy in ("sample", "best_of_n"):
        decoding["top_p"] = body.top_p
    if body.stop:
        decoding["stop"] = [body.stop] if isinstance(body.stop, str) else list(body.stop)
    for name in ("seed", "presence_penalty", "frequency_penalty"):
        if getattr(body, name) is not None:
            decoding[name] = getattr(body, name)
    check_decoding(decoding, base)
    return decoding
