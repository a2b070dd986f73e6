"""The one bridge from a blocking call that reports text pieces to a reader that wants them as they come.

`call(on_token)` runs in a worker thread and passes each piece of text to `on_token`. The reader gets
`("piece", text)` items, then `("result", what call returned)`, from `stream_call` (a plain iterator) or
`astream_call` (an async iterator, for the server). An exception of the call is raised in the reader. When
the reader stops early (it closes the iterator, or its task is cancelled), the next `on_token` raises
`GenerationCancelled` in the worker, which ends the call there.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

from rag.core.errors import GenerationCancelled

__all__ = ["StreamingCall", "astream_call", "stream_call"]

logger = logging.getLogger(__name__)

StreamingCall = Callable[[Callable[[str], None]], Any]
"""A blocking call that reports text pieces through the callback it is given and returns a result."""


def _start(call: StreamingCall, put: Callable[[tuple[str, Any]], None], stop: threading.Event, name: str) -> None:
    def on_token(piece: str) -> None:
        if stop.is_set():
            raise GenerationCancelled("the reader of the stream went away; generation stopped")
        if piece:
            put(("piece", piece))

    def work() -> None:
        try:
            put(("result", call(on_token)))
        except GenerationCancelled:
            if stop.is_set():
                logger.info("generation cancelled: the reader of the stream went away")
            else:
                put(("error", GenerationCancelled("generation was cancelled")))
        except BaseException as exc:  # handed to the reader, which raises it
            put(("error", exc))

    threading.Thread(target=work, name=name, daemon=True).start()


def stream_call(call: StreamingCall, name: str = "rag-stream") -> Generator[tuple[str, Any], None, None]:
    """`("piece", text)` items as `call` reports them, then `("result", value)`; see the module docstring."""
    items: queue.Queue[tuple[str, Any]] = queue.Queue()
    stop = threading.Event()
    _start(call, items.put, stop, name)
    try:
        while True:
            kind, value = items.get()
            if kind == "error":
                raise value
            yield kind, value
            if kind == "result":
                return
    finally:
        stop.set()


async def astream_call(call: StreamingCall, name: str = "rag-stream") -> AsyncGenerator[tuple[str, Any], None]:
    """`stream_call` for async readers: the worker hands items to the running event loop."""
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> None:
        try:
            loop.call_soon_threadsafe(items.put_nowait, item)
        except RuntimeError:  # the event loop is closed: the server is shutting down
            stop.set()

    _start(call, put, stop, name)
    try:
        while True:
            kind, value = await items.get()
            if kind == "error":
                raise value
            yield kind, value
            if kind == "result":
                return
    finally:
        stop.set()
