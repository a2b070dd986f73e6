"""A pipeline: named components, the connections between their sockets, and its own inputs/outputs.

A pipeline is validated in full when it is built, so a pipeline object is always runnable:
unknown sockets, mismatched types, an input connected twice, required inputs with no source
and cycles are all reported by the constructor, each naming the component and the fix.

A pipeline input feeds the sockets it names (`inputs={"top_k": ["fusion.top_k"]}`) or, given
as a bare name (`inputs=["query"]`), every unconnected socket of that name (fan-out: one `query`
feeds several retrievers). A `Variadic` input collects one value from
each connected sender (fan-in: several retrievers feed one fusion step). `run()` executes only
the components that the requested outputs depend on, in topological order.
"""

from __future__ import annotations

import difflib
import graphlib
import logging
import typing
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import UnionType
from typing import Any

from rag.core.component import Component, InputSocket, input_sockets
from rag.core.errors import ConfigError, PipelineError
from rag.core.limits import LIMIT_SETTINGS, ReadLimits
from rag.core.metadata import MetadataRule, metadata_rules
from rag.core.run_report import timed
from rag.core.tracing import span

__all__ = ["Connection", "IndexingSettings", "Pipeline"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Connection:
    """An edge from `sender.output` to `receiver.input`."""

    sender: str
    output: str
    receiver: str
    input: str

    @classmethod
    def parse(cls, sender: str, receiver: str) -> Connection:
        parts = [s.split(".") for s in (sender, receiver)]
        for text, p in zip((sender, receiver), parts, strict=True):
            if len(p) != 2 or not all(p):
                raise PipelineError(f"connection end '{text}' must be 'component.socket' (for example 'bm25.hits')")
        return cls(parts[0][0], parts[0][1], parts[1][0], parts[1][1])

    def __str__(self) -> str:
        return f"{self.sender}.{self.output} -> {self.receiver}.{self.input}"


@dataclass(frozen=True)
class IndexingSettings:
    """How a folder becomes chunks: which files, which symbolic links are followed ("inside": those whose target is
    inside the folder; "never"; "follow": all, see `rag.ingest.walk`), what one file may expand to (`limits`, see
    `rag.core.limits`), the chunker component, and `metadata`: path rules giving fields to the files they match
    (`[{match: "contracts/**", fields: {kind: contract}}]`, checked and typed by `rag.core.metadata.metadata_rules`;
    given as plain data, they are converted to `MetadataRule`s)."""

    chunker: Component
    include: tuple[str, ...] = ("**/*",)
    exclude: tuple[str, ...] = ()
    max_file_mb: float = 20.0
    extra: dict[str, Any] = field(default_factory=dict)
    symlinks: str = "inside"
    max_pages: int = ReadLimits.max_pages
    max_records: int = ReadLimits.max_records
    max_depth: int = ReadLimits.max_depth
    max_expansion: int = ReadLimits.max_expansion
    metadata: tuple[MetadataRule, ...] = ()

    def __post_init__(self) -> None:
        if self.symlinks not in ("inside", "never", "follow"):
            raise ConfigError(f"indexing.symlinks must be inside, never or follow, got {self.symlinks!r}")
        self.limits()  # checks the limits
        object.__setattr__(self, "metadata", metadata_rules(self.metadata))

    def limits(self) -> ReadLimits:
        """The limits on what one file may expand to."""
        return ReadLimits(
            max_bytes=int(self.max_file_mb * 1024 * 1024),
            **{name: getattr(self, name) for name in LIMIT_SETTINGS},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "include": list(self.include),
            "exclude": list(self.exclude),
            "max_file_mb": self.max_file_mb,
            "symlinks": self.symlinks,
            **{name: getattr(self, name) for name in LIMIT_SETTINGS},
            **({"metadata": [rule.to_dict() for rule in self.metadata]} if self.metadata else {}),
            "chunker": self.chunker.to_dict(),
        }


class Pipeline:
    """Components wired together; see the module docstring."""

    def __init__(
        self,
        components: Mapping[str, Component],
        connections: Sequence[tuple[str, str]] = (),
        inputs: Sequence[str] | Mapping[str, Sequence[str]] = ("query",),
        outputs: Mapping[str, str] | None = None,
        indexing: IndexingSettings | None = None,
        name: str = "",
        description: str = "",
    ) -> None:
        self.components = dict(components)
        self.connections = [Connection.parse(s, r) for s, r in connections]
        self.indexing = indexing
        self.name = name
        self.description = description
        self._sockets = self._check_components()
        self._check_connections()
        self.outputs = self._check_outputs(outputs)
        self.inputs = self._check_inputs(inputs)
        self._order = self._check_cycles()
        self._check_id_spaces()
        self._check_answer_modes()
        self._warm: set[str] = set()

    # ----------------------------------------------------------------- validation
    def _check_components(self) -> dict[str, dict[str, InputSocket]]:
        if not self.components:
            raise PipelineError("a pipeline needs at least one component under 'components'")
        sockets = {}
        for name, component in self.components.items():
            if not name or "." in name:
                raise PipelineError(f"component name '{name}' must be non-empty and contain no '.'")
            if not isinstance(component, Component):
                raise PipelineError(
                    f"component '{name}' is a {type(component).__name__}, not a rag Component; "
                    "derive it from rag.Component"
                )
            sockets[name] = input_sockets(component)
        return sockets

    def _component(self, name: str, role: str, conn: Connection) -> Component:
        if name not in self.components:
            close = difflib.get_close_matches(name, list(self.components), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise PipelineError(
                f"connection '{conn}': {role} '{name}' is not a component of this pipeline "
                f"(components: {', '.join(self.components)}){hint}"
            )
        return self.components[name]

    def _check_connections(self) -> None:
        seen: dict[tuple[str, str], Connection] = {}
        for conn in self.connections:
            sender = self._component(conn.sender, "sender", conn)
            self._component(conn.receiver, "receiver", conn)
            if conn.output not in sender.outputs:
                raise PipelineError(
                    f"connection '{conn}': component '{conn.sender}' ({type(sender).__name__}) has no "
                    f"output '{conn.output}'; its outputs are: {', '.join(sender.outputs) or 'none'}"
                )
            receiver_sockets = self._sockets[conn.receiver]
            if conn.input not in receiver_sockets:
                raise PipelineError(
                    f"connection '{conn}': component '{conn.receiver}' "
                    f"({type(self.components[conn.receiver]).__name__}) has no input '{conn.input}'; "
                    f"its inputs are: {', '.join(receiver_sockets) or 'none'}"
                )
            socket = receiver_sockets[conn.input]
            sent = sender.outputs[conn.output]
            if not _compatible(sent, socket.type):
                raise PipelineError(
                    f"connection '{conn}': output type {_name(sent)} does not match input type "
                    f"{_name(socket.type)}; connect an output of type {_name(socket.type)} instead"
                )
            key = (conn.receiver, conn.input)
            if key in seen and not socket.variadic:
                raise PipelineError(
                    f"input '{conn.receiver}.{conn.input}' is connected twice ('{seen[key]}' and "
                    f"'{conn}'); it takes one sender — put a fusion component in between"
                )
            seen[key] = conn

    def _connected_inputs(self) -> set[tuple[str, str]]:
        return {(c.receiver, c.input) for c in self.connections}

    def _check_inputs(self, inputs: Sequence[str] | Mapping[str, Sequence[str]]) -> dict[str, list[tuple[str, str]]]:
        connected = self._connected_inputs()
        free = [(c, s) for c, sockets in self._sockets.items() for s in sockets if (c, s) not in connected]
        if isinstance(inputs, str):
            inputs = [inputs]
        routed: dict[str, list[tuple[str, str]]] = {}
        for name in inputs:
            if isinstance(inputs, Mapping):
                targets = [(t.partition(".")[0], t.partition(".")[2]) for t in inputs[name]]
                for comp, sock in targets:
                    if (comp, sock) not in free:
                        raise PipelineError(
                            f"pipeline input '{name}' targets '{comp}.{sock}', which is not an "
                            "unconnected input of a component; name one of: " + ", ".join(f"{c}.{s}" for c, s in free)
                        )
            else:
                targets = [(c, s) for c, s in free if s == name]
            if not targets:
                raise PipelineError(
                    f"pipeline input '{name}' is not an unconnected input of any component; "
                    "remove it from 'inputs' or fix its spelling"
                )
            routed[name] = targets
        fed = {t for targets in routed.values() for t in targets}
        for comp, sock in free:
            if self._sockets[comp][sock].required and (comp, sock) not in fed:
                raise PipelineError(
                    f"component '{comp}' needs input '{sock}' but nothing provides it; connect an "
                    f"output to '{comp}.{sock}' or add '{sock}' to the pipeline's inputs "
                    f"(now: {', '.join(routed) or 'none'})"
                )
        return routed

    def _check_outputs(self, outputs: Mapping[str, str] | None) -> dict[str, tuple[str, str]]:
        if outputs is None:  # default: every output that feeds nothing, named comp.output if ambiguous
            used = {(c.sender, c.output) for c in self.connections}
            free = [(comp, out) for comp, c in self.components.items() for out in c.outputs if (comp, out) not in used]
            names = [out for _, out in free]
            return {(out if names.count(out) == 1 else f"{comp}.{out}"): (comp, out) for comp, out in free}
        checked = {}
        for name, target in outputs.items():
            comp, _, out = target.partition(".")
            if comp not in self.components or out not in self.components[comp].outputs:
                raise PipelineError(
                    f"pipeline output '{name}' refers to '{target}', which is not an output of any "
                    "component; write it as 'component.output' (for example 'fusion.hits')"
                )
            checked[name] = (comp, out)
        return checked

    def _check_cycles(self) -> list[str]:
        graph: dict[str, set[str]] = {name: set() for name in self.components}
        for conn in self.connections:
            graph[conn.receiver].add(conn.sender)
        try:
            return list(graphlib.TopologicalSorter(graph).static_order())
        except graphlib.CycleError as exc:
            cycle = " -> ".join(reversed(exc.args[1]))
            raise PipelineError(
                f"the connections form a cycle ({cycle}); pipelines must be acyclic — remove one of these connections"
            ) from None

    def _check_id_spaces(self) -> None:
        """Refuse an input fed by senders whose hits' ids come from different places (see `Component.id_space`)."""
        spaces: dict[str, set[str]] = {}
        for comp in self._order:  # senders first
            own = self.components[comp].id_space
            received = {space for c in self.connections if c.receiver == comp for space in spaces[c.sender]}
            spaces[comp] = {own} if own else received
        for receiver, socket in {(c.receiver, c.input) for c in self.connections}:
            senders = [c.sender for c in self.connections if (c.receiver, c.input) == (receiver, socket)]
            found = {sender: spaces[sender] for sender in senders if spaces[sender]}
            if len(set().union(*found.values())) > 1:
                named = ", ".join(f"'{sender}' ({'/'.join(sorted(space))})" for sender, space in found.items())
                raise PipelineError(
                    f"input '{receiver}.{socket}' fuses hits whose ids come from different places: {named}; "
                    "ids of different id spaces never match, so fuse only retrievers over the same chunk store"
                )

    def answer_modes(self, mode: str | None = None) -> tuple[str, ...]:
        """The answer modes every component of this pipeline can serve (`Component.answer_modes`; () when no
        component decides one); with `mode`, that mode, or a PipelineError naming the component that cannot."""
        deciders = [c for c in self.components.values() if isinstance(getattr(c, "answer_mode", None), str)]
        if not deciders:
            if mode is not None:
                raise PipelineError(
                    f"pipeline '{self.name}' has no answer modes: no component decides one (a PromptBuilder)"
                )
            return ()
        served = list(type(deciders[0]).answer_modes or ())
        for name, component in self.components.items():
            modes = type(component).answer_modes
            if modes is None:
                continue
            if mode is not None and mode not in modes:
                raise PipelineError(
                    f"answer mode '{mode}' cannot be served by component '{name}' ({type(component).__name__}); "
                    f"it serves {', '.join(modes)}"
                )
            served = [m for m in served if m in modes]
        return tuple(served)

    def _check_answer_modes(self) -> None:
        for component in self.components.values():
            mode = getattr(component, "answer_mode", None)
            if isinstance(mode, str):
                self.answer_modes(mode)

    # ----------------------------------------------------------------- running
    def needed_for(self, outputs: Collection[str] | None = None) -> list[str]:
        """The components (in run order) that the given pipeline outputs depend on."""
        names = self._output_names(outputs)
        needed = {self.outputs[n][0] for n in names}
        frontier = list(needed)
        while frontier:
            comp = frontier.pop()
            for conn in self.connections:
                if conn.receiver == comp and conn.sender not in needed:
                    needed.add(conn.sender)
                    frontier.append(conn.sender)
        return [name for name in self._order if name in needed]

    def _output_names(self, outputs: Collection[str] | None) -> list[str]:
        if outputs is None:
            return list(self.outputs)
        unknown = [n for n in outputs if n not in self.outputs]
        if unknown:
            raise PipelineError(
                f"'{unknown[0]}' is not an output of this pipeline; outputs are: {', '.join(self.outputs)}"
            )
        return list(outputs)

    def warm_up(self, outputs: Collection[str] | None = None) -> None:
        """Load the heavy state of the components the given outputs need (once each)."""
        for name in self.needed_for(outputs):
            if name not in self._warm:
                logger.debug("warming up %s", name)
                self.components[name].warm_up()
                self._warm.add(name)

    def run(self, inputs: Mapping[str, Any], outputs: Collection[str] | None = None) -> dict[str, Any]:
        """Run what the requested outputs need and return `{output name: value}`."""
        order = self.needed_for(outputs)
        unknown = [k for k in inputs if not self.takes(k)]
        if unknown:
            raise PipelineError(
                f"'{unknown[0]}' is not an input of this pipeline; inputs are: {', '.join(self.inputs)}"
            )
        given = {t: inputs[name] for name, targets in self.inputs.items() if name in inputs for t in targets}
        if isinstance(inputs.get("top_k"), int):
            given |= self._deeper_legs(given, inputs["top_k"])
        if inputs.get("filters") is not None and "filters" not in self.inputs:
            given |= self._filtered_legs(order, inputs["filters"])
        for name, targets in self.inputs.items():
            for comp, sock in targets:
                if comp in order and self._sockets[comp][sock].required and name not in inputs:
                    raise PipelineError(
                        f"input '{name}' is required (by component '{comp}') but was not given; "
                        f"pass it as run({{'{name}': ...}})"
                    )
        self.warm_up(outputs)
        produced: dict[str, dict[str, Any]] = {}
        for comp in order:
            kwargs: dict[str, Any] = {}
            for socket in self._sockets[comp].values():
                senders = [c for c in self.connections if (c.receiver, c.input) == (comp, socket.name)]
                if senders:
                    values = [produced[c.sender][c.output] for c in senders]
                    kwargs[socket.name] = values if socket.variadic else values[0]
                elif (comp, socket.name) in given:
                    value = given[(comp, socket.name)]
                    kwargs[socket.name] = [value] if socket.variadic else value
            with (
                span("rag.component", component=comp, type=type(self.components[comp]).__name__) as current,
                timed(comp),
            ):
                result = self.components[comp].run(**kwargs)
                _describe_result(current, result)
            missing = set(self.components[comp].outputs) - set(result or {})
            if missing:
                raise PipelineError(
                    f"component '{comp}' ({type(self.components[comp]).__name__}) returned no "
                    f"'{sorted(missing)[0]}' output; run() must return every declared output"
                )
            produced[comp] = result
        return {n: produced[self.outputs[n][0]][self.outputs[n][1]] for n in self._output_names(outputs)}

    def takes(self, name: str) -> bool:
        """Whether `run` takes the input `name`: one of `inputs`, or `filters`, which reaches every retriever by
        itself (see `_filtered_legs`)."""
        return name in self.inputs or name == "filters"

    def _filtered_legs(self, order: Collection[str], filters: Any) -> dict[tuple[str, str], Any]:
        """`filters` for every retrieving component that runs (`id_space` set, or hits out without hits in): a
        filter reaches every leg unless the pipeline wires it itself; a leg that cannot take one (or whose hits'
        ids are not the index's chunks) is an error, never an unfiltered leg."""
        given = {}
        for comp in order:
            finds = "hits" in self.components[comp].outputs and "hits" not in self._sockets[comp]
            if self.components[comp].id_space is None and not finds:
                continue
            if "filters" not in self._sockets[comp] or self.components[comp].id_space is None:
                raise PipelineError(
                    f"component '{comp}' ({type(self.components[comp]).__name__}) finds hits but takes no filters, "
                    "so a filtered search would leak unfiltered hits through it"
                )
            given[(comp, "filters")] = filters
        return given

    def _deeper_legs(self, given: Mapping[tuple[str, str], Any], top_k: int) -> dict[tuple[str, str], int]:
        """`top_k` for every retrieving component (one that makes hits from an index: `id_space` set) upstream of
        one that is given `top_k` (the legs of a fusion) whose own `top_k` is smaller: each leg then finds at least
        what the fusion needs to return `top_k` (a leg keeping 20 would cap a fusion asked for 50). Steps between
        them, such as the candidates a reranker scores, keep their own cut."""
        asked = [comp for (comp, socket) in given if socket == "top_k"]
        upstream: set[str] = set()
        while asked:
            comp = asked.pop()
            for sender in {c.sender for c in self.connections if c.receiver == comp} - upstream:
                upstream.add(sender)
                asked.append(sender)
        deeper = {}
        for comp in upstream:
            component = self.components[comp]
            own = getattr(component, "top_k", None)
            if component.id_space is not None and (comp, "top_k") not in given and isinstance(own, int) and own < top_k:
                deeper[(comp, "top_k")] = top_k
        return deeper

    # ----------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.name:
            data["name"] = self.name
        if self.description:
            data["description"] = self.description
        if self.indexing is not None:
            data["indexing"] = self.indexing.to_dict()
        data["components"] = {name: c.to_dict() for name, c in self.components.items()}
        data["connections"] = [
            {"sender": f"{c.sender}.{c.output}", "receiver": f"{c.receiver}.{c.input}"} for c in self.connections
        ]
        data["inputs"] = {name: [f"{c}.{s}" for c, s in t] for name, t in self.inputs.items()}
        data["outputs"] = {name: f"{comp}.{out}" for name, (comp, out) in self.outputs.items()}
        return data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pipeline) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Pipeline(name={self.name!r}, components={list(self.components)})"


def _name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _compatible(sent: Any, accepted: Any) -> bool:
    """Whether a value of type `sent` may be passed to an input annotated `accepted`."""
    if accepted is Any or sent is Any or sent == accepted:
        return True
    accepted_origin, sent_origin = typing.get_origin(accepted), typing.get_origin(sent)
    if accepted_origin in (typing.Union, UnionType):
        return any(_compatible(sent, arg) for arg in typing.get_args(accepted))
    if sent_origin in (typing.Union, UnionType):
        return all(_compatible(arg, accepted) for arg in typing.get_args(sent))
    if accepted_origin is not None or sent_origin is not None:
        if accepted_origin != sent_origin and not (
            isinstance(sent_origin, type)
            and isinstance(accepted_origin, type)
            and issubclass(sent_origin, accepted_origin)
        ):
            return False
        sent_args, accepted_args = typing.get_args(sent), typing.get_args(accepted)
        if not sent_args or not accepted_args:
            return True
        return len(sent_args) == len(accepted_args) and all(
            _compatible(s, a) for s, a in zip(sent_args, accepted_args, strict=True)
        )
    return isinstance(sent, type) and isinstance(accepted, type) and issubclass(sent, accepted)


def _describe_result(current: Any, result: Any) -> None:
    """Counts of a component's result on its span: hits out, tokens used."""
    if not isinstance(result, dict):
        return
    if isinstance(result.get("hits"), list):
        current.set_attribute("rag.hits", len(result["hits"]))
    usage = result.get("usage")
    if isinstance(usage, dict):
        for key in ("prompt_tokens", "completion_tokens"):
            if isinstance(usage.get(key), int):
                current.set_attribute(f"rag.{key}", usage[key])
