"""`Coalescer`: callers that arrive while a call runs share the next call; errors reach the right callers."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from rag.core.coalesce import Coalescer


def run_concurrently(coalescer: Coalescer[Any, Any], items: list[Any]) -> dict[Any, Any]:
    results: dict[Any, Any] = {}

    def call(item: Any) -> None:
        try:
            results[item] = coalescer(item)
        except Exception as exc:
            results[item] = exc

    threads = [threading.Thread(target=call, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
        time.sleep(0.005)  # in order: the first call starts before the others arrive
    for thread in threads:
        thread.join()
    return results


def test_one_caller_gets_its_own_result() -> None:
    coalescer = Coalescer(lambda items: [x * 2 for x in items])
    assert coalescer(21) == 42 and coalescer.calls == 1


def test_callers_arriving_during_a_call_share_the_next_one() -> None:
    batches: list[list[int]] = []

    def slow_double(items: list[int]) -> list[int]:
        batches.append(items)
        time.sleep(0.1)
        return [x * 2 for x in items]

    coalescer = Coalescer(slow_double)
    results = run_concurrently(coalescer, list(range(8)))
    assert results == {x: 2 * x for x in range(8)}
    assert batches[0] == [0] and len(batches) < 8 and sorted(x for b in batches for x in b) == list(range(8))


def test_an_exception_result_fails_only_its_caller_and_a_raised_one_fails_the_call() -> None:
    def check(items: list[int]) -> list[Any]:
        time.sleep(0.05)
        if 99 in items:
            raise RuntimeError("engine down")
        return [ValueError(f"bad {x}") if x < 0 else x for x in items]

    results = run_concurrently(Coalescer(check), [1, -2, 3])
    assert results[1] == 1 and results[3] == 3 and isinstance(results[-2], ValueError)
    with pytest.raises(RuntimeError, match="engine down"):
        Coalescer(check)(99)


def test_a_wrong_number_of_results_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="returned 0 results for 1 items"):
        Coalescer(lambda items: [])(1)
