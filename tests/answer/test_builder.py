"""AnswerBuilder in generate mode: citation markers, ranges, duplicates and out-of-range numbers."""

from __future__ import annotations

import pytest

from rag.answer.builder import DEFAULT_NO_ANSWER, AnswerBuilder
from rag.answer.markers import cited_numbers, invalid_numbers
from rag.core.errors import ConfigError
from rag.core.types import Answer, Chunk, Citation, Hit

HITS = [Hit(Chunk(id=f"c{i}", path=f"{i}.md", text=f"text {i}", start=0, end=6), 1.0 / i) for i in range(1, 5)]


def build(reply: str, hits: list[Hit] = HITS, usage: dict[str, int] | None = None) -> Answer:
    return AnswerBuilder().run(reply, hits, usage)["answer"]


def test_markers_cite_per_sentence_in_order_of_first_mention() -> None:
    answer = build("Paris [2] is big [1]. Also [2] again.")
    assert answer.citations == [
        Citation(2, HITS[1], claim=0),
        Citation(1, HITS[0], claim=0),
        Citation(2, HITS[1], claim=1),
    ]
    assert answer.text == "Paris [2] is big [1]. Also [2] again."
    assert [(c.text, c.passages, c.supported) for c in answer.claims] == [
        ("Paris [2] is big [1].", (2, 1), None),
        ("Also [2] again.", (2,), None),
    ]
    assert answer.hits == HITS and answer.mode == "generate" and not answer.abstained


def test_lists_and_ranges() -> None:
    assert cited_numbers("see [3, 1] and [2-4]", 4) == [3, 1, 2, 4]
    assert cited_numbers("see [1 – 2]", 4) == [1, 2]
    assert cited_numbers("see [ 4 ][1,2 ,3]", 4) == [4, 1, 2, 3]


def test_out_of_range_markers_are_dropped_and_reported() -> None:
    answer = build("Wrong [0], [5] and [99], right [4], again [5].")
    assert [c.n for c in answer.citations] == [4]
    assert answer.invalid_citations == [0, 5, 99]
    assert answer.to_dict()["invalid_citations"] == [0, 5, 99]
    assert build("Fine [1].").invalid_citations == []
    assert invalid_numbers("[3-9] [2, 7] [1-1000000000]", 4) == [9, 7, 1000000000]
    assert invalid_numbers("[3-1] [2]", 4) == []
    assert cited_numbers("[3-9]", 4) == [3, 4]
    assert cited_numbers("[1-1000000000]", 2) == [1, 2]
    assert cited_numbers("[3-1]", 4) == []


def test_duplicates_are_cited_once() -> None:
    assert [c.n for c in build("[1][1] [1, 1] [1-2]").citations] == [1, 2]


def test_reply_without_valid_markers_has_no_citations() -> None:
    for reply in ("No markers here.", "Not a marker: [a], [1.5], (1), [-1], [", "Cites [7]."):
        assert build(reply).citations == []


def test_no_hits_means_the_no_answer_text() -> None:
    answer = build("", hits=[], usage={"prompt_tokens": 0, "completion_tokens": 0})
    assert answer.text == DEFAULT_NO_ANSWER and answer.text.startswith("I don't know")
    assert answer.citations == [] and answer.hits == [] and answer.invalid_citations == []
    assert answer.usage == {"prompt_tokens": 0, "completion_tokens": 0}
    custom = AnswerBuilder(no_answer="No idea.").run("It is [1].", [])["answer"]
    assert custom.text == "No idea." and custom.citations == []
    with pytest.raises(ConfigError, match="no_answer must be a non-empty string"):
        AnswerBuilder(no_answer=" ")


def test_usage_is_copied_and_defaults_to_empty() -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 3}
    answer = build("x [1]", usage=usage)
    assert answer.usage == usage and answer.usage is not usage
    assert build("x").usage == {}
    assert answer.to_dict()["citations"][0]["id"] == "c1"


def test_text_is_stripped() -> None:
    assert build("  Paris [1].\n").text == "Paris [1]."


PASSAGES = [
    Hit(Chunk("a", "otters.md", "Sea otters eat urchins and crabs, opening shells with stones.", 0, 60), 1.0),
    Hit(Chunk("b", "etna.md", "Mount Etna is an active volcano in Sicily.", 0, 42), 0.5),
]


def test_unmarked_reply_is_attributed_to_the_passage_it_repeats() -> None:
    answer = AnswerBuilder().run("Sea otters open shells with stones.", PASSAGES)["answer"]
    assert [(c.n, c.by) for c in answer.citations] == [(1, "overlap")]
    assert answer.citations[0].to_dict()["by"] == "overlap"


def test_unsupported_reply_gets_no_citation() -> None:
    answer = AnswerBuilder().run("Penguins live in Antarctica and swim fast.", PASSAGES)["answer"]
    assert answer.citations == []


def test_markers_win_over_overlap_and_attribution_can_be_switched_off() -> None:
    marked = AnswerBuilder().run("Etna erupts [2]. Sea otters open shells with stones.", PASSAGES)["answer"]
    assert [(c.n, c.by) for c in marked.citations] == [(2, "marker")]
    plain = AnswerBuilder(min_support=None).run("Sea otters open shells with stones.", PASSAGES)["answer"]
    assert plain.citations == []
