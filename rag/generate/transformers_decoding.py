"""Map a `DecodingConfig` onto transformers' `generate`: what the backend supports, the `GenerationConfig` fields,
and the pieces of text a stream sends (stop strings cut off, as vLLM and OpenAI servers do).

Pure Python: nothing here imports torch or transformers. Checked against transformers 5.23
(`generation/configuration_utils.py`, `generation/utils.py`, `generation/candidate_generator.py`):

- greedy / sample: ``do_sample``, ``temperature``, ``top_k`` (from ``sample_top_k``; 0 disables; unset means 50),
  ``top_p``, ``min_p``, ``repetition_penalty``, ``num_return_sequences`` (n samples, batched);
- beam: ``num_beams``, ``length_penalty``, ``early_stopping``, ``num_return_sequences`` (n beams, best first,
  ranked by ``sequences_scores`` = sum of log-probabilities / generated length ** length_penalty);
  ``do_sample`` with beams is beam sampling;
- ``stop_strings`` (needs the tokenizer passed to `generate`), ``min_new_tokens``;
- prompt lookup: ``prompt_lookup_num_tokens``, ``max_matching_ngram_size`` (no minimum n-gram size);
  a draft model: ``assistant_model``, proposing its generation config's ``num_assistant_tokens`` per step.
  Both are assisted generation, which runs only greedy or sample decoding with one sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rag.core.errors import ConfigError
from rag.generate.decoding import SAMPLING_OPTIONS, BackendSupport, DecodingConfig, check_supported

__all__ = ["TRANSFORMERS_SUPPORT", "PieceStream", "check_transformers", "generation_kwargs", "trim_at_stop"]

_SAMPLING = frozenset({"temperature", *SAMPLING_OPTIONS})
_ANY = frozenset({"max_tokens", "min_tokens", "stop", "seed", "repetition_penalty", "prefix_caching"})
_ONE_SEQUENCE = "transformers' assisted generation (speculative decoding) runs only greedy or sample decoding"

TRANSFORMERS_SUPPORT = BackendSupport(
    name="transformers",
    options={
        "greedy": _ANY | {"speculative", "stream"},
        "sample": _ANY | _SAMPLING | {"n", "speculative", "stream"},
        "beam": _ANY | _SAMPLING | {"n", "num_beams", "length_penalty", "early_stopping"},
        "best_of_n": _ANY | _SAMPLING | {"best_of", "scorer"},
    },
    reasons={
        "presence_penalty": "transformers' generate has no presence penalty; use repetition_penalty, or vllm",
        "frequency_penalty": "transformers' generate has no frequency penalty; use repetition_penalty, or vllm",
        "logprobs": "the transformers backend returns no per-token log-probabilities; use vllm or the openai backend",
        "json_schema": "transformers' generate has no JSON-schema constrained decoding; use vllm",
        "quantization": "the transformers backend loads float weights (pick them with dtype); use vllm for quantized",
        "beam.speculative": f"{_ONE_SEQUENCE}, not beam search",
        "best_of_n.speculative": f"{_ONE_SEQUENCE} with one sequence, not best-of-N",
    },
    conflicts=((frozenset({"speculative", "n"}), f"{_ONE_SEQUENCE} with one sequence: n must be 1"),),
)


def check_transformers(config: DecodingConfig) -> None:
    """Raise a `ConfigError` listing what `config` asks that the transformers backend cannot do."""
    check_supported(config, TRANSFORMERS_SUPPORT)
    spec = config.speculative
    if spec is not None and spec.prompt_lookup_min is not None:
        raise ConfigError(
            f"transformers cannot decode with this config: speculative.prompt_lookup_min={spec.prompt_lookup_min} "
            "is not supported: transformers' prompt lookup matches n-grams from prompt_lookup_max down to 1; "
            "leave prompt_lookup_min unset"
        )
    if config.strategy == "best_of_n" and config.scorer == "reranker":
        raise ConfigError(
            "transformers cannot decode with this config: scorer='reranker' is not available (no reranker ships "
            "with rag); use 'mean_logprob', or register_scorer(name, fn) and set scorer to that name"
        )


def generation_kwargs(config: DecodingConfig) -> dict[str, Any]:
    """The `transformers.GenerationConfig` fields for `config` (after `check_transformers`).

    Every field that changes the decoding algorithm is set, so a model's own ``generation_config.json``
    cannot switch greedy into sampling or add a top-k of 50. A draft model is not a field: the generator
    passes it as ``assistant_model``.
    """
    check_transformers(config)
    strategy = config.strategy
    beam = strategy == "beam"
    sequences = config.best_of if strategy == "best_of_n" else config.n
    kwargs: dict[str, Any] = {
        "max_new_tokens": config.max_tokens,
        "do_sample": config.sampling,
        "num_beams": config.num_beams if beam else 1,
        "num_return_sequences": sequences,
        "repetition_penalty": config.repetition_penalty,
    }
    if config.sampling:
        kwargs |= {
            "temperature": config.effective_temperature,
            "top_k": config.sample_top_k,
            "top_p": config.top_p,
            "min_p": config.min_p,
        }
    if beam:
        kwargs |= {"length_penalty": config.length_penalty, "early_stopping": config.early_stopping}
    if beam or sequences > 1:  # scores to rank or report the sequences
        kwargs |= {"return_dict_in_generate": True, "output_scores": beam, "output_logits": not beam}
    if config.min_tokens:
        kwargs["min_new_tokens"] = config.min_tokens
    if config.stop:
        kwargs["stop_strings"] = list(config.stop)
    spec = config.speculative
    if spec is not None and spec.method == "ngram":
        kwargs["prompt_lookup_num_tokens"] = spec.num_speculative_tokens
        if spec.prompt_lookup_max is not None:
            kwargs["max_matching_ngram_size"] = spec.prompt_lookup_max
    return kwargs


def trim_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to the first stop string (transformers keeps the stop string; vLLM and OpenAI drop it)."""
    cut = min((i for s in stop if (i := text.find(s)) >= 0), default=len(text))
    return text[:cut]


class PieceStream:
    """Turn the growing decoded text of one sequence into pieces for `on_token`.

    `update(text)` is given the whole text decoded so far; it sends the new part, holding back a trailing
    partial character (``\\ufffd``) and any tail that may be the start of a stop string. `finish(text)`
    sends the rest of the final text, so the pieces always join to ``trim_at_stop(text, stop)``.
    """

    def __init__(self, on_piece: Callable[[str], None], stop: Sequence[str] = ()) -> None:
        self.on_piece = on_piece
        self.stop = tuple(stop)
        self.sent = 0

    def update(self, text: str) -> None:
        trimmed = trim_at_stop(text, self.stop)
        safe = len(trimmed)
        if safe == len(text):  # no stop string yet: hold back what may begin one
            safe -= max((k for s in self.stop for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
            safe -= len(text[:safe]) - len(text[:safe].rstrip("\ufffd"))
        self._send(text[:safe])

    def finish(self, text: str) -> str:
        final = trim_at_stop(text, self.stop)
        self._send(final)
        return final

    def _send(self, text: str) -> None:
        if len(text) > self.sent:
            piece, self.sent = text[self.sent :], len(text)
            self.on_piece(piece)
