"""`AnswerBuilder`: the `Answer` a user reads, in one of three answer modes (docs/answers.md).

- **extractive**: the best-scored sentence of the passages (`SentenceReader`'s reading), quoted and cited to its
  span in the source document. Faithful by construction; nothing is generated. A polar question ("Does X...?")
  gets "Yes." or "No." before the quote when the calibration has a polar model (`rag.answer.polar`).
- **grounded**: the generated reply, sentence by sentence. A sentence is kept when a passage it cites supports it
  (`rag.answer.support`, calibrated); without a supporting citation, another passage that supports it is cited
  instead (`by="support"`); a sentence no passage supports is removed and listed in `Answer.retracted`. When no
  sentence is left, the answer is the extractive one.
- **generate**: the reply as written, cited by its `[n]` markers (or, with none, by word overlap).

Every mode abstains when the reading does (the passages do not answer the question) or nothing was retrieved:
`Answer.abstained`, the `no_answer` text, no citations.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from rag.answer.extractive import Reading
from rag.answer.linear import LinearModel
from rag.answer.markers import cited_numbers, invalid_numbers, strip_markers, supported_by
from rag.answer.polar import decide
from rag.answer.sentences import PassageSentence, sentence_spans, terms
from rag.answer.support import SUPPORT_FEATURES, Support, best_support
from rag.core.component import Component
from rag.core.errors import ConfigError, PipelineError
from rag.core.types import Answer, Citation, Claim, Hit

__all__ = ["ANSWER_MODES", "DEFAULT_NO_ANSWER", "AnswerBuilder", "check_answer_mode"]

ANSWER_MODES = ("extractive", "grounded", "generate")
DEFAULT_NO_ANSWER = "I don't know: none of the retrieved passages answers this question."


def check_answer_mode(mode: object, owner: str) -> str:
    """`mode` if it is one of `ANSWER_MODES`, else a ConfigError naming `owner`."""
    if mode not in ANSWER_MODES:
        raise ConfigError(f"{owner}: answer mode must be one of {', '.join(ANSWER_MODES)}, got {mode!r}")
    return str(mode)


class AnswerBuilder(Component):
    """Build the `Answer` from the reply, the hits shown (`hits[n - 1]` is passage `[n]`) and the reading.

    `answer_mode` comes from `PromptBuilder`, which decides it per request. `min_support` (generate mode): a
    reply with no valid marker is attributed to the (at most two) passages holding that share of its content
    words (`by="overlap"`); None: no attribution. `max_sentences` (extractive): quote up to this many sentences,
    the best one and those scored at least half as well. Numbers in markers that name no passage are reported in
    `Answer.invalid_citations`.
    """

    outputs: ClassVar[dict[str, Any]] = {"answer": Answer}

    def __init__(
        self, min_support: float | None = 0.5, no_answer: str = DEFAULT_NO_ANSWER, max_sentences: int = 1
    ) -> None:
        if min_support is not None and not 0 < min_support <= 1:
            raise ConfigError(f"AnswerBuilder: min_support must be in (0, 1] or None, got {min_support}")
        if not isinstance(no_answer, str) or not no_answer.strip():
            raise ConfigError(f"AnswerBuilder: no_answer must be a non-empty string, got {no_answer!r}")
        if not isinstance(max_sentences, int) or isinstance(max_sentences, bool) or max_sentences < 1:
            raise ConfigError(f"AnswerBuilder: max_sentences must be an integer >= 1, got {max_sentences!r}")
        self.min_support = min_support
        self.no_answer = no_answer
        self.max_sentences = max_sentences

    def run(
        self,
        reply: str,
        hits: list[Hit],
        usage: dict[str, int] | None = None,
        reading: Reading | None = None,
        answer_mode: str = "generate",
    ) -> dict[str, Any]:
        """The `Answer` in `answer_mode` (see the module docstring)."""
        mode = check_answer_mode(answer_mode, "AnswerBuilder")
        if mode != "generate" and reading is None:
            raise PipelineError(
                f"answer mode '{mode}' needs a reading of the passages: connect a SentenceReader's 'reading' "
                "output to this AnswerBuilder (see pipelines/default.yaml)"
            )
        usage = dict(usage or {})
        if not hits or (reading is not None and reading.abstain):
            return {"answer": self._abstained(mode, hits, usage, reading)}
        if mode == "extractive":
            assert reading is not None
            answer = self._extractive(reading, hits, usage)
        elif mode == "grounded":
            assert reading is not None
            answer = self._grounded(reply, hits, usage, reading)
        else:
            answer = self._generated(reply, hits, usage, reading)
        return {"answer": answer}

    def _abstained(self, mode: str, hits: list[Hit], usage: dict[str, int], reading: Reading | None) -> Answer:
        answerability = reading.answerability if reading is not None else None
        return Answer(self.no_answer, [], list(hits), usage, mode=mode, abstained=True, answerability=answerability)

    def _extractive(self, reading: Reading, hits: list[Hit], usage: dict[str, int], mode: str = "extractive") -> Answer:
        """The best sentence(s) of the passages shown, quoted; abstains when none of them is among `hits`."""
        position = {hit.id: n for n, hit in enumerate(hits, start=1)}
        ranked = [(s, p) for s, p in reading.best(len(reading.evidence.sentences)) if s.hit.id in position]
        if not ranked:
            return self._abstained(mode, hits, usage, reading)
        best = ranked[0][1]
        chosen = [ranked[0]] + [pair for pair in ranked[1 : self.max_sentences] if pair[1] >= best / 2]
        chosen.sort(key=lambda pair: (position[pair[0].hit.id], pair[0].start))
        pieces: list[tuple[str, tuple[int, ...], float]] = [
            (sentence.text, (position[sentence.hit.id],), probability) for sentence, probability in chosen
        ]
        decision = decide(reading, reading.calibration.polar)
        text, claims = _compose(pieces, f"{decision.capitalize()}. " if decision else "")
        citations = [
            _citation(position[sentence.hit.id], sentence.hit, "quote", i, sentence)
            for i, (sentence, _) in enumerate(chosen)
        ]
        return Answer(
            text,
            citations,
            list(hits),
            usage,
            mode="extractive",
            answerability=reading.answerability,
            claims=claims,
            decision=decision,
        )

    def _grounded(self, reply: str, hits: list[Hit], usage: dict[str, int], reading: Reading) -> Answer:
        model, threshold = _support_check(reading)
        kept: list[tuple[str, list[tuple[Support, str]]]] = []
        retracted: list[Claim] = []
        text = reply.strip()
        for start, end in _claim_spans(text):
            written = text[start:end]
            statement = strip_markers(written).strip()
            if not terms(statement):  # punctuation or markers only
                continue
            cited = cited_numbers(written, len(hits))
            checked = [(best_support(statement, hits[n - 1], n, model), "marker") for n in cited]
            supporting = [(s, by) for s, by in checked if s.probability >= threshold]
            if not supporting:
                others = [n for n in range(1, len(hits) + 1) if n not in cited]
                found = [best_support(statement, hits[n - 1], n, model) for n in others]
                supporting = [(s, "support") for s in sorted(found, key=lambda s: -s.probability)[:1]]
                supporting = [(s, by) for s, by in supporting if s.probability >= threshold]
                checked += [(s, "support") for s in found]
            if supporting:
                kept.append((statement, supporting))
            else:
                score = max((s.probability for s, _ in checked), default=0.0)
                retracted.append(Claim(written, start, end, tuple(cited), False, score))
        invalid = invalid_numbers(reply, len(hits))
        if not kept:
            fallback = self._extractive(reading, hits, usage)
            return dataclasses.replace(fallback, retracted=retracted, invalid_citations=invalid)
        pieces = [
            (statement, tuple(s.n for s, _ in found), max(s.probability for s, _ in found)) for statement, found in kept
        ]
        answer_text, claims = _compose(pieces)
        citations = [
            Citation(s.n, s.hit, by, i, s.start, s.end, s.page) for i, (_, found) in enumerate(kept) for s, by in found
        ]
        return Answer(
            answer_text,
            citations,
            list(hits),
            usage,
            invalid,
            mode="grounded",
            answerability=reading.answerability,
            claims=claims,
            retracted=retracted,
        )

    def _generated(self, reply: str, hits: list[Hit], usage: dict[str, int], reading: Reading | None) -> Answer:
        text = reply.strip()
        model = _support_check(reading)[0] if reading is not None else None
        claims, citations = [], []
        for i, (start, end) in enumerate(_claim_spans(text)):
            written = text[start:end]
            cited = cited_numbers(written, len(hits))
            claims.append(Claim(written, start, end, tuple(cited)))
            statement = strip_markers(written).strip()
            for n in cited:
                if model is None:
                    citations.append(Citation(n, hits[n - 1], "marker", i))
                else:
                    found = best_support(statement, hits[n - 1], n, model)
                    citations.append(Citation(n, hits[n - 1], "marker", i, found.start, found.end, found.page))
        if not citations and self.min_support is not None:
            citations = [Citation(n, hits[n - 1], "overlap") for n in supported_by(text, hits, self.min_support)]
        answerability = reading.answerability if reading is not None else None
        invalid = invalid_numbers(text, len(hits))
        return Answer(
            text, citations, list(hits), usage, invalid, mode="generate", answerability=answerability, claims=claims
        )


def _support_check(reading: Reading) -> tuple[LinearModel, float]:
    """The calibrated support model and threshold that come with the reading's calibration."""
    support = reading.calibration.support
    try:
        return LinearModel.from_dict(support["model"], SUPPORT_FEATURES), float(support["min_probability"])
    except KeyError as exc:
        raise ConfigError(
            "the answer calibration has no support check (grounded mode needs one); calibrate again with "
            "`rag calibrate-answers`"
        ) from exc


def _claim_spans(text: str) -> list[tuple[int, int]]:
    """The sentences of `text`, a sentence of citation markers alone joined to the one before it."""
    spans: list[tuple[int, int]] = []
    for start, end in sentence_spans(text):
        if spans and not strip_markers(text[start:end]).strip(" .!?"):
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans


def _with_markers(statement: str, numbers: tuple[int, ...]) -> str:
    """`statement` with `[n]` markers before its final punctuation."""
    markers = "".join(f"[{n}]" for n in numbers)
    body = statement.rstrip()
    if body and body[-1] in ".!?":
        return f"{body[:-1].rstrip()} {markers}{body[-1]}"
    return f"{body} {markers}"


def _compose(pieces: list[tuple[str, tuple[int, ...], float]], prefix: str = "") -> tuple[str, list[Claim]]:
    """The answer text from (statement, passage numbers, support) pieces after `prefix`, and one supported
    `Claim` per piece."""
    text, claims = prefix, []
    for statement, numbers, support in pieces:
        if text and not text.endswith(" "):
            text += " "
        written = _with_markers(" ".join(statement.split()), numbers)
        claims.append(Claim(written, len(text), len(text) + len(written), numbers, True, support))
        text += written
    return text, claims


def _citation(n: int, hit: Hit, by: str, claim: int, sentence: PassageSentence) -> Citation:
    return Citation(n, hit, by, claim, sentence.start, sentence.end, sentence.page)
