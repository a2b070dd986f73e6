"""A blocking generation's text for async code as it comes, and Server-Sent Events.

`generate(call)` runs `call(on_token)` in its own thread (`rag.core.streaming`) and yields each text piece,
then the final `Answer`. When the consumer stops early (the client went away and the response task was
cancelled, or it closed the iterator), the next `on_token` raises `GenerationCancelled`, which stops the
generator in the worker thread.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncGenerator, Callable
from typing import Any

from rag.core.streaming import astream_call
from rag.core.types import Answer

__all__ = ["Generation", "generate", "sse_event"]

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
