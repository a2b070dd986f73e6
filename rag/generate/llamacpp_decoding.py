"""Map a `DecodingConfig` onto llama.cpp (through `llama-cpp-python`): what the backend supports, the sampler
arguments of `Llama.generate`, and the logits processors that do what llama.cpp's own samplers do not.

Pure Python and numpy: nothing here imports `llama_cpp`. Checked against llama-cpp-python 0.3.36
(`llama_cpp/llama.py` `Llama.generate` and `Llama._init_sampler`; the vendored `llama.cpp/src/llama-sampler.cpp`):

- the sampler chain is: our logits processors (a custom sampler, first, on the raw logits in token-id order),
  penalties (``repeat_penalty``, ``frequency_penalty``, ``presence_penalty`` over the last ``last_n_tokens_size``
  *generated* tokens), a grammar (``json_schema``), then ``greedy`` when ``temp == 0``, else ``top_k`` (0 disables
  it), ``typical_p``, ``top_p`` (1 disables it), ``min_p`` (0 disables it), ``temp`` and a seeded ``dist``.
  llama.cpp applies the temperature after the top-k/top-p/min-p cut-offs; transformers applies it before, so
  the same sampling settings draw from slightly different distributions on the two backends.
- ``repetition_penalty`` is applied here (`RepetitionPenalty`), not by llama.cpp's sampler, because llama.cpp
  counts only generated tokens while transformers and vLLM also count the prompt's: this keeps the meaning the
  option has on the other backends (a token already in the prompt or the reply has its logit divided by the
  penalty when positive, multiplied when negative).
- ``min_tokens``: end-of-generation tokens are masked until that many tokens were generated (`MinTokens`).
- no beam search, no multi-sequence sampling (n, best-of-N), no per-token log-probabilities in the generator
  loop, and speculative decoding only with ``logits_all`` (a float per vocabulary entry for every position of
  the context): all refused with a reason.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from rag.generate.decoding import SAMPLING_OPTIONS, BackendSupport, DecodingConfig, check_supported

__all__ = ["LLAMACPP_SUPPORT", "MinTokens", "RepetitionPenalty", "check_llamacpp", "sampler_kwargs"]

_ANY = frozenset(
    {"max_tokens", "min_tokens", "stop", "seed", "stream", "json_schema", "prefix_caching"}
    | {"repetition_penalty", "presence_penalty", "frequency_penalty"}
)
_OTHER_BACKEND = "use the transformers backend (CPU) or vllm (GPU)"

LLAMACPP_SUPPORT = BackendSupport(
    name="llamacpp",
    options={
        "greedy": _ANY,
        "sample": _ANY | {"temperature", *SAMPLING_OPTIONS},
    },
    reasons={
        "beam": f"llama-cpp-python has no beam search; {_OTHER_BACKEND}",
        "best_of_n": f"llama-cpp-python decodes one sequence at a time and scores none; {_OTHER_BACKEND}",
        "n": f"llama-cpp-python decodes one sequence per request: n must be 1; send n requests, or {_OTHER_BACKEND}",
        "logprobs": "the llamacpp backend returns no per-token log-probabilities; use vllm or the openai backend",
        "speculative": "llama-cpp-python's speculative decoding (prompt lookup) keeps logits for every position of "
        "the context (context length x vocabulary floats: 800 MB for SmolLM2 at 4096 tokens) and did not pay on CPU "
        "in our measurements; leave speculative unset",
        "quantization": "the GGUF file carries its own quantization (Q4_1 for the packaged SmolLM2); give the path "
        "of a GGUF file quantized the way you want",
    },
)


def check_llamacpp(config: DecodingConfig) -> None:
    """Raise a `ConfigError` listing what `config` asks that the llamacpp backend cannot do."""
    check_supported(config, LLAMACPP_SUPPORT)


def sampler_kwargs(config: DecodingConfig) -> dict[str, Any]:
    """The sampler arguments of `Llama.generate` for `config` (after `check_llamacpp`).

    Every argument is set, so llama-cpp-python's defaults (top_k 40, top_p 0.95, min_p 0.05, temp 0.8) never
    apply. ``repeat_penalty`` stays 1: `RepetitionPenalty` does it with the prompt counted.
    """
    check_llamacpp(config)
    sampling = config.sampling
    return {
        "temp": config.effective_temperature if sampling else 0.0,
        "top_k": config.sample_top_k if sampling else 0,
        "top_p": config.top_p if sampling else 1.0,
        "min_p": config.min_p if sampling else 0.0,
        "typical_p": 1.0,
        "repeat_penalty": 1.0,
        "frequency_penalty": config.frequency_penalty,
        "presence_penalty": config.presence_penalty,
    }


LogitsProcessor = Callable[[Any, Any], Any]
"""llama-cpp-python's logits processor: (context token ids, logits of the next token) -> logits (numpy)."""


class RepetitionPenalty:
    """transformers' `RepetitionPenaltyLogitsProcessor` on numpy: every token of the context (prompt and reply)
    has its logit divided by `penalty` when positive, multiplied when negative."""

    def __init__(self, penalty: float) -> None:
        self.penalty = penalty

    def __call__(self, input_ids: Any, logits: Any) -> Any:
        import numpy as np

        seen = np.unique(np.asarray(input_ids, dtype=np.int64))
        values = logits[seen]
        logits[seen] = np.where(values > 0, values / self.penalty, values * self.penalty)
        return logits


class MinTokens:
    """Mask the end-of-generation tokens `eog` until `min_tokens` tokens follow the prompt's `prompt_length`."""

    def __init__(self, min_tokens: int, prompt_length: int, eog: Collection[int]) -> None:
        self.min_tokens = min_tokens
        self.prompt_length = prompt_length
        self.eog = sorted(eog)

    def __call__(self, input_ids: Any, logits: Any) -> Any:
        if len(input_ids) - self.prompt_length < self.min_tokens:
            logits[self.eog] = float("-inf")
        return logits
