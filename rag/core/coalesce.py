"""`Coalescer`: concurrent calls of a batch function share its calls.

A model call costs much the same for one input as for several, so a server answering concurrent requests one
model call each wastes most of them. A `Coalescer` wraps a function of a list of items: each caller hands in one
item and gets one result, and callers that arrive while a call runs go together into the next call. No thread
and no timer: the first caller to find no call running runs the next one, for everyone queued.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from rag.core.errors import BrokenContractError

__all__ = ["Coalescer"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(slots=True)
class _Call:
    item: Any
    done: bool = False
    result: Any = None


class Coalescer(Generic[T, R]):
    """Call `fn(items)` once for the items of all callers queued at that moment.

    `fn` returns one result per item, in order. A result that is an exception is raised in that item's caller
    only; an exception `fn` raises is raised in every caller of that call. `calls` counts the calls made.
    """

    def __init__(self, fn: Callable[[list[T]], Sequence[R | BaseException]]) -> None:
        self._fn = fn
        self._queue: list[_Call] = []
        self._running = False
        self._changed = threading.Condition()
        self.calls = 0

    def __call__(self, item: T) -> R:
        call = _Call(item)
        with self._changed:
            self._queue.append(call)
            while self._running and not call.done:
                self._changed.wait()
            if not call.done:  # no call is running: run one for everything queued
                self._running = True
                batch, self._queue = self._queue, []
                self.calls += 1
        if not call.done:
            self._run(batch)
        return _result(call)

    def _run(self, batch: list[_Call]) -> None:
        try:
            results: Sequence[Any] = self._fn([c.item for c in batch])
            if len(results) != len(batch):
                raise BrokenContractError(f"{self._fn!r} returned {len(results)} results for {len(batch)} items")
        except BaseException as exc:  # handed to every caller of this call
            results = [exc] * len(batch)
        with self._changed:
            for c, result in zip(batch, results, strict=True):
                c.result, c.done = result, True
            self._running = False
            self._changed.notify_all()


def _result(call: _Call) -> Any:
    if isinstance(call.result, BaseException):
        raise call.result
    return call.result
