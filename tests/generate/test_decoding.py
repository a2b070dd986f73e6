"""DecodingConfig: every validation rule, YAML round trip, per-request overrides, backend support checks."""

from __future__ import annotations

import re

import pytest
import yaml

from rag.core.errors import ConfigError
from rag.generate.decoding import (
    BackendSupport,
    DecodingConfig,
    SpeculativeConfig,
    backend_support,
    check_supported,
    register_scorer,
    registered_scorer,
)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategy": "beamsearch"}, "unknown strategy 'beamsearch' (did you mean 'beam'?); allowed: greedy, sample"),
        ({"max_tokens": 0}, "max_tokens must be an integer >= 1, got 0"),
        ({"max_tokens": True}, "max_tokens must be an integer >= 1, got True"),
        ({"min_tokens": -1}, "min_tokens must be an integer >= 0"),
        ({"min_tokens": 9, "max_tokens": 8}, "min_tokens (9) must be <= max_tokens (8)"),
        ({"stop": ["ok", ""]}, "stop must be a list of non-empty strings"),
        ({"stop": [3]}, "stop must be a list of non-empty strings"),
        (
            {"strategy": "sample", "temperature": -0.1},
            "temperature must be None (the strategy's default) or a number in [0, 2]",
        ),
        ({"strategy": "sample", "temperature": 2.5}, "in [0, 2], got 2.5"),
        ({"strategy": "sample", "temperature": float("nan")}, "temperature must be"),
        ({"strategy": "sample", "sample_top_k": -1}, "sample_top_k must be an integer >= 0 (0 disables it)"),
        ({"strategy": "sample", "top_p": 0.0}, "top_p must be in (0, 1], got 0.0"),
        ({"strategy": "sample", "top_p": 1.01}, "top_p must be in (0, 1], got 1.01"),
        ({"strategy": "sample", "min_p": 1.5}, "min_p must be in [0, 1]"),
        ({"repetition_penalty": 0}, "repetition_penalty must be a number > 0 (1 disables it)"),
        ({"presence_penalty": 2.5}, "presence_penalty must be a number in [-2, 2]"),
        ({"frequency_penalty": -3}, "frequency_penalty must be a number in [-2, 2]"),
        ({"seed": -1}, "seed must be None or an integer >= 0"),
        ({"strategy": "sample", "n": 0}, "n must be an integer >= 1"),
        ({"logprobs": 21}, "logprobs must be None or an integer in [0, 20]"),
        ({"strategy": "beam", "num_beams": 0}, "num_beams must be an integer >= 1"),
        ({"strategy": "beam", "length_penalty": float("inf")}, "length_penalty must be a finite number"),
        ({"strategy": "best_of_n", "best_of": 1}, "best_of must be an integer >= 2"),
        (
            {"strategy": "best_of_n", "scorer": "mean_logprobs"},
            "unknown scorer 'mean_logprobs' (did you mean 'mean_logprob'?)",
        ),
        ({"quantization": "gtpq"}, "unknown quantization 'gtpq' (did you mean 'gptq'?); allowed: awq"),
        ({"json_schema": "{}"}, "json_schema must be None or a JSON schema dict"),
        ({"json_schema": {"default": {1, 2}}}, "json_schema must be plain JSON data"),
        ({"stream": "yes"}, "stream must be true or false"),
        ({"prefix_caching": "on"}, "prefix_caching must be None (backend default), true or false"),
        ({"speculative": "ngram"}, "speculative must be None, {'method': 'ngram'"),
        ({"speculative": {"method": "ngarm"}}, "unknown speculative method 'ngarm' (did you mean 'ngram'?)"),
        ({"speculative": {"num_speculative_tokens": 3}}, "speculative needs a method, one of ngram, draft"),
        ({"speculative": {"method": "ngram", "lookup": 3}}, "unknown speculative option 'lookup'"),
        (
            {"speculative": {"method": "ngram", "num_speculative_tokens": 0}},
            "num_speculative_tokens must be an integer >= 1",
        ),
        (
            {"speculative": {"method": "ngram", "prompt_lookup_min": 5, "prompt_lookup_max": 2}},
            "prompt_lookup_min (5) must be <= prompt_lookup_max (2)",
        ),
        (
            {"speculative": {"method": "ngram", "prompt_lookup_max": 0}},
            "prompt_lookup_max must be None or an integer >= 1",
        ),
        ({"speculative": {"method": "ngram", "model": "x"}}, "model is an option of method 'draft', not 'ngram'"),
        ({"speculative": {"method": "draft"}}, "method 'draft' needs model"),
        (
            {"speculative": {"method": "draft", "model": "m", "prompt_lookup_max": 3}},
            "prompt_lookup_max is an option of method 'ngram'",
        ),
        # combinations
        ({"temperature": 0.7}, "strategy 'greedy' is deterministic and would ignore temperature=0.7"),
        ({"strategy": "sample", "temperature": 0}, "temperature=0 is greedy decoding; use strategy 'greedy'"),
        ({"strategy": "best_of_n", "temperature": 0.0}, "temperature=0 is greedy decoding"),
        ({"top_p": 0.9}, "top_p=0.9 only applies when sampling"),
        ({"sample_top_k": 50}, "sample_top_k=50 only applies when sampling"),
        (
            {"strategy": "beam", "min_p": 0.1},
            "min_p=0.1 only applies when sampling (strategy 'sample' or 'best_of_n', or 'beam' with temperature > 0)",
        ),
        ({"num_beams": 8}, "num_beams is an option of strategy 'beam', not 'greedy'"),
        ({"strategy": "sample", "length_penalty": 0.5}, "length_penalty is an option of strategy 'beam'"),
        ({"strategy": "sample", "early_stopping": True}, "early_stopping is an option of strategy 'beam'"),
        ({"strategy": "sample", "best_of": 8}, "best_of is an option of strategy 'best_of_n', not 'sample'"),
        ({"scorer": "reranker"}, "scorer is an option of strategy 'best_of_n'"),
        ({"n": 2}, "greedy decoding gives one answer: n must be 1, got 2"),
        ({"strategy": "best_of_n", "n": 2}, "best_of_n returns the one best candidate: n must be 1"),
        ({"strategy": "beam", "num_beams": 1}, "beam search needs num_beams >= 2, got 1"),
        ({"strategy": "beam", "num_beams": 2, "n": 3}, "n (3) must be <= num_beams (2)"),
        ({"strategy": "beam", "stream": True}, "stream=true needs one answer built left to right"),
        ({"strategy": "best_of_n", "stream": True}, "stream=true needs one answer"),
        ({"strategy": "sample", "n": 2, "stream": True}, "stream=true needs one answer"),
    ],
)
def test_each_invalid_value_or_combination_is_a_config_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        DecodingConfig(**kwargs)


def test_every_problem_is_listed_in_one_error() -> None:
    with pytest.raises(ConfigError) as info:
        DecodingConfig(strategy="sample", top_p=2, max_tokens=0, quantization="fp9", stream=1)
    text = str(info.value)
    for part in ("top_p must be in (0, 1]", "max_tokens must be", "unknown quantization 'fp9'", "stream must be"):
        assert part in text


def test_valid_configs_of_every_strategy() -> None:
    assert DecodingConfig().effective_temperature == 0.0
    sample = DecodingConfig(strategy="sample", top_p=0.9, sample_top_k=40, min_p=0.05, n=3, seed=1)
    assert sample.sampling and sample.effective_temperature == 1.0
    beam = DecodingConfig(strategy="beam", num_beams=4, n=2, length_penalty=0.6, early_stopping=True)
    assert not beam.sampling
    beam_sample = DecodingConfig(strategy="beam", temperature=0.8, top_p=0.9)
    assert beam_sample.sampling
    best = DecodingConfig(strategy="best_of_n", best_of=5, scorer="reranker", temperature=0.7)
    assert best.effective_temperature == 0.7
    assert DecodingConfig(temperature=0).used_options() == set()  # greedy with an explicit 0 is fine
    assert DecodingConfig(stop="\n").stop == ("\n",)


def test_yaml_round_trip_keeps_only_non_defaults() -> None:
    config = DecodingConfig(
        strategy="sample",
        temperature=0.7,
        top_p=0.9,
        stop=["\n\n"],
        max_tokens=64,
        speculative={"method": "draft", "model": "HuggingFaceTB/SmolLM2-135M-Instruct", "num_speculative_tokens": 3},
        prefix_caching=False,
        quantization="awq",
        json_schema={"type": "object", "properties": {"a": {"type": "string"}}},
    )
    data = config.to_dict()
    assert data["speculative"] == {
        "method": "draft",
        "num_speculative_tokens": 3,
        "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
    }
    assert "sample_top_k" not in data and data["stop"] == ["\n\n"]
    assert DecodingConfig.from_dict(yaml.safe_load(yaml.safe_dump(data))) == config
    assert DecodingConfig().to_dict() == {"strategy": "greedy"}
    assert isinstance(config.speculative, SpeculativeConfig)
    assert hash(config) == hash(DecodingConfig.from_dict(data))


def test_from_dict_rejects_unknown_keys_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=re.escape("unknown option 'temprature' (did you mean 'temperature'?)")):
        DecodingConfig.from_dict({"temprature": 0.5})
    with pytest.raises(ConfigError, match="expected a mapping"):
        DecodingConfig.from_dict(["greedy"])  # type: ignore[arg-type]
    assert DecodingConfig.from_dict({"speculative": "none"}).speculative is None


def test_json_schema_is_copied_not_shared() -> None:
    schema = {"type": "object"}
    config = DecodingConfig(json_schema=schema)
    schema["type"] = "array"
    assert config.json_schema == {"type": "object"}


def test_merged_validates_again_and_leaves_the_original_alone() -> None:
    base = DecodingConfig(strategy="sample", temperature=0.8, top_p=0.9, max_tokens=100)
    assert base.merged(max_tokens=10).max_tokens == 10
    assert base.max_tokens == 100
    with pytest.raises(ConfigError, match="top_p must be in"):
        base.merged(top_p=0)
    with pytest.raises(ConfigError, match="did you mean 'seed'"):
        base.merged(sed=1)


def test_merged_strategy_change_resets_options_the_new_strategy_does_not_take() -> None:
    base = DecodingConfig(strategy="sample", temperature=0.8, top_p=0.9, n=2, seed=7, max_tokens=50)
    greedy = base.merged(strategy="greedy")
    assert (greedy.temperature, greedy.top_p, greedy.n, greedy.seed, greedy.max_tokens) == (None, 1.0, 1, 7, 50)
    beam = base.merged(strategy="beam", num_beams=3)
    assert (beam.num_beams, beam.n, beam.temperature) == (3, 2, None)
    best = base.merged(strategy="best_of_n", best_of=6)
    assert (best.temperature, best.top_p, best.n) == (0.8, 0.9, 1)
    with pytest.raises(ConfigError, match="strategy 'greedy' is deterministic"):
        base.merged(strategy="greedy", temperature=0.5)  # an explicit override is never reset


def test_registered_scorer_names_are_accepted() -> None:
    def overlap(candidate: str, passages: list[str]) -> float:
        return float(sum(candidate in p for p in passages))

    register_scorer("test_overlap", overlap)
    config = DecodingConfig(strategy="best_of_n", scorer="test_overlap")
    assert registered_scorer(config.scorer) is overlap
    with pytest.raises(ConfigError, match="other than"):
        register_scorer("reranker", overlap)
    with pytest.raises(ConfigError, match="must be callable"):
        register_scorer("x", "not callable")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no scorer is registered as 'missing'"):
        registered_scorer("missing")


TOY = BackendSupport(
    name="toy",
    options={
        "greedy": frozenset({"max_tokens", "min_p"}),
        "sample": frozenset({"temperature", "min_p", "speculative"}),
    },
    reasons={"beam": "toy has no beams", "sample.top_p": "toy samples without nucleus filtering"},
    conflicts=((frozenset({"min_p", "speculative"}), "toy cannot combine min_p and speculative"),),
)


def test_check_supported_lists_what_the_backend_cannot_do() -> None:
    check_supported(DecodingConfig(max_tokens=5), TOY)
    check_supported(DecodingConfig(strategy="sample", temperature=1.0), TOY)  # the default temperature is not "used"
    with pytest.raises(ConfigError, match="strategy 'beam' is not supported by toy: toy has no beams"):
        check_supported(DecodingConfig(strategy="beam"), TOY)
    with pytest.raises(ConfigError, match="strategy 'best_of_n' is not supported by toy: it supports greedy, sample"):
        check_supported(DecodingConfig(strategy="best_of_n"), TOY)
    config = DecodingConfig(strategy="sample", top_p=0.5, seed=3, min_p=0.1, speculative={"method": "ngram"})
    with pytest.raises(ConfigError) as info:
        check_supported(config, TOY)
    text = str(info.value)
    assert "top_p=0.5 with strategy 'sample' is not supported: toy samples without nucleus filtering" in text
    assert "seed=3 with strategy 'sample' is not supported: leave it at its default (None)" in text
    assert "toy cannot combine min_p and speculative" in text


def test_backend_support_by_name() -> None:
    assert backend_support("vllm").name == "vllm"
    assert backend_support("openai").name == "openai"
    with pytest.raises(ConfigError, match="unknown generator backend 'vlm' \\(did you mean 'vllm'\\?\\)"):
        backend_support("vlm")


def test_every_generator_backend_keeps_the_one_generator_contract() -> None:
    from rag.core.errors import ConfigError
    from rag.generate.base import Generator
    from rag.generate.openai_generator import OpenAIGenerator
    from rag.generate.transformers_generator import TransformersGenerator
    from rag.generate.vllm_generator import VLLMGenerator

    for cls, args in ((TransformersGenerator, {}), (VLLMGenerator, {}), (OpenAIGenerator, {"model": "m"})):
        generator = cls(**args)
        assert isinstance(generator, Generator) and {"reply", "usage", "candidates"} <= set(generator.outputs)
        assert generator.run([])["reply"] == ""  # nothing to answer from: no model, no request
        with pytest.raises(ConfigError, match=f"{cls.__name__}: messages must be a list"):
            generator.run([{"text": "no role"}])
        with pytest.raises(ConfigError, match="model must be"):
            cls(**{**args, "model": " "})
    assert "grounded" in TransformersGenerator.answer_modes and "grounded" not in OpenAIGenerator.answer_modes
