"""A blocking generation's text for async code as it comes, and Server-Sent Events.

`generate(call)` runs `call(on_token)` in its own thread (`rag.core.streaming`) and yields each text piece,
then the final `Answer`. When the consumer stops early (the client went away and the response task was
cancelled, or it closed the iterator), the next `on_token` raises `GenerationCancelled`, which stops the
generator in the worker thread.

`event_stream(...)` describes a stream's events in the OpenAPI document (`itemSchema`, as FastAPI's own
event streams have it), and `component_schemas(...)` the models it refers to.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, Callable
from typing import Any

from pydantic import BaseModel

from rag.core.streaming import astream_call
from rag.core.types import Answer

__all__ = ["Generation", "component_schemas", "event_stream", "generate", "json_data", "sse_event"]

Generation = Callable[[Callable[[str], None]], Answer]
"""A blocking call that generates an answer, reporting text pieces through the callback it is given."""


async def generate(call: Generation) -> AsyncGenerator[str | Answer, None]:
    """The text pieces of `call`, then its `Answer` (`rag.core.streaming.astream_call`)."""
    async with contextlib.aclosing(astream_call(call, "rag-generate")) as items:
        async for _, value in items:
            yield value


def sse_event(data: Any, event: str | None = None) -> str:
    """One Server-Sent Event carrying `data` as JSON (or as is, for a str such as "[DONE]")."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def json_data(*models: type[BaseModel]) -> dict[str, Any]:
    """The schema of an event's `data`: JSON that is one of `models`."""
    content = _ref(models[0]) if len(models) == 1 else {"anyOf": [_ref(model) for model in models]}
    return {"type": "string", "contentMediaType": "application/json", "contentSchema": content}


def event_stream(events: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The OpenAPI media type object of `text/event-stream` whose events are named as in `events`, each with the
    schema of its `data` (`json_data(...)`, or another schema of a string); "message" is the name of the events
    sent without one."""
    items = [
        {
            "type": "object",
            "required": ["data"] if name == "message" else ["event", "data"],
            "properties": {"event": {"const": name}, "data": data},
        }
        for name, data in events.items()
    ]
    return {"itemSchema": items[0] if len(items) == 1 else {"anyOf": items}}


def component_schemas(models: list[type[BaseModel]]) -> dict[str, Any]:
    """The JSON schemas of `models` and of the models they use, by name, for the document's components (the
    ones `json_data` refers to)."""
    schemas: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
        schemas |= schema.pop("$defs", {})
        schemas[model.__name__] = schema
    return schemas
