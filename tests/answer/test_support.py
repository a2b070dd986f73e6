"""The lexical support check and its number reading."""

from __future__ import annotations

from rag.answer.extractive import AnswerCalibration
from rag.answer.linear import LinearModel
from rag.answer.support import SUPPORT_FEATURES, best_support, numbers_in, support_features
from rag.core.types import Chunk, Hit

TEXT = "Wind farms are noisy. The turbine spins at ninety revolutions per minute. It was built in 1990."
HIT = Hit(Chunk("t", "t.md", TEXT, 10, 10 + len(TEXT)), 1.0)


def model() -> LinearModel:
    return LinearModel.from_dict(AnswerCalibration.load().support["model"], SUPPORT_FEATURES)


def test_numbers_are_read_as_digits() -> None:
    assert numbers_in("ninety revolutions, 1,200 rpm and 3.5 m in 1990.") == {"90", "1200", "3.5", "1990"}
    assert numbers_in("no numbers here") == set()


def test_features_of_a_copy_and_of_a_changed_number() -> None:
    window = "The turbine spins at ninety revolutions per minute."
    assert support_features("The turbine spins at 90 revolutions per minute.", window, {}) == [1.0, 1.0, 1.0, 1.0]
    changed = support_features("The turbine spins at 80 revolutions per minute.", window, {})
    assert changed[3] == 0.0 and changed[0] < 1.0


def test_best_support_finds_the_span_and_separates_supported_from_not() -> None:
    threshold = AnswerCalibration.load().support["min_probability"]
    good = best_support("The turbine spins at ninety revolutions per minute.", HIT, 1, model())
    assert good.probability >= threshold and (good.n, good.hit) == (1, HIT)
    assert TEXT[good.start - 10 : good.end - 10] == "The turbine spins at ninety revolutions per minute."
    bad = best_support("The turbine spins 90 times every second.", HIT, 1, model())
    assert bad.probability < threshold
    unrelated = best_support("Penguins live in Antarctica.", HIT, 1, model())
    assert unrelated.probability < threshold
