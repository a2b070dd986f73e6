"""Run a blocking generation in a worker thread and hand its text to async code as it comes.

`generate(call)` starts `call(on_token)` in its own thread and yields each text piece, then the
final `Answer`. When the consumer stops early (the client went away and the response task was
cancelled, or it closed the iterator), the next `on_token` raises `GenerationCancelled`, which
stops the generator in the worker thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from rag.core.errors import GenerationCancelled
from rag.core.types import Answer

__all__ = ["Generation", "generate", "sse_event"]

logger = logging.getLogger(__name__)

Generation = Callable[[Callable[[str], None]], Answer]
"""A blocking call that generates an answer, reporting text pieces through the callback it is given."""


async def generate(call: Generation) -> AsyncIterator[str | Answer]:
    """The text pieces of `call`, then its `Answer`; see the module docstring."""
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    cancelled = threading.Event()

    def put(kind: str, value: Any) -> None:
        try:
            loop.call_soon_threadsafe(items.put_nowait, (kind, value))
        except RuntimeError:  # the event loop is closed: the server is shutting down
            cancelled.set()

    def on_token(piece: str) -> None:
        if cancelled.is_set():
            raise GenerationCancelled("the client went away; generation stopped")
        if piece:
            put("piece", piece)

    def work() -> None:
        try:
            put("answer", call(on_token))
        except GenerationCancelled:
            logger.info("generation cancelled: the client went away")
        except BaseException as exc:  # handed to the async side, which raises it
            put("error", exc)

    threading.Thread(target=work, name="rag-generate", daemon=True).start()
    try:
        while True:
            kind, value = await items.get()
            if kind == "error":
                raise value
            yield value
            if kind == "answer":
                return
    finally:
        cancelled.set()


def sse_event(data: Any, event: str | None = None) -> str:
    """One Server-Sent Event carrying `data` as JSON (or as is, for a str such as "[DONE]")."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"
