"""DecodingConfig -> vLLM SamplingParams / BeamSearchParams / LLM kwargs, and what vLLM refuses."""

from __future__ import annotations

import re
import sys

import pytest

from rag.core.errors import ConfigError, MissingDependencyError
from rag.generate.decoding import DecodingConfig, check_supported
from rag.generate.vllm_params import (
    beam_search_kwargs,
    engine_kwargs,
    sampling_kwargs,
    to_beam_search_params,
    to_sampling_params,
)

GREEDY_KWARGS = {
    "n": 1,
    "temperature": 0.0,
    "top_p": 1.0,
    "top_k": 0,
    "min_p": 0.0,
    "repetition_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "seed": None,
    "max_tokens": 256,
    "min_tokens": 0,
    "stop": [],
    "logprobs": None,
}


def test_greedy_maps_to_temperature_zero() -> None:
    assert sampling_kwargs(DecodingConfig()) == GREEDY_KWARGS


def test_every_sampling_option_is_mapped() -> None:
    config = DecodingConfig(
        strategy="sample",
        temperature=0.7,
        top_p=0.9,
        sample_top_k=40,
        min_p=0.05,
        repetition_penalty=1.1,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        seed=3,
        n=2,
        max_tokens=64,
        min_tokens=4,
        stop=["\n\n", "Question:"],
        logprobs=5,
        json_schema={"type": "object"},
    )
    assert sampling_kwargs(config) == {
        "n": 2,
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 40,
        "min_p": 0.05,
        "repetition_penalty": 1.1,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "seed": 3,
        "max_tokens": 64,
        "min_tokens": 4,
        "stop": ["\n\n", "Question:"],
        "logprobs": 5,
        "structured_outputs": {"json": {"type": "object"}},
    }


def test_unset_sampling_temperature_is_one() -> None:
    assert sampling_kwargs(DecodingConfig(strategy="sample"))["temperature"] == 1.0


def test_best_of_n_asks_for_best_of_samples_with_their_logprobs() -> None:
    kwargs = sampling_kwargs(DecodingConfig(strategy="best_of_n", best_of=6, temperature=0.9))
    assert (kwargs["n"], kwargs["temperature"], kwargs["logprobs"]) == (6, 0.9, 0)
    assert "best_of" not in kwargs  # removed from vLLM's SamplingParams
    reranked = sampling_kwargs(DecodingConfig(strategy="best_of_n", scorer="reranker"))
    assert reranked["logprobs"] is None


def test_beam_maps_to_beam_search_params() -> None:
    config = DecodingConfig(strategy="beam", num_beams=5, n=2, length_penalty=0.7, max_tokens=40)
    assert beam_search_kwargs(config) == {"beam_width": 5, "max_tokens": 40, "temperature": 0.0, "length_penalty": 0.7}
    with_schema = beam_search_kwargs(DecodingConfig(strategy="beam", json_schema={"type": "string"}))
    assert with_schema["structured_outputs"] == {"json": {"type": "string"}}
    with pytest.raises(ValueError, match="call beam_search_kwargs"):
        sampling_kwargs(config)
    with pytest.raises(ValueError, match="call sampling_kwargs"):
        beam_search_kwargs(DecodingConfig())


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            DecodingConfig(strategy="beam", temperature=0.8),
            "beam search with sampling is not supported by vllm: LLM.beam_search is deterministic; "
            "use strategy='beam' with temperature=0",
        ),
        (
            DecodingConfig(strategy="beam", stop=["\n"]),
            "takes only num_beams, length_penalty, max_tokens and json_schema",
        ),
        (DecodingConfig(strategy="beam", repetition_penalty=1.2), "repetition_penalty=1.2 with strategy 'beam'"),
        (DecodingConfig(strategy="beam", early_stopping=True), "vllm's beam search has no early stopping"),
        (
            DecodingConfig(strategy="sample", min_p=0.1, speculative={"method": "ngram"}),
            "vllm does not support min_p with speculative decoding",
        ),
    ],
)
def test_what_vllm_cannot_do_is_refused_with_the_reason(config: DecodingConfig, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_supported(config, "vllm")
    with pytest.raises(ConfigError, match=re.escape(message)):
        (beam_search_kwargs if config.strategy == "beam" else sampling_kwargs)(config)


def test_engine_kwargs() -> None:
    assert engine_kwargs(DecodingConfig()) == {}
    config = DecodingConfig(
        prefix_caching=False,
        quantization="fp8",
        speculative={"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 3, "prompt_lookup_min": 2},
    )
    assert engine_kwargs(config) == {
        "enable_prefix_caching": False,
        "quantization": "fp8",
        "speculative_config": {
            "num_speculative_tokens": 4,
            "method": "ngram",
            "prompt_lookup_max": 3,
            "prompt_lookup_min": 2,
        },
    }
    draft = DecodingConfig(speculative={"method": "draft", "model": "small-model", "num_speculative_tokens": 3})
    assert engine_kwargs(draft)["speculative_config"] == {
        "num_speculative_tokens": 3,
        "method": "draft_model",
        "model": "small-model",
    }
    assert engine_kwargs(DecodingConfig(speculative={"method": "ngram"}))["speculative_config"] == {
        "num_speculative_tokens": 5,
        "method": "ngram",
    }


def test_missing_vllm_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", None)
    with pytest.raises(MissingDependencyError, match=re.escape("pip install 'rag[vllm]'")):
        to_sampling_params(DecodingConfig())


def test_real_vllm_accepts_the_produced_kwargs() -> None:
    sampling_params = pytest.importorskip("vllm.sampling_params")
    config = DecodingConfig(
        strategy="sample", temperature=0.7, sample_top_k=40, min_p=0.05, stop=["\n"], json_schema={"type": "object"}
    )
    params = to_sampling_params(config)
    assert isinstance(params, sampling_params.SamplingParams)
    assert (params.temperature, params.top_k, params.min_p, params.stop) == (0.7, 40, 0.05, ["\n"])
    assert params.structured_outputs.json == {"type": "object"}
    greedy = to_sampling_params(DecodingConfig(min_tokens=2))
    assert greedy.sampling_type == sampling_params.SamplingType.GREEDY
    best = to_sampling_params(DecodingConfig(strategy="best_of_n", best_of=3))
    assert best.n == 3 and best.logprobs == 0
    beam = to_beam_search_params(DecodingConfig(strategy="beam", num_beams=3, length_penalty=0.5))
    assert (beam.beam_width, beam.length_penalty, beam.temperature) == (3, 0.5, 0.0)
