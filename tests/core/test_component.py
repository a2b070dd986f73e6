from typing import Any, ClassVar

import pytest

from rag.core.component import Component, Variadic, input_sockets
from rag.core.errors import ConfigError
from rag.core.types import Hit


class Scorer(Component):
    outputs: ClassVar[dict[str, Any]] = {"hits": list[Hit]}

    def __init__(self, top_k: int = 5, model: str = "m", options: dict | None = None) -> None:
        self.top_k = top_k

    def run(self, query: str, top_k: int | None = None) -> dict[str, Any]:
        return {"hits": []}


class Child(Scorer):
    def __init__(self, extra: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)


class Fuser(Component):
    outputs: ClassVar[dict[str, Any]] = {"hits": list[Hit]}

    def run(self, hits: Variadic[list[Hit]], k: int = 3) -> dict[str, Any]:
        return {"hits": []}


def test_settings_are_recorded_with_defaults() -> None:
    assert Scorer(3).settings == {"top_k": 3, "model": "m", "options": None}
    assert Scorer(top_k=3).to_dict() == {
        "type": f"{__name__}.Scorer",
        "init": {"top_k": 3, "model": "m", "options": None},
    }


def test_subclass_records_its_own_arguments_once() -> None:
    assert Child(extra=2.0, top_k=7).settings == {"extra": 2.0, "top_k": 7}


def test_settings_are_copied_not_shared() -> None:
    options = {"a": [1, 2]}
    scorer = Scorer(options=options)
    options["a"].append(3)
    assert scorer.settings["options"] == {"a": [1, 2]}


def test_non_plain_setting_is_refused_with_its_name() -> None:
    with pytest.raises(ConfigError, match=r"setting 'options.fn' is a function"):
        Scorer(options={"fn": lambda: 1})


def test_bad_arguments_name_the_component() -> None:
    with pytest.raises(ConfigError, match="Scorer"):
        Scorer(nope=1)  # type: ignore[call-arg]


def test_equality_by_type_and_settings() -> None:
    assert Scorer(3) == Scorer(top_k=3)
    assert Scorer(3) != Scorer(4)
    assert Scorer(3) != Child(top_k=3)


def test_input_sockets_from_run_signature() -> None:
    sockets = input_sockets(Scorer)
    assert sockets["query"].required and sockets["query"].type is str
    assert not sockets["top_k"].required
    fan_in = input_sockets(Fuser)["hits"]
    assert fan_in.variadic and fan_in.type == list[Hit]
