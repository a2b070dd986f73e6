"""`rag ask` decoding flags, streaming and generator swapping, with a real pipeline around a fake generator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from rag.cli import main
from rag.cli.ask import _decoding_overrides
from rag.core.errors import ConfigError
from rag.core.serialization import dump_pipeline
from rag.generate.select import replace_generator
from tests.indexing_helpers import make_corpus
from tests.test_api import answering_pipeline

ALLOWED = ["tests.fakes.HashRetriever", "tests.fakes.EchoGenerator"]


@pytest.fixture
def indexed(tmp_path: Path) -> list[str]:
    make_corpus(tmp_path / "docs", 3)
    pipeline = tmp_path / "echo.yaml"
    pipeline.write_text(dump_pipeline(answering_pipeline()))
    common = ["--index-dir", str(tmp_path / "indexes"), *(a for cls in ALLOWED for a in ("--allow", cls))]
    result = CliRunner().invoke(main, ["index", str(tmp_path / "docs"), "--pipeline", str(pipeline), *common])
    assert result.exit_code == 0, result.output
    return common


def ask(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["ask", *args])
    return result.exit_code, result.stdout, result.stderr


def test_decoding_flags_reach_the_generator(indexed: list[str]) -> None:
    code, out, err = ask("topic1 facts", *indexed, "--max-tokens", "3", "--passages", "1", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["usage"]["completion_tokens"] == 3 and len(data["hits"]) == 1
    keys = ("answer", "mode", "abstained", "decision", "answerability", "citations", "claims", "retracted")
    assert {*keys, "invalid_citations", "hits", "usage"} == set(data)
    assert data["mode"] == "generate" and data["abstained"] is False


def test_stream_prints_the_answer_as_it_comes(indexed: list[str]) -> None:
    code, out, err = ask("topic2 facts", *indexed, "--stream", "--max-tokens", "4")
    assert code == 0, err
    assert (out.startswith("Answer") and "Sources" in out) or "Passages" in out


def test_flags_become_decoding_options() -> None:
    assert _decoding_overrides(**_none(num_beams=3)) == {"num_beams": 3, "strategy": "beam"}
    assert _decoding_overrides(**_none(best_of=5, seed=1)) == {"best_of": 5, "seed": 1, "strategy": "best_of_n"}
    draft = {"speculative": {"method": "draft", "model": "tiny"}}
    assert _decoding_overrides(**_none(speculative="draft:tiny")) == draft
    ngram = {"sample_top_k": 0, "speculative": {"method": "ngram"}}
    assert _decoding_overrides(**_none(speculative="ngram", sample_top_k=0)) == ngram
    with pytest.raises(ConfigError, match="'ngram' or 'draft:MODEL'"):
        _decoding_overrides(**_none(speculative="draft"))


def _none(**given: object) -> dict[str, object]:
    names = ("strategy", "temperature", "sample_top_k", "top_p", "min_p", "max_tokens", "seed", "num_beams", "best_of")
    return {name: None for name in (*names, "speculative")} | given


def test_bad_decoding_values_are_one_line_errors(indexed: list[str], tmp_path: Path) -> None:
    pipeline = tmp_path / "openai.yaml"
    pipeline.write_text(dump_pipeline(replace_generator(answering_pipeline(), "openai", "m", allowed=ALLOWED)))
    code, _, err = ask("x", *indexed, "--pipeline", str(pipeline), "--top-p", "1.5")
    assert code == 1 and "top_p" in err and err.count("\n") == 1


def test_empty_questions_and_modes_the_pipeline_lacks_are_one_line_errors(indexed: list[str]) -> None:
    for question in ("", "   "):
        code, _, err = ask(question, *indexed)
        assert code == 2 and "the question is empty" in err
    code, _, err = ask("x", *indexed, "--answer-mode", "extractive")
    assert code == 1 and "takes no 'answer_mode' input" in err and "[prompt.answer_mode]" in err
    code, _, err = ask("x", *indexed, "--answer-mode", "creative")
    assert code == 2 and "extractive" in err


def test_model_without_generator_is_refused(indexed: list[str]) -> None:
    code, _, err = ask("x", *indexed, "--model", "some/model")
    assert code == 1 and "give --generator too" in err


def test_replace_generator_keeps_decoding_and_checks_backends() -> None:
    pipeline = answering_pipeline()
    swapped = replace_generator(pipeline, "openai", "served-model", "http://127.0.0.1:9/v1", allowed=ALLOWED)
    generator = swapped.components["generator"]
    assert type(generator).__name__ == "OpenAIGenerator"
    assert generator.settings["model"] == "served-model" and generator.settings["base_url"] == "http://127.0.0.1:9/v1"
    with pytest.raises(ConfigError, match="--base-url is for the 'openai' generator"):
        replace_generator(pipeline, "transformers", base_url="http://x")
    with pytest.raises(ConfigError, match="needs a model name"):
        replace_generator(pipeline, "transformers")


def test_replace_generator_on_the_default_pipeline_drops_what_the_backend_cannot_take() -> None:
    from rag.core.serialization import load_pipeline

    default = load_pipeline("default")
    assert any(str(c) == "prompt.citations -> generator.citations" for c in default.connections)
    swapped = replace_generator(default, "openai", base_url="http://127.0.0.1:9/v1")
    assert not any(c.receiver == "generator" and c.input == "citations" for c in swapped.connections)
    assert swapped.answer_modes() == ("extractive", "generate")


def test_top_k_on_ask_is_the_old_name_of_sample_top_k(indexed: list[str]) -> None:
    code, _, err = ask("topic1 facts", *indexed, "--strategy", "sample", "--top-k", "5", "--json")
    assert code == 0 and "--top-k is now --sample-top-k" in err
    code, _, err = ask("topic1 facts", *indexed, "--strategy", "sample", "--sample-top-k", "5", "--json")
    assert code == 0 and "--top-k" not in err
