"""Map a `DecodingConfig` onto vLLM: `SamplingParams`, `BeamSearchParams` and `LLM(...)` engine arguments.

The mapping functions return plain dicts, so they are testable without vLLM; `to_sampling_params` and
`to_beam_search_params` import vLLM lazily. Verified by reading the source of vLLM 0.26.0 and 0.33.0
(the latest release on 2026-11-22):

- `vllm/sampling_params.py` `SamplingParams`: n, temperature (in [0, 2]; 0 is greedy and then n must
  be 1), top_p, sample_top_k (vLLM's top_k; 0 disables), min_p, repetition_penalty, presence_penalty, frequency_penalty
  (both in [-2, 2]), seed, stop, max_tokens, min_tokens, logprobs, structured_outputs
  (`StructuredOutputsParams(json=schema)`). There is no ``best_of`` and no ``use_beam_search``: both
  were removed, so best-of-N asks for n=best_of samples and `rag` scores them itself.
  ``min_p`` cannot be combined with speculative decoding (`_validate_spec_decode`).
- `BeamSearchParams` (same module): beam_width, max_tokens, temperature, length_penalty,
  structured_outputs. Beam search runs only through `LLM.beam_search(prompts, params)`
  (`vllm/entrypoints/generate/beam_search/offline.py`), which ranks beams by cumulative log-probability:
  no stop strings, penalties, min_tokens, early stopping or sampling.
- `LLM(model, quantization=..., **EngineArgs)` (`vllm/entrypoints/llm.py`, `vllm/engine/arg_utils.py`):
  ``enable_prefix_caching: bool | None`` (None: vLLM's default, on) and ``speculative_config: dict``
  (`vllm/config/speculative.py`): method ``ngram`` with num_speculative_tokens, prompt_lookup_max,
  prompt_lookup_min (vLLM defaults both to 5), or method ``draft_model`` with model.
  ``bitsandbytes`` is a quantization method in 0.26.0 but no longer in 0.33.0.
"""

from __future__ import annotations

from typing import Any

from rag.core.errors import InvalidArgumentError, MissingDependencyError
from rag.generate.decoding import (
    ENGINE_OPTIONS,
    GENERAL_OPTIONS,
    SAMPLING_OPTIONS,
    BackendSupport,
    DecodingConfig,
    check_supported,
)

__all__ = [
    "VLLM_SUPPORT",
    "beam_search_kwargs",
    "engine_kwargs",
    "sampling_kwargs",
    "to_beam_search_params",
    "to_sampling_params",
]

_SAMPLING = frozenset({"temperature", *SAMPLING_OPTIONS, "n"})
_BEAM_SEARCH = frozenset({"max_tokens", "json_schema", "seed", "n", "num_beams", "length_penalty"})
_DETERMINISTIC_BEAM = (
    "LLM.beam_search is deterministic; use strategy='beam' with temperature=0, or the transformers backend"
)

VLLM_SUPPORT = BackendSupport(
    name="vllm",
    options={
        "greedy": GENERAL_OPTIONS | ENGINE_OPTIONS,
        "sample": GENERAL_OPTIONS | _SAMPLING | ENGINE_OPTIONS,
        "beam": _BEAM_SEARCH | ENGINE_OPTIONS,
        "best_of_n": GENERAL_OPTIONS | _SAMPLING | ENGINE_OPTIONS | {"best_of", "scorer"},
    },
    reasons={
        **{
            f"beam.{o}": f"beam search with sampling is not supported by vllm: {_DETERMINISTIC_BEAM}"
            for o in ("temperature", *SAMPLING_OPTIONS)
        },
        **{
            f"beam.{o}": "vllm's LLM.beam_search takes only num_beams, length_penalty, max_tokens and json_schema"
            for o in ("stop", "min_tokens", "logprobs", "repetition_penalty", "presence_penalty", "frequency_penalty")
        },
        "beam.early_stopping": "vllm's beam search has no early stopping; it stops at max_tokens or when all beams end",
    },
    conflicts=(
        (frozenset({"min_p", "speculative"}), "vllm does not support min_p with speculative decoding; drop one"),
    ),
)


def sampling_kwargs(config: DecodingConfig) -> dict[str, Any]:
    """Keyword arguments of `vllm.SamplingParams` for greedy, sample and best_of_n (n = best_of)."""
    check_supported(config, VLLM_SUPPORT)
    if config.strategy == "beam":
        raise InvalidArgumentError("strategy 'beam' maps to BeamSearchParams: call beam_search_kwargs()")
    best_of_n = config.strategy == "best_of_n"
    logprobs = config.logprobs
    if best_of_n and config.scorer == "mean_logprob" and logprobs is None:
        logprobs = 0  # the sampled token's log-probability, to score candidates
    kwargs: dict[str, Any] = {
        "n": config.best_of if best_of_n else config.n,
        "temperature": config.effective_temperature,
        "top_p": config.top_p,
        "top_k": config.sample_top_k,
        "min_p": config.min_p,
        "repetition_penalty": config.repetition_penalty,
        "presence_penalty": config.presence_penalty,
        "frequency_penalty": config.frequency_penalty,
        "seed": config.seed,
        "max_tokens": config.max_tokens,
        "min_tokens": config.min_tokens,
        "stop": list(config.stop),
        "logprobs": logprobs,
    }
    if config.json_schema is not None:
        kwargs["structured_outputs"] = {"json": config.json_schema}
    return kwargs


def beam_search_kwargs(config: DecodingConfig) -> dict[str, Any]:
    """Keyword arguments of `vllm.sampling_params.BeamSearchParams`, for `LLM.beam_search`.

    vLLM returns `num_beams` sequences best first; keep the first `config.n`.
    """
    check_supported(config, VLLM_SUPPORT)
    if config.strategy != "beam":
        raise InvalidArgumentError(f"strategy {config.strategy!r} maps to SamplingParams: call sampling_kwargs()")
    kwargs: dict[str, Any] = {
        "beam_width": config.num_beams,
        "max_tokens": config.max_tokens,
        "temperature": 0.0,
        "length_penalty": config.length_penalty,
    }
    if config.json_schema is not None:
        kwargs["structured_outputs"] = {"json": config.json_schema}
    return kwargs


def engine_kwargs(config: DecodingConfig) -> dict[str, Any]:
    """The `vllm.LLM(...)` keyword arguments for the engine options (only those that are set)."""
    check_supported(config, VLLM_SUPPORT)
    kwargs: dict[str, Any] = {}
    if config.prefix_caching is not None:
        kwargs["enable_prefix_caching"] = config.prefix_caching
    if config.quantization is not None:
        kwargs["quantization"] = config.quantization
    spec = config.speculative
    if spec is not None:
        speculative: dict[str, Any] = {"num_speculative_tokens": spec.num_speculative_tokens}
        if spec.method == "draft":
            speculative |= {"method": "draft_model", "model": spec.model}
        else:
            speculative["method"] = "ngram"
            for name in ("prompt_lookup_max", "prompt_lookup_min"):
                if getattr(spec, name) is not None:
                    speculative[name] = getattr(spec, name)
        kwargs["speculative_config"] = speculative
    return kwargs


def to_sampling_params(config: DecodingConfig) -> Any:
    """A `vllm.SamplingParams` for `config` (imports vLLM)."""
    kwargs = sampling_kwargs(config)
    vllm_sampling = _import_sampling_params()
    if "structured_outputs" in kwargs:
        kwargs["structured_outputs"] = vllm_sampling.StructuredOutputsParams(**kwargs["structured_outputs"])
    return vllm_sampling.SamplingParams(**kwargs)


def to_beam_search_params(config: DecodingConfig) -> Any:
    """A `vllm.sampling_params.BeamSearchParams` for `config` (imports vLLM)."""
    kwargs = beam_search_kwargs(config)
    vllm_sampling = _import_sampling_params()
    if "structured_outputs" in kwargs:
        kwargs["structured_outputs"] = vllm_sampling.StructuredOutputsParams(**kwargs["structured_outputs"])
    return vllm_sampling.BeamSearchParams(**kwargs)


def _import_sampling_params() -> Any:
    try:
        import vllm.sampling_params
    except ImportError as exc:
        raise MissingDependencyError("vllm", "vllm", "Decoding with vLLM") from exc
    return vllm.sampling_params
