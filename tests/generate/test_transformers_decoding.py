"""The DecodingConfig -> transformers `generate` mapping, what the backend refuses, and stream pieces."""

from __future__ import annotations

import re

import pytest

from rag.core.errors import ConfigError
from rag.generate.decoding import DecodingConfig, backend_support
from rag.generate.transformers_decoding import (
    TRANSFORMERS_SUPPORT,
    PieceStream,
    check_transformers,
    generation_kwargs,
    trim_at_stop,
)


def kwargs(**options: object) -> dict[str, object]:
    return generation_kwargs(DecodingConfig(**options))  # type: ignore[arg-type]


def test_backend_support_is_registered_by_name() -> None:
    assert backend_support("transformers") is TRANSFORMERS_SUPPORT


def test_greedy_sets_every_algorithm_field_and_no_sampling_ones() -> None:
    assert kwargs(max_tokens=16) == {
        "max_new_tokens": 16,
        "do_sample": False,
        "num_beams": 1,
        "num_return_sequences": 1,
        "repetition_penalty": 1.0,
    }


def test_sampling_fields_are_explicit_so_model_defaults_cannot_leak() -> None:
    out = kwargs(strategy="sample", top_p=0.9, min_p=0.05, repetition_penalty=1.1, seed=3)
    assert out["do_sample"] is True
    assert (out["temperature"], out["top_k"], out["top_p"], out["min_p"]) == (1.0, 0, 0.9, 0.05)
    assert out["repetition_penalty"] == 1.1 and "seed" not in out  # the seed seeds torch, it is no field


def test_n_samples_are_returned_with_their_logits() -> None:
    out = kwargs(strategy="sample", temperature=0.7, sample_top_k=40, n=3)
    assert out["num_return_sequences"] == 3 and out["top_k"] == 40 and out["temperature"] == 0.7
    assert out["return_dict_in_generate"] is True and out["output_logits"] is True and out["output_scores"] is False


def test_beam_search_returns_n_beams_with_scores() -> None:
    out = kwargs(strategy="beam", num_beams=4, n=2, length_penalty=0.5, early_stopping=True)
    assert (out["num_beams"], out["num_return_sequences"], out["do_sample"]) == (4, 2, False)
    assert out["length_penalty"] == 0.5 and out["early_stopping"] is True
    assert out["return_dict_in_generate"] is True and out["output_scores"] is True
    assert "temperature" not in out


def test_beam_with_temperature_is_beam_sampling() -> None:
    out = kwargs(strategy="beam", temperature=0.8, top_p=0.9)
    assert out["do_sample"] is True and out["num_beams"] == 4 and out["top_p"] == 0.9


def test_best_of_n_samples_best_of_sequences_with_logits() -> None:
    out = kwargs(strategy="best_of_n", best_of=5, temperature=0.9)
    assert out["num_return_sequences"] == 5 and out["do_sample"] is True and out["output_logits"] is True


def test_length_stop_and_prompt_lookup() -> None:
    out = kwargs(min_tokens=2, stop=["\n\n", "Question:"])
    assert out["min_new_tokens"] == 2 and out["stop_strings"] == ["\n\n", "Question:"]
    spec = {"method": "ngram", "num_speculative_tokens": 7, "prompt_lookup_max": 3}
    out = kwargs(speculative=spec)
    assert out["prompt_lookup_num_tokens"] == 7 and out["max_matching_ngram_size"] == 3
    draft = kwargs(speculative={"method": "draft", "model": "m"})
    assert "prompt_lookup_num_tokens" not in draft and "assistant_model" not in draft


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"presence_penalty": 0.5}, "presence_penalty=0.5 with strategy 'greedy' is not supported: transformers'"),
        ({"strategy": "sample", "frequency_penalty": 0.5}, "no frequency penalty"),
        ({"logprobs": 2}, "returns no per-token log-probabilities"),
        ({"json_schema": {"type": "object"}}, "no JSON-schema constrained decoding; use vllm"),
        ({"quantization": "awq"}, "loads float weights"),
        ({"strategy": "beam", "speculative": {"method": "ngram"}}, "runs only greedy or sample decoding, not beam"),
        ({"strategy": "best_of_n", "speculative": {"method": "ngram"}}, "not best-of-N"),
        ({"strategy": "sample", "n": 2, "speculative": {"method": "ngram"}}, "n must be 1"),
        ({"speculative": {"method": "ngram", "prompt_lookup_min": 2}}, "leave prompt_lookup_min unset"),
        ({"strategy": "best_of_n", "scorer": "reranker"}, "scorer='reranker' is not available"),
    ],
)
def test_what_transformers_cannot_do_is_a_clear_error(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_transformers(DecodingConfig(**options))  # type: ignore[arg-type]


def test_supported_engine_options_pass() -> None:
    for options in (
        {"prefix_caching": True, "speculative": {"method": "draft", "model": "m", "num_speculative_tokens": 3}},
        {"strategy": "sample", "min_p": 0.1, "stream": True, "seed": 1, "speculative": {"method": "ngram"}},
        {
            "strategy": "beam",
            "temperature": 0.5,
            "sample_top_k": 5,
            "min_tokens": 1,
            "stop": ["x"],
            "prefix_caching": True,
        },
    ):
        check_transformers(DecodingConfig(**options))  # type: ignore[arg-type]


def test_trim_at_stop_cuts_at_the_earliest_stop_string() -> None:
    assert trim_at_stop("Paris. Question: x\n\ny", ["\n\n", "Question:"]) == "Paris. "
    assert trim_at_stop("Paris.", ["\n\n"]) == "Paris."
    assert trim_at_stop("Paris.", []) == "Paris."


def test_pieces_hold_back_a_possible_stop_string_and_join_to_the_trimmed_text() -> None:
    pieces: list[str] = []
    stream = PieceStream(pieces.append, ["END"])
    for text in ("Par", "Paris E", "Paris EN", "Paris ENx", "Paris ENx EN", "Paris ENx END", "Paris ENx END more"):
        stream.update(text)
    assert pieces == ["Par", "is ", "ENx", " "]  # "E", "EN" wait until known not to start "END"
    assert stream.finish("Paris ENx END more") == "Paris ENx "
    assert "".join(pieces) == "Paris ENx "


def test_pieces_hold_back_a_partial_character() -> None:
    pieces: list[str] = []
    stream = PieceStream(pieces.append)
    stream.update("caf\ufffd")
    stream.update("café")
    assert pieces == ["caf", "é"]
    assert stream.finish("café!") == "café!" and "".join(pieces) == "café!"
