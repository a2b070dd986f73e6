"""`EngineQueue`: one thread drives an in-process vLLM engine; concurrent requests share its calls.

`vllm.LLM` is synchronous and not safe to call from several threads at once. Serialising callers behind a lock
would make a server answer one request at a time; instead every caller queues its prompts and waits, and one
worker thread sends everything queued so far in a single `LLM.generate` call (one `SamplingParams` per prompt,
so requests with different decoding options still share the call). Requests that arrive while the engine is
busy go together into the next call: batching at request granularity. (Token-level continuous batching, where a
request joins a batch mid-generation, needs vLLM's async engine; `vllm serve` has it.)

Beam search has its own entry point (`LLM.beam_search`, one `BeamSearchParams` per call), so beam requests run
one call each, in turn. When a shared call fails (say, one prompt is longer than the model allows), each of its
requests is retried alone, so one bad request fails only itself.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EngineQueue"]

logger = logging.getLogger(__name__)


@dataclass
class _Request:
    kind: str  # "generate" or "beam_search"
    prompts: list[Any]
    params: Any
    done: threading.Event = field(default_factory=threading.Event)
    outputs: list[Any] | None = None
    error: BaseException | None = None


class EngineQueue:
    """Send the prompts of concurrent callers to `llm` together; see the module docstring."""

    def __init__(self, llm: Any) -> None:
        self._llm = llm
        self._pending: list[_Request] = []
        self._ready = threading.Condition()
        self.calls = 0
        """Engine calls made so far (for tests and metrics)."""
        threading.Thread(target=self._work, name="vllm-engine-queue", daemon=True).start()

    def generate(self, prompts: list[Any], params: Any) -> list[Any]:
        """`LLM.generate(prompts, params)`'s outputs for these prompts, sent with whatever else is queued."""
        return self._submit(_Request("generate", prompts, params))

    def beam_search(self, prompts: list[Any], params: Any) -> list[Any]:
        """`LLM.beam_search(prompts, params)`'s outputs (beam requests are not merged)."""
        return self._submit(_Request("beam_search", prompts, params))

    def _submit(self, request: _Request) -> list[Any]:
        with self._ready:
            self._pending.append(request)
            self._ready.notify()
        request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.outputs is not None
        return request.outputs

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._pending:
                    self._ready.wait()
                batch, self._pending = self._pending, []
            sampling = [r for r in batch if r.kind == "generate"]
            if sampling:
                self._run_shared(sampling)
            for request in batch:
                if request.kind == "beam_search":
                    self._run([request])

    def _run_shared(self, requests: list[_Request]) -> None:
        try:
            self._run(requests)
        except Exception as exc:
            if len(requests) == 1:
                self._finish(requests, error=exc)
                return
            logger.info("a shared vLLM call failed (%s); running its %d requests one by one", exc, len(requests))
            for request in requests:
                try:
                    self._run([request])
                except Exception as single:
                    self._finish([request], error=single)

    def _run(self, requests: list[_Request]) -> None:
        """One engine call for `requests` (all of one kind); raises what the engine raised."""
        self.calls += 1
        prompts = [prompt for request in requests for prompt in request.prompts]
        if requests[0].kind == "beam_search":
            outputs = self._llm.beam_search(prompts, requests[0].params)
        else:
            params = (
                requests[0].params
                if len(requests) == 1
                else [request.params for request in requests for _ in request.prompts]
            )
            outputs = self._llm.generate(prompts, params, use_tqdm=False)
        start = 0
        for request in requests:
            request.outputs = list(outputs[start : start + len(request.prompts)])
            start += len(request.prompts)
            request.done.set()

    @staticmethod
    def _finish(requests: list[_Request], error: BaseException) -> None:
        for request in requests:
            request.error = error
            request.done.set()
