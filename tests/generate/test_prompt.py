"""PromptBuilder: numbering, the character budget and the shape of the messages."""

from __future__ import annotations

import pytest

from rag.core.errors import ConfigError
from rag.core.types import Chunk, Hit
from rag.generate.prompt import DEFAULT_SYSTEM_PROMPT, PromptBuilder


def hit(path: str, text: str, score: float = 1.0) -> Hit:
    return Hit(Chunk(id=path, path=path, text=text, start=0, end=len(text)), score)


HITS = [hit("a.md", "Alpha text."), hit("b.md", "Bravo text."), hit("c.md", "Charlie text.")]


def test_messages_are_system_then_user_with_numbered_passages() -> None:
    out = PromptBuilder().run("What is bravo?", HITS)
    messages = out["messages"]
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == DEFAULT_SYSTEM_PROMPT
    user = messages[1]["content"]
    assert "[1] (a.md) Alpha text. [1]" in user
    assert "[2] (b.md) Bravo text. [2]" in user
    assert "[3] (c.md) Charlie text. [3]" in user
    assert user.index("[1]") < user.index("[2]") < user.index("[3]")
    assert "What is bravo?" in user
    assert out["hits"] == HITS


def test_default_system_prompt_asks_for_bracket_citations() -> None:
    assert "square brackets" in DEFAULT_SYSTEM_PROMPT
    assert "[2]" in DEFAULT_SYSTEM_PROMPT
    assert "only the passages" in DEFAULT_SYSTEM_PROMPT


def test_budget_drops_whole_passages_and_renumbers() -> None:
    hits = [hit("a.md", "a" * 50), hit("b.md", "b" * 500), hit("c.md", "c" * 50)]
    out = PromptBuilder(max_context_chars=200).run("q", hits)
    user = out["messages"][-1]["content"]
    assert out["hits"] == [hits[0], hits[2]]
    assert "b" * 10 not in user
    assert "[1] (a.md) " + "a" * 50 + " [1]" in user
    assert "[2] (c.md) " + "c" * 50 + " [2]" in user
    assert "[3]" not in user


def test_first_passage_longer_than_budget_is_shortened_not_dropped() -> None:
    hits = [hit("a.md", "a" * 500), hit("b.md", "b" * 10)]
    out = PromptBuilder(max_context_chars=100, passage_template="[{n}] {text} [{n}]").run("q", hits)
    user = out["messages"][-1]["content"]
    assert out["hits"] == [hits[0]]
    assert "[1] " + "a" * 92 + " [1]" in user
    assert "a" * 93 not in user
    assert "b" not in user.replace("Passages", "")


def test_no_limit_keeps_everything() -> None:
    hits = [hit(f"{i}.md", "x" * 1000) for i in range(10)]
    assert len(PromptBuilder(max_context_chars=None).run("q", hits)["hits"]) == 10


def test_no_hits_still_gives_a_prompt() -> None:
    out = PromptBuilder().run("q", [])
    assert out["hits"] == []
    assert "no passages" in out["messages"][-1]["content"]


def test_empty_system_prompt_gives_only_a_user_message() -> None:
    out = PromptBuilder(system_prompt="").run("q", HITS)
    assert [m["role"] for m in out["messages"]] == ["user"]


def test_templates_and_fields() -> None:
    builder = PromptBuilder(user_template="Q={query}\n{passages}", passage_template="<{n}|{title}|{score:.1f}> {text}")
    chunk = Chunk(id="x", path="docs/x.md", text="multi\n  line\ntext", start=0, end=17, metadata={"title": "X"})
    user = builder.run("why?", [Hit(chunk, 0.5)])["messages"][-1]["content"]
    assert user == "Q=why?\n<1|X|0.5> multi line text"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_context_chars": 0},
        {"max_context_chars": "100"},
        {"user_template": "{passages} {question}"},
        {"passage_template": "[{n}] {body}"},
        {"system_prompt": None},
    ],
)
def test_bad_settings_raise(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        PromptBuilder(**kwargs)


def test_settings_round_trip() -> None:
    builder = PromptBuilder(max_context_chars=123)
    assert builder.to_dict()["init"]["max_context_chars"] == 123
    assert PromptBuilder(**builder.settings) == builder
