"""`EngineQueue`: concurrent requests to an in-process vLLM engine share its calls.

`vllm.LLM` is synchronous and not safe to call from several threads at once. Serialising callers behind a lock
would make a server answer one request at a time; instead requests go through a `Coalescer`: everything queued
while the engine works is sent in the next single `LLM.generate` call, one `SamplingParams` per prompt, so
requests with different decoding options still share the call. This batches at request granularity;
token-level continuous batching (a request joining a batch mid-generation) needs vLLM's async engine, which
`vllm serve` has.

Beam search has its own entry point (`LLM.beam_search`, one `BeamSearchParams` per call), so beam requests run
one call each. When a shared call fails (say, one prompt is longer than the model allows), each of its requests
is retried alone, so one bad request fails only itself.
"""

from __future__ import annotations

import logging
from typing import Any

from rag.core.coalesce import Coalescer

__all__ = ["EngineQueue"]

logger = logging.getLogger(__name__)

_Request = tuple[str, list[Any], Any]  # ("generate" or "beam_search", prompts, params)


class EngineQueue:
    """Send the prompts of concurrent callers to `llm` together; see the module docstring."""

    def __init__(self, llm: Any) -> None:
        self._llm = llm
        self._requests: Coalescer[_Request, list[Any]] = Coalescer(self._run)

    def generate(self, prompts: list[Any], params: Any) -> list[Any]:
        """`LLM.generate(prompts, params)`'s outputs for these prompts, sent with whatever else is queued."""
        return self._requests(("generate", prompts, params))

    def beam_search(self, prompts: list[Any], params: Any) -> list[Any]:
        """`LLM.beam_search(prompts, params)`'s outputs (beam requests are not merged)."""
        return self._requests(("beam_search", prompts, params))

    def _run(self, requests: list[_Request]) -> list[list[Any] | BaseException]:
        results: list[list[Any] | BaseException] = [[] for _ in requests]
        sampling = [i for i, (kind, _, _) in enumerate(requests) if kind == "generate"]
        if sampling:
            try:
                for i, outputs in zip(sampling, self._call([requests[i] for i in sampling]), strict=True):
                    results[i] = outputs
            except Exception as exc:
                if len(sampling) > 1:
                    logger.info(
                        "a shared vLLM call failed (%s); running its %d requests one by one", exc, len(sampling)
                    )
                for i in sampling:
                    results[i] = exc if len(sampling) == 1 else self._alone(requests[i])
        for i, (kind, _, _) in enumerate(requests):
            if kind == "beam_search":
                results[i] = self._alone(requests[i])
        return results

    def _alone(self, request: _Request) -> list[Any] | BaseException:
        try:
            return self._call([request])[0]
        except Exception as exc:
            return exc

    def _call(self, requests: list[_Request]) -> list[list[Any]]:
        """One engine call for `requests` (all of one kind): each request's outputs; raises what the engine raised."""
        prompts = [prompt for _, request_prompts, _ in requests for prompt in request_prompts]
        kind, _, first_params = requests[0]
        if kind == "beam_search":
            outputs = self._llm.beam_search(prompts, first_params)
        elif len(requests) == 1:
            outputs = self._llm.generate(prompts, first_params, use_tqdm=False)
        else:
            params = [p for _, request_prompts, p in requests for _ in request_prompts]
            outputs = self._llm.generate(prompts, params, use_tqdm=False)
        split, start = [], 0
        for _, request_prompts, _ in requests:
            split.append(list(outputs[start : start + len(request_prompts)]))
            start += len(request_prompts)
        return split
