from typing import Any, ClassVar

import pytest

from rag.core.component import Component
from rag.core.errors import PipelineError
from rag.core.pipeline import Pipeline
from rag.core.types import Chunk, Hit
from rag.fuse.rrf import ReciprocalRankFusion


def chunk(i: str) -> Chunk:
    return Chunk(i, f"{i}.txt", f"text {i}", 0, 6)


class Lister(Component):
    """Returns fixed hits; records warm-up and runs."""

    outputs: ClassVar[dict[str, Any]] = {"hits": list[Hit]}

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self.warmed = 0
        self.queries: list[str] = []

    def warm_up(self) -> None:
        self.warmed += 1

    def run(self, query: str, top_k: int | None = None) -> dict[str, Any]:
        self.queries.append(query)
        return {"hits": [Hit(chunk(i), 1.0) for i in self.ids[: top_k or None]]}


class Joiner(Component):
    outputs: ClassVar[dict[str, Any]] = {"text": str}

    def run(self, hits: list[Hit], sep: str = ",") -> dict[str, Any]:
        return {"text": sep.join(h.id for h in hits)}


class NeedsInt(Component):
    outputs: ClassVar[dict[str, Any]] = {"out": int}

    def run(self, value: int) -> dict[str, Any]:
        return {"out": value}


class Loop(Component):
    outputs: ClassVar[dict[str, Any]] = {"text": str}

    def run(self, text: str) -> dict[str, Any]:
        return {"text": text}


class Forgetful(Component):
    outputs: ClassVar[dict[str, Any]] = {"text": str}

    def run(self, query: str) -> dict[str, Any]:
        return {}


def hybrid() -> Pipeline:
    return Pipeline(
        {"a": Lister(["x", "y"]), "b": Lister(["y", "z"]), "fusion": ReciprocalRankFusion(k=60), "join": Joiner()},
        [("a.hits", "fusion.hits"), ("b.hits", "fusion.hits"), ("fusion.hits", "join.hits")],
        inputs={"query": ["a.query", "b.query"], "top_k": ["fusion.top_k"]},
        outputs={"hits": "fusion.hits", "text": "join.text"},
    )


def test_fan_out_and_fan_in() -> None:
    pipeline = hybrid()
    result = pipeline.run({"query": "q"})
    # y is ranked 2nd by a and 1st by b: 1/62 + 1/61 beats x (1/61) and z (1/62)
    assert [h.id for h in result["hits"]] == ["y", "x", "z"]
    assert result["text"] == "y,x,z"
    assert pipeline.components["a"].queries == ["q"] and pipeline.components["b"].queries == ["q"]


def test_input_reaches_only_the_sockets_it_names() -> None:
    pipeline = hybrid()
    result = pipeline.run({"query": "q", "top_k": 1}, outputs=["hits"])
    assert [h.id for h in result["hits"]] == ["y"]
    assert len(pipeline.components["a"].run(query="q")["hits"]) == 2  # retrievers kept their own depth


def test_only_components_needed_for_the_outputs_run_and_warm_up() -> None:
    class Boom(Component):
        outputs: ClassVar[dict[str, Any]] = {"text": str}

        def warm_up(self) -> None:
            raise AssertionError("must not warm up")

        def run(self, hits: list[Hit]) -> dict[str, Any]:
            raise AssertionError("must not run")

    pipeline = Pipeline(
        {"a": Lister(["x"]), "boom": Boom()}, [("a.hits", "boom.hits")], outputs={"hits": "a.hits", "t": "boom.text"}
    )
    assert [h.id for h in pipeline.run({"query": "q"}, outputs=["hits"])["hits"]] == ["x"]
    assert pipeline.needed_for(["hits"]) == ["a"]


def test_warm_up_happens_once() -> None:
    pipeline = hybrid()
    pipeline.run({"query": "q"})
    pipeline.run({"query": "q"})
    assert pipeline.components["a"].warmed == 1


def test_bare_input_name_feeds_every_unconnected_socket_of_that_name() -> None:
    pipeline = Pipeline({"a": Lister(["x"]), "b": Lister(["z"])}, inputs=["query"], outputs={"a": "a.hits"})
    assert pipeline.inputs["query"] == [("a", "query"), ("b", "query")]


def test_default_outputs_are_the_unconnected_ones() -> None:
    pipeline = Pipeline({"a": Lister(["x"]), "join": Joiner()}, [("a.hits", "join.hits")])
    assert pipeline.outputs == {"text": ("join", "text")}


@pytest.mark.parametrize(
    ("components", "connections", "inputs", "outputs", "message"),
    [
        ({"a": Lister([])}, [("nope.hits", "a.query")], ["query"], None, r"sender 'nope' is not a component"),
        ({"a": Lister([]), "j": Joiner()}, [("a.hits", "jj.hits")], ["query"], None, r"did you mean 'j'"),
        ({"a": Lister([]), "j": Joiner()}, [("a.docs", "j.hits")], ["query"], None, r"has no output 'docs'.*hits"),
        (
            {"a": Lister([]), "j": Joiner()},
            [("a.hits", "j.items")],
            ["query"],
            None,
            r"has no input 'items'.*hits, sep",
        ),
        (
            {"a": Lister([]), "n": NeedsInt()},
            [("a.hits", "n.value")],
            ["query"],
            None,
            r"output type list\[.*Hit\] does not match input type int",
        ),
        (
            {"a": Lister([]), "b": Lister([]), "j": Joiner()},
            [("a.hits", "j.hits"), ("b.hits", "j.hits")],
            ["query"],
            None,
            r"'j.hits' is connected twice.*fusion",
        ),
        ({"a": Lister([]), "j": Joiner()}, [], ["query"], None, r"'j' needs input 'hits' but nothing provides it"),
        ({"a": Lister([])}, [], ["query", "qeury"], None, r"input 'qeury' is not an unconnected input"),
        ({"a": Lister([])}, [], {"query": ["a.qery"]}, None, r"targets 'a.qery'.*a.query"),
        ({"a": Lister([])}, [], ["query"], {"hits": "a.docs"}, r"output 'hits' refers to 'a.docs'"),
        (
            {"x": Loop(), "y": Loop()},
            [("x.text", "y.text"), ("y.text", "x.text")],
            [],
            None,
            r"cycle \((x -> y -> x|y -> x -> y)\)",
        ),
        ({"a.b": Lister([])}, [], ["query"], None, r"must be non-empty and contain no '.'"),
        ({"a": object()}, [], ["query"], None, r"'a' is a object, not a rag Component"),
        ({"a": Lister([])}, [("a", "b.hits")], ["query"], None, r"must be 'component.socket'"),
        ({}, [], [], None, r"at least one component"),
    ],
)
def test_invalid_pipelines_are_refused_when_built(components, connections, inputs, outputs, message) -> None:
    with pytest.raises(PipelineError, match=message):
        Pipeline(components, connections, inputs=inputs, outputs=outputs)


def test_fan_in_needs_a_variadic_input_but_accepts_many_senders() -> None:
    fuse = Pipeline(
        {"a": Lister(["x"]), "b": Lister(["x"]), "c": Lister(["x"]), "f": ReciprocalRankFusion()},
        [("a.hits", "f.hits"), ("b.hits", "f.hits"), ("c.hits", "f.hits")],
    )
    hits = fuse.run({"query": "q"})["hits"]
    assert len(hits) == 1 and hits[0].score == pytest.approx(3 / 61)


def test_missing_and_unknown_run_inputs_are_errors_before_anything_runs() -> None:
    pipeline = hybrid()
    with pytest.raises(PipelineError, match=r"input 'query' is required \(by component 'a'\)"):
        pipeline.run({"top_k": 2})
    with pytest.raises(PipelineError, match=r"'qurey' is not an input of this pipeline; inputs are: query, top_k"):
        pipeline.run({"qurey": "x"})
    assert pipeline.components["a"].queries == []
    with pytest.raises(PipelineError, match=r"'answer' is not an output"):
        pipeline.run({"query": "q"}, outputs=["answer"])


def test_component_that_omits_an_output_is_reported() -> None:
    pipeline = Pipeline({"f": Forgetful()})
    with pytest.raises(PipelineError, match=r"'f' \(Forgetful\) returned no 'text' output"):
        pipeline.run({"query": "q"})


def test_variadic_input_given_directly_becomes_a_one_element_list() -> None:
    pipeline = Pipeline({"f": ReciprocalRankFusion()}, inputs=["hits"])
    hits = pipeline.run({"hits": [Hit(chunk("x"), 1.0)]})["hits"]
    assert [h.id for h in hits] == ["x"]


class DocumentLister(Lister):
    """Hits whose ids are document ids, not chunk ids."""

    id_space = "documents"


class ChunkLister(Lister):
    id_space = "chunks"


class PassOn(Component):
    """Passes its hits on (like a reranker): its hits keep its sender's id space."""

    outputs: ClassVar[dict[str, Any]] = {"hits": list[Hit]}

    def run(self, hits: list[Hit]) -> dict[str, Any]:
        return {"hits": hits}


def test_fusing_hits_of_different_id_spaces_is_refused_when_built() -> None:
    components = {"a": ChunkLister(["x"]), "b": DocumentLister(["y"]), "pass": PassOn(), "rrf": ReciprocalRankFusion()}
    with pytest.raises(
        PipelineError,
        match=r"'rrf.hits' fuses hits whose ids come from different places: .*'a' \(chunks\), 'pass' \(documents\)",
    ):
        Pipeline(
            components, [("a.hits", "rrf.hits"), ("b.hits", "pass.hits"), ("pass.hits", "rrf.hits")], inputs=["query"]
        )
    same = {"a": ChunkLister(["x"]), "b": ChunkLister(["y"]), "c": Lister(["z"]), "rrf": ReciprocalRankFusion()}
    pipeline = Pipeline(
        same, [("a.hits", "rrf.hits"), ("b.hits", "rrf.hits"), ("c.hits", "rrf.hits")], inputs=["query"]
    )
    assert [h.id for h in pipeline.run({"query": "q"})["hits"]] == ["x", "y", "z"]  # undeclared (None): not checked
