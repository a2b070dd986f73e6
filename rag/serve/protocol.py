"""Request and response models of the native API, derived from the served pipeline.

A pipeline whose inputs include `top_k` takes `top_k` in requests (bounded by the server's
`max_top_k`); one whose inputs include `decoding` (its generator's per-request options) takes the
options of `DecodingConfig`, flat, next to `question`. `top_k` there is the number of passages, and the
sampling cut-off is `sample_top_k` (`sampling_top_k`, its old name, is accepted until the next release).
Engine options (fixed when a model
loads) are never taken from requests.
"""

from __future__ import annotations

import dataclasses
import logging
import typing
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema, create_model
from pydantic_core import PydanticCustomError

from rag.core.errors import ConfigError
from rag.core.pipeline import Pipeline
from rag.core.types import Answer, Hit
from rag.generate.decoding import ENGINE_OPTIONS, MAX_LOGPROBS, STRATEGIES, DecodingConfig
from rag.serve.errors import ApiError
from rag.serve.settings import ServerSettings

__all__ = [
    "ANSWER_FIELDS",
    "AnswerResponse",
    "CitationModel",
    "CollectionCard",
    "CollectionList",
    "HealthResponse",
    "HitModel",
    "QueryResponse",
    "ReadyResponse",
    "RequestModels",
    "RetractEvent",
    "TokenEvent",
    "answer_body",
    "decoding_overrides",
    "hits_body",
    "request_models",
]

logger = logging.getLogger(__name__)

DEPRECATED_FIELDS = {"sampling_top_k": "sample_top_k"}
"""Request fields accepted under their old name until the next release (the new name wins when both are set)."""
_SKIPPED = ENGINE_OPTIONS | {"stream"}


class Source(BaseModel):
    """Where a passage comes from: its file, character offsets, and the file's metadata (title, pages...)."""

    model_config = ConfigDict(extra="allow")
    path: str
    start: int
    end: int


class HitModel(BaseModel):
    id: str
    score: float
    text: str
    source: Source


class SpanModel(BaseModel):
    start: int = Field(description="Character offset in the source document where the cited span begins.")
    end: int = Field(description="Character offset where it ends.")
    page: int | None = Field(description="The span's page (paged formats), else null.")
    text: str | None = Field(description="The span's text.")


class CitationModel(BaseModel):
    n: int = Field(description="The passage number [n] as it appears in the answer (hits[n - 1]).")
    id: str
    source: Source
    by: str = Field(
        description='"quote": the sentence is quoted from the span; "marker": the answer writes [n]; "support": '
        'the support check found the span; "overlap": attributed by shared words.'
    )
    claim: int | None = Field(description="Index in `claims` of the answer sentence this citation supports.")
    span: SpanModel | None = Field(description="The span of the source document the claim rests on.")


class ClaimModel(BaseModel):
    text: str = Field(description="One sentence of the answer (or, in `retracted`, one taken back).")
    start: int
    end: int
    passages: list[int] = Field(description="The passage numbers it cites.")
    supported: bool | None = Field(description="Whether the support check found it supported; null: not checked.")
    support: float | None


class QueryResponse(BaseModel):
    hits: list[HitModel]


class AnswerResponse(BaseModel):
    answer: str
    mode: str = Field(description="The answer mode that produced the answer: extractive, grounded or generate.")
    abstained: bool = Field(description="True when the passages do not answer the question (no citations then).")
    decision: str | None = Field(description='"yes" or "no" before an extractive answer to a yes/no question.')
    answerability: float | None = Field(description="Calibrated probability that the passages answer it.")
    citations: list[CitationModel]
    claims: list[ClaimModel]
    retracted: list[ClaimModel] = Field(description="Sentences the support check removed from a grounded answer.")
    hits: list[HitModel]
    usage: dict[str, int]


class TokenEvent(BaseModel):
    """A piece of the answer's text as it is generated (the `token` event of a streamed answer)."""

    text: str


class RetractEvent(BaseModel):
    """A streamed sentence the support check took back (the `retract` event of a streamed answer)."""

    text: str
    start: int
    end: int


class HealthResponse(BaseModel):
    status: Literal["ok"]


class CollectionCard(BaseModel):
    name: str
    pipelines: list[str] = Field(description="Its pipelines (the OpenAI `model` ids), its default first.")
    default: bool = Field(description="Whether requests that name no collection use it.")


class CollectionList(BaseModel):
    collections: list[CollectionCard]


class ReadyResponse(BaseModel):
    status: Literal["ready"]
    index: str = Field(description="The index generation being served.")
    pipelines: list[str] = Field(description="The served pipelines (the OpenAI `model` names).")


@dataclasses.dataclass(frozen=True)
class RequestModels:
    """The request models for one pipeline, and what they let a request set."""

    query: type[BaseModel]
    answer: type[BaseModel] | None
    top_k: bool
    decoding: tuple[str, ...]


def hits_body(hits: list[Hit]) -> dict[str, Any]:
    return {"hits": [h.to_dict() for h in hits]}


ANSWER_FIELDS = (
    "answer",
    "mode",
    "abstained",
    "decision",
    "answerability",
    "citations",
    "claims",
    "retracted",
    "hits",
    "usage",
)


def answer_body(answer: Answer) -> dict[str, Any]:
    data = answer.to_dict()
    return {k: data[k] for k in ANSWER_FIELDS}


def generator_decoding(pipeline: Pipeline) -> dict[str, Any]:
    """The decoding settings of the component fed by the pipeline's `decoding` input ({} if none)."""
    targets = pipeline.inputs.get("decoding") or []
    for component, _ in targets:
        settings = pipeline.components[component].settings.get("decoding")
        if isinstance(settings, dict):
            return settings
    return {}


def _filter_value(value: Any) -> Any:
    """A filter's JSON form (an object) or string form (non-empty, at most 4,000 characters); one error either way."""
    if isinstance(value, dict) or (isinstance(value, str) and value.strip() and len(value) <= 4000):
        return value
    raise PydanticCustomError(
        "filter_type", "a filter is a JSON object or a non-empty string of at most 4,000 characters"
    )


FILTERS_FIELD: Any = (
    Annotated[
        Any,
        AfterValidator(lambda value: value if value is None else _filter_value(value)),
        WithJsonSchema(
            {"anyOf": [{"type": "object"}, {"type": "string", "minLength": 1, "maxLength": 4000}, {"type": "null"}]}
        ),
    ],
    Field(
        None,
        description="Only chunks whose metadata passes this filter: its JSON form "
        '({"type": {"$in": ["pdf", "md"]}, "modified": {"$gte": "2026-01-01"}}) or its string form '
        '("type in [pdf, md] and modified >= 2026-01-01"); see docs/filters.md. A field no chunk has is a 400.',
    ),
)


COLLECTION_FIELD: Any = (
    Annotated[str, StringConstraints(min_length=1, max_length=64)] | None,
    Field(None, description="The collection to use (left out: the first this key may use; see GET /v1/collections)."),
)


def request_models(pipelines: list[Pipeline], settings: ServerSettings) -> RequestModels:
    """Build the request models for the collections' default `pipelines` under the server's limits: a field any of
    them takes (a collection whose pipeline does not take a field it was sent refuses the request)."""
    top_k = any("top_k" in p.inputs for p in pipelines)
    text = Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=settings.max_query_chars),
        AfterValidator(_not_blank),
    ]
    query_fields: dict[str, Any] = {"query": (text, Field(description="The search text (not empty)."))}
    if top_k:
        query_fields["top_k"] = _top_k_field(pipelines, settings, "hits")
    query_fields["filters"] = FILTERS_FIELD
    query_fields["collection"] = COLLECTION_FIELD
    strict = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)
    query = create_model("QueryRequest", __config__=strict, **query_fields)
    answering = [p for p in pipelines if "answer" in p.outputs]
    if not answering:
        return RequestModels(query, None, top_k, ())
    answer_fields: dict[str, Any] = {
        "question": (text, Field(description="The question (not empty).")),
        "stream": (
            bool,
            Field(False, description="Send the answer as Server-Sent Events: `token` events, then `answer`."),
        ),
    }
    if top_k:
        answer_fields["top_k"] = _top_k_field(pipelines, settings, "passages retrieved")
    answer_fields["filters"] = FILTERS_FIELD
    answer_fields["collection"] = COLLECTION_FIELD
    modes = tuple(dict.fromkeys(m for p in answering if "answer_mode" in p.inputs for m in p.answer_modes()))
    if modes:
        answer_fields["answer_mode"] = (
            Literal[modes] | None,
            Field(None, description="extractive, grounded or generate; left out: the pipeline's (docs/answers.md)."),
        )
    decoding: list[str] = []
    if any("decoding" in p.inputs for p in answering):
        for name, field in _decoding_fields(settings).items():
            answer_fields[name] = field
            decoding.append(name)
        bounds = _decoding_bounds(settings)
        for old, new in DEPRECATED_FIELDS.items():
            kind = answer_fields[new][0]
            answer_fields[old] = (
                kind,
                Field(None, deprecated=f"use {new}", description=f"Old name of {new}.", **bounds.get(new, {})),
            )
    answer = create_model("AnswerRequest", __config__=strict, **answer_fields)
    return RequestModels(query, answer, top_k, tuple(decoding))


def _not_blank(text: str) -> str:
    """Refuse what Python takes for blanks (str.strip(), as the pipeline does), which the stripping above keeps
    (control characters such as U+001C)."""
    if not text.strip():
        raise PydanticCustomError("string_too_short", "String should have at least 1 character", {"min_length": 1})
    return text


def decoding_overrides(body: BaseModel, models: RequestModels, base: dict[str, Any]) -> dict[str, Any]:
    """The decoding options a request set, checked against the generator's own settings `base` (422 if
    invalid)."""
    given = body.model_fields_set
    overrides = {name: getattr(body, name) for name in models.decoding if name in given}
    for old, new in DEPRECATED_FIELDS.items():
        if old in given and new not in given:
            logger.warning("request field '%s' is deprecated; send '%s' (accepted until the next release)", old, new)
            overrides[new] = getattr(body, old)
    overrides = {name: value for name, value in overrides.items() if value is not None}
    check_decoding(overrides, base)
    return overrides


def check_decoding(overrides: dict[str, Any], base: dict[str, Any]) -> None:
    """Raise a 422 `ApiError` when `overrides` on top of the generator's `base` settings are not valid."""
    if not overrides:
        return
    try:
        DecodingConfig.from_dict(base).merged(**overrides)
    except (ConfigError, TypeError) as exc:
        message = str(exc).removeprefix("DecodingConfig: ")
        param = next((k for k in overrides if k in message), None)
        raise ApiError(422, f"decoding options: {message}", param=param, code="invalid_decoding") from None


def _top_k_field(pipelines: list[Pipeline], settings: ServerSettings, what: str) -> tuple[Any, Any]:
    pipeline = next(p for p in pipelines if "top_k" in p.inputs)
    default = None
    for component, _ in pipeline.inputs["top_k"]:
        default = pipeline.components[component].settings.get("top_k", default)
    note = f" (the pipeline's default: {default})" if default is not None else ""
    return (int | None, Field(None, ge=1, le=settings.max_top_k, description=f"Number of {what}{note}."))


def _decoding_fields(settings: ServerSettings) -> dict[str, tuple[Any, Any]]:
    """One optional request field per decoding option, with the bounds `DecodingConfig` and the server hold it to
    (what depends on other options, such as which strategy an option belongs to, is checked by `check_decoding`)."""
    bounds = _decoding_bounds(settings)
    hints = typing.get_type_hints(DecodingConfig)
    fields: dict[str, tuple[Any, Any]] = {}
    for f in dataclasses.fields(DecodingConfig):
        if f.name in _SKIPPED:
            continue
        kind = hints[f.name]
        if typing.get_origin(kind) is tuple:
            kind = list[Annotated[str, StringConstraints(min_length=1)]]
        elif f.name == "strategy":
            kind = Literal[STRATEGIES]
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if any(dataclasses.is_dataclass(a) for a in args):
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        description = f"Decoding option (see DecodingConfig); left out: the pipeline's setting (default {default!r})."
        fields[f.name] = (kind | None, Field(None, description=description, **bounds.get(f.name, {})))
    return fields


def _decoding_bounds(settings: ServerSettings) -> dict[str, dict[str, Any]]:
    """The bounds of each decoding option's value, as `DecodingConfig` checks them, and the server's limits."""
    return {
        "max_tokens": {"ge": 1, "le": settings.max_tokens},
        "min_tokens": {"ge": 0, "le": settings.max_tokens},
        "temperature": {"ge": 0, "le": 2},
        "sample_top_k": {"ge": 0},
        "top_p": {"gt": 0, "le": 1},
        "min_p": {"ge": 0, "le": 1},
        "repetition_penalty": {"gt": 0},
        "presence_penalty": {"ge": -2, "le": 2},
        "frequency_penalty": {"ge": -2, "le": 2},
        "seed": {"ge": 0},
        "n": {"ge": 1, "le": settings.max_candidates},
        "best_of": {"ge": 2, "le": settings.max_candidates},
        "num_beams": {"ge": 1, "le": settings.max_candidates},
        "logprobs": {"ge": 0, "le": MAX_LOGPROBS},
        "stop": {"max_length": 8},
    }
