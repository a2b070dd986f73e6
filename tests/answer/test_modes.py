"""Answer modes, abstention and claim-level citations, with the shipped calibration and given similarities."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rag.answer.builder import DEFAULT_NO_ANSWER, AnswerBuilder
from rag.answer.extractive import AnswerCalibration, Reading, gather_evidence, read
from rag.answer.sentences import passage_sentences
from rag.core.errors import ConfigError, PipelineError
from rag.core.types import Chunk, Hit
from rag.generate.prompt import PromptBuilder

TURBINE = "Wind farms are noisy. The snorkelwind turbine spins at ninety revolutions per minute. It was built in 1990."
OTTERS = "Sea otters eat urchins and crabs. They open shells with stones."
# passage 1 starts at offset 40 of its document, so citation offsets are document offsets, not chunk offsets
HITS = [
    Hit(Chunk("t", "turbine.md", TURBINE, 40, 40 + len(TURBINE), {"title": "Turbine"}), 0.9),
    Hit(Chunk("o", "otters.md", OTTERS, 0, len(OTTERS), {"title": "Otters"}), 0.5),
]
QUESTION = "How fast does the snorkelwind turbine spin?"


def reading(question: str = QUESTION, hits: list[Hit] = HITS, abstain_below: float | None = 0.0) -> Reading:
    """A reading with the shipped calibration (its threshold replaced by `abstain_below` unless None); a
    sentence's similarity is its share of the question's words."""
    sentences = passage_sentences(hits)
    words = set(question.lower().strip("?").split())
    similarities = np.asarray([len(words & set(s.text.lower().split())) / len(words) for s in sentences])
    calibration = AnswerCalibration.load()
    if abstain_below is not None:
        calibration = dataclasses.replace(calibration, abstain_below=abstain_below)
    return read(gather_evidence(question, sentences, similarities), calibration)


def answer(mode: str, reply: str = "", **kwargs: object) -> object:
    built = AnswerBuilder().run(reply, HITS, {"completion_tokens": 3}, reading(**kwargs), answer_mode=mode)
    return built["answer"]


def test_extractive_quotes_the_best_sentence_and_cites_its_span_in_the_document() -> None:
    result = answer("extractive")
    assert result.mode == "extractive" and not result.abstained
    assert result.text == "The snorkelwind turbine spins at ninety revolutions per minute [1]."
    [citation] = result.citations
    assert (citation.n, citation.by, citation.claim) == (1, "quote", 0)
    start = 40 + TURBINE.index("The snorkelwind")
    quote = "The snorkelwind turbine spins at ninety revolutions per minute."
    assert (citation.start, citation.end) == (start, start + len(quote))
    assert citation.quote == "The snorkelwind turbine spins at ninety revolutions per minute."
    assert [(c.text, c.passages, c.supported) for c in result.claims] == [(result.text, (1,), True)]
    data = result.to_dict()
    assert data["citations"][0]["span"] == {"start": start, "end": citation.end, "page": None, "text": citation.quote}
    assert data["abstained"] is False and 0 < data["answerability"] <= 1


def test_every_mode_abstains_when_the_reading_does() -> None:
    for mode in ("extractive", "grounded", "generate"):
        result = answer(mode, "It spins fast [1].", abstain_below=1.0)
        assert result.abstained and result.text == DEFAULT_NO_ANSWER and result.citations == []
        assert result.mode == mode and result.to_dict()["abstained"] is True


def test_grounded_keeps_supported_sentences_and_retracts_the_rest() -> None:
    reply = "The snorkelwind turbine spins at ninety revolutions per minute [2]. It was painted blue [1]."
    result = answer("grounded", reply)
    assert result.mode == "grounded"
    assert result.text == "The snorkelwind turbine spins at ninety revolutions per minute [1]."
    [citation] = result.citations
    assert (citation.n, citation.by, citation.claim) == (1, "support", 0)  # it cited [2]; [1] supports it
    assert citation.quote == "The snorkelwind turbine spins at ninety revolutions per minute."
    [retracted] = result.retracted
    assert retracted.text == "It was painted blue [1]." and retracted.supported is False
    assert reply[retracted.start : retracted.end] == retracted.text  # offsets into the streamed reply


def test_grounded_with_nothing_supported_falls_back_to_the_quote() -> None:
    result = answer("grounded", "The turbine spins 90 times every second [1].")
    assert result.mode == "extractive"
    assert result.text == "The snorkelwind turbine spins at ninety revolutions per minute [1]."
    assert [c.text for c in result.retracted] == ["The turbine spins 90 times every second [1]."]


def test_generate_keeps_the_reply_and_cites_the_sentence_the_marker_points_to() -> None:
    result = answer("generate", "They open shells with stones [2].")
    assert result.text == "They open shells with stones [2]." and result.mode == "generate"
    [citation] = result.citations
    assert (citation.n, citation.by, citation.quote) == (2, "marker", "They open shells with stones.")
    assert result.claims[0].supported is None


def test_extractive_and_grounded_need_a_reading_and_a_known_mode() -> None:
    with pytest.raises(PipelineError, match="needs a reading"):
        AnswerBuilder().run("", HITS, answer_mode="extractive")
    with pytest.raises(ConfigError, match="answer mode must be one of"):
        AnswerBuilder().run("", HITS, answer_mode="creative")


def test_max_sentences_quotes_more_than_one_sentence() -> None:
    built = AnswerBuilder(max_sentences=3).run("", HITS, None, reading(), answer_mode="extractive")["answer"]
    assert len(built.claims) >= 1 and all(c.by == "quote" for c in built.citations)
    assert [c.claim for c in built.citations] == list(range(len(built.claims)))
    with pytest.raises(ConfigError, match="max_sentences"):
        AnswerBuilder(max_sentences=0)


def test_prompt_builder_decides_the_mode_and_generates_nothing_when_extractive_or_abstaining() -> None:
    prompt = PromptBuilder(answer_mode="extractive", max_context_chars=10)
    out = prompt.run(QUESTION, HITS)
    assert out == {"messages": [], "hits": HITS, "answer_mode": "extractive", "citations": None}  # no budget cut
    written = PromptBuilder(answer_mode="extractive").run(QUESTION, HITS, answer_mode="grounded")
    assert written["messages"] and written["answer_mode"] == "grounded" and written["citations"] == 2
    assert PromptBuilder().run(QUESTION, HITS)["citations"] is None  # generate: markers are not constrained
    abstaining = PromptBuilder().run(QUESTION, HITS, reading(abstain_below=1.0))
    assert abstaining["messages"] == [] and abstaining["answer_mode"] == "generate"
    with pytest.raises(ConfigError, match="PromptBuilder: answer mode must be one of"):
        PromptBuilder(answer_mode="creative")
    with pytest.raises(ConfigError, match="PromptBuilder: answer mode must be one of"):
        prompt.run(QUESTION, HITS, answer_mode="creative")


def test_a_long_question_is_cut_in_the_prompt_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    out = PromptBuilder(max_question_chars=20).run("why " * 100, HITS)
    assert "why why why why why \n" in out["messages"][-1]["content"]
    assert "keeps its first 20" in caplog.text


def test_pages_of_sentences_in_a_chunk_over_two_pages() -> None:
    text = "First page sentence. Second page sentence."
    chunk = Chunk("p", "doc.pdf", text, 100, 100 + len(text), {"pages": [3, 4], "page_breaks": [121]})
    sentences = passage_sentences([Hit(chunk, 1.0)])
    assert [(s.text, s.start, s.page) for s in sentences] == [
        ("First page sentence.", 100, 3),
        ("Second page sentence.", 121, 4),
    ]


def test_a_mode_the_generator_cannot_serve_is_refused_when_the_pipeline_is_built() -> None:
    from rag.core.pipeline import Pipeline
    from rag.generate.openai_generator import OpenAIGenerator

    def build(mode: str) -> Pipeline:
        components = {"prompt": PromptBuilder(answer_mode=mode), "generator": OpenAIGenerator(model="m")}
        inputs = {"query": ["prompt.query"], "hits": ["prompt.hits"]}
        return Pipeline(components, [("prompt.messages", "generator.messages")], inputs, {"reply": "generator.reply"})

    message = r"answer mode 'grounded' cannot be served by component 'generator' \(OpenAIGenerator\)"
    with pytest.raises(PipelineError, match=message):
        build("grounded")
    pipeline = build("extractive")
    assert pipeline.answer_modes() == ("extractive", "generate")
    with pytest.raises(PipelineError, match=message):
        pipeline.answer_modes("grounded")


def test_a_polar_question_gets_a_calibrated_yes_or_no_before_the_quote() -> None:
    from rag.answer.polar import is_polar, polar_features

    assert is_polar("Does aspirin reduce pain?") and not is_polar("What does aspirin reduce?")
    assert polar_features(["There was no significant difference in pain."])[:4] == [1.0, 1.0, 0.0, 1.0]
    no_text = "Aspirin did not reduce pain: there was no significant difference between the groups."
    yes_text = "Aspirin significantly reduced pain and improved sleep in the treated group."
    for text, word in ((no_text, "No"), (yes_text, "Yes")):
        hits = [Hit(Chunk("a", "a.md", text, 0, len(text)), 1.0)]
        built = AnswerBuilder().run("", hits, None, reading("Does aspirin reduce pain?", hits), "extractive")
        result = built["answer"]
        assert result.decision == word.lower() and result.text == f"{word}. {text[:-1]} [1]."
        [claim] = result.claims
        assert result.text[claim.start : claim.end] == claim.text == f"{text[:-1]} [1]."
    assert answer("extractive").decision is None  # "How fast...?" is not a yes/no question


@pytest.mark.parametrize(
    ("question", "polar"),
    [
        ("Does aspirin reduce pain?", True),
        ("Therapeutic anticoagulation in the trauma patient: is it safe?", True),
        ("Syncope during bathing in infants, a pediatric form of water-induced urticaria?", True),
        ("Is the turbine loud", True),
        ("Are there gender differences in the reasons why patients delay?", True),
        ("Head and neck cancer: can we predict which survivors develop fears?", True),
        ("How fast does the turbine spin?", False),
        ("How many problems, believed to be hard, did Karp's paper address?", False),
        ("Treadmill testing of children who walk: does peak uptake reflect maximum uptake?", True),
        ("The practice of occupying Huguenot homes was called?", False),
        ("The symbol for mercuric oxide is?", False),
        ("In what year was it built?", False),
        ("Name a luxury division of Toyota.", False),
    ],
)
def test_polar_questions(question: str, polar: bool) -> None:
    from rag.answer.polar import is_polar

    assert is_polar(question) is polar


def test_a_sentence_repeating_the_question_is_not_a_candidate() -> None:
    from rag.answer.extractive import candidate_sentences

    text = 'Call rag.ask("How fast does the snorkelwind turbine spin?") to ask. It spins at ninety revolutions.'
    hits = [Hit(Chunk("d", "docs.md", text, 0, len(text)), 1.0)]
    assert [s.text for s in candidate_sentences(QUESTION, hits)] == ["to ask.", "It spins at ninety revolutions."]
    assert len(candidate_sentences("How fast does it spin?", hits)) == 3  # its words, not in that order
