"""Citation markers that can only name the passages given, enforced on the logits."""

from __future__ import annotations

from typing import ClassVar

import pytest

from rag.generate.citation_constraint import CitationMarkers, marker_prefix_ok

torch = pytest.importorskip("torch")


@pytest.mark.parametrize(
    ("tail", "count", "ok"),
    [
        ("", 3, True),
        ("2", 3, True),
        ("2]", 3, True),
        ("2] and more", 3, True),
        ("1, ", 3, True),
        ("1, 3]", 3, True),
        ("4", 3, False),
        ("1", 12, True),
        ("13", 12, False),
        ("0", 3, False),
        ("]", 3, False),
        ("1,]", 3, False),
        ("a", 3, False),
        ("1 2", 3, False),
    ],
)
def test_marker_prefixes(tail: str, count: int, ok: bool) -> None:
    assert marker_prefix_ok(tail, count) is ok


class Tokenizer:
    """A tokenizer over a fixed vocabulary, one id per string (a real object with the calls the processor uses)."""

    vocab: ClassVar[list[str]] = ["The", " answer", " [", "1", "2", "7", "]", ".", "[7", "[1]", " is", "<eos>"]

    def __len__(self) -> int:
        return len(self.vocab)

    def batch_decode(self, rows: list[list[int]]) -> list[str]:
        return [self.decode(row) for row in rows]

    def decode(self, ids: object, skip_special_tokens: bool = False) -> str:
        return "".join(self.vocab[int(i)] for i in ids)


def allowed(prefix: list[str], count: int) -> set[str]:
    tokenizer = Tokenizer()
    ids = torch.tensor([[tokenizer.vocab.index(t) for t in ["<eos>", *prefix]]])
    scores = CitationMarkers(tokenizer, [count], prompt_length=1)(ids, torch.zeros(1, len(tokenizer)))
    return {tokenizer.vocab[i] for i in range(len(tokenizer)) if scores[0, i] > float("-inf")}


def test_inside_a_marker_only_valid_passage_numbers_and_the_closing_bracket() -> None:
    assert allowed(["The", " answer", " ["], 2) == {"1", "2"}
    assert allowed(["The", " ["], 7) == {"1", "2", "7"}
    assert allowed(["The", " [", "1"], 2) == {"]"}  # "11" and "12" name no passage


def test_outside_a_marker_only_tokens_opening_an_invalid_marker_are_masked() -> None:
    free = allowed(["The"], 2)
    assert "[7" not in free and {"[1]", " [", " answer", "<eos>", "7"} <= free
    assert "[7" in allowed(["The"], 7)
