"""The one streaming bridge: pieces then the result, errors raised in the reader, early stops cancel the call."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable

import pytest

from rag.core.streaming import astream_call, stream_call


class Counting:
    """A blocking call that sends `count` pieces, then returns; records whether it was cancelled."""

    def __init__(self, count: int = 3) -> None:
        self.count = count
        self.cancelled = threading.Event()
        self.sent = 0

    def __call__(self, on_token: Callable[[str], None]) -> str:
        try:
            for i in range(self.count):
                on_token(f"p{i}")
                self.sent += 1
        except BaseException:
            self.cancelled.set()
            raise
        return "done"


def test_pieces_then_the_result() -> None:
    assert list(stream_call(Counting())) == [("piece", "p0"), ("piece", "p1"), ("piece", "p2"), ("result", "done")]


def test_an_error_of_the_call_is_raised_in_the_reader() -> None:
    def failing(on_token: Callable[[str], None]) -> None:
        on_token("x")
        raise KeyError("boom")

    items = stream_call(failing)
    assert next(items) == ("piece", "x")
    with pytest.raises(KeyError, match="boom"):
        next(items)


def test_a_reader_that_stops_early_cancels_the_call() -> None:
    call = Counting(count=10_000)
    with contextlib.closing(stream_call(call)) as items:
        assert next(items) == ("piece", "p0")
    assert call.cancelled.wait(5) and call.sent < 10_000


def test_the_async_reader_gets_the_same_and_cancels_too() -> None:
    async def read(call: Counting, limit: int) -> list[tuple[str, object]]:
        got = []
        async with contextlib.aclosing(astream_call(call)) as items:
            async for item in items:
                got.append(item)
                if len(got) == limit:
                    break
        return got

    assert asyncio.run(read(Counting(), 10))[-1] == ("result", "done")
    call = Counting(count=10_000)
    assert asyncio.run(read(call, 1)) == [("piece", "p0")]
    assert call.cancelled.wait(5) and call.sent < 10_000
