"""The component contract, written once.

A component is a class derived from `Component` that:

1. takes only plain, serialisable settings in its constructor (str, int, float, bool, None, and
   lists / dicts of those). The constructor is cheap: it stores settings and loads nothing.
   The base class records the arguments, so `to_dict()` round-trips without extra code.
2. loads heavy state (models, files) in `warm_up()`, which may be called more than once and
   must do its work only the first time.
3. declares its outputs in the class attribute `outputs` (name -> type) and takes its inputs
   from the typed signature of `run()`: a parameter without a default is a required input;
   one annotated `Variadic[T]` collects a list with one `T` from each connected sender (fan-in).
4. `run(**inputs)` returns a dict with exactly the declared outputs.
"""

from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, TypeVar

from rag.core.builtins import type_name
from rag.core.errors import ConfigError

__all__ = ["Component", "InputSocket", "Variadic", "input_sockets", "plain_settings"]

T = TypeVar("T")
_VARIADIC = "rag.variadic"
Variadic = Annotated[list[T], _VARIADIC]
"""`Variadic[X]` marks an input that receives a list of one `X` from every connected sender."""


@dataclass(frozen=True, slots=True)
class InputSocket:
    """One input of a component, read from its `run()` signature."""

    name: str
    type: Any
    required: bool
    variadic: bool


class Component:
    """Base class of every pipeline component (see the module docstring for the contract)."""

    outputs: ClassVar[dict[str, Any]] = {}
    id_space: str | None = None
    """Where the ids of the hits this component makes come from ("chunks": the index's chunk store). None
    for components that pass on the hits they receive (fusion, rerankers): theirs are their senders'."""
    answer_modes: ClassVar[tuple[str, ...] | None] = None
    """The answer modes this component can take part in ("extractive", "grounded", "generate"; None: any).
    A generator that cannot enforce grounded generation leaves "grounded" out, so a pipeline asking for it
    is refused when it is built."""
    _settings: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None:
            cls.__init__ = _recording_init(init)  # type: ignore[method-assign]

    @property
    def settings(self) -> dict[str, Any]:
        """The constructor arguments this component was built with (defaults filled in)."""
        return dict(getattr(self, "_settings", {}))

    def warm_up(self) -> None:
        """Load heavy state. The default has nothing to load."""

    def run(self, *args: Any, **inputs: Any) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} does not implement run()")

    def to_dict(self) -> dict[str, Any]:
        return {"type": type_name(type(self)), "init": self.settings}

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.settings == other.settings

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        return f"{type(self).__name__}({args})"


def _recording_init(init: Any) -> Any:
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self: Component, *args: Any, **kwargs: Any) -> None:
        if "_settings" not in self.__dict__:  # the outermost class records, not its bases
            try:
                bound = signature.bind(self, *args, **kwargs)
            except TypeError as exc:
                names = ", ".join(list(signature.parameters)[1:])
                raise ConfigError(f"{type(self).__name__}: {exc}; its settings are: {names}") from None
            bound.apply_defaults()
            settings: dict[str, Any] = {}
            for name, value in list(bound.arguments.items())[1:]:
                kind = signature.parameters[name].kind
                if kind is inspect.Parameter.VAR_KEYWORD:
                    settings.update(value)
                elif kind is inspect.Parameter.VAR_POSITIONAL:
                    raise ConfigError(f"{type(self).__name__}: *args are not serialisable settings")
                else:
                    settings[name] = value
            self._settings = plain_settings(settings, owner=type(self).__name__)
        init(self, *args, **kwargs)

    return __init__


def plain_settings(value: Any, owner: str, where: str = "") -> Any:
    """Check that `value` is plain data (YAML/JSON-safe) and return a copy of it."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [plain_settings(v, owner, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{owner}: setting keys must be strings, got {k!r} in {where or 'settings'}")
            out[k] = plain_settings(v, owner, f"{where}.{k}" if where else k)
        return out
    raise ConfigError(
        f"{owner}: setting '{where}' is a {type(value).__name__} ({value!r}); settings must be plain "
        "data (str, int, float, bool, None, lists and dicts) so the pipeline can be saved as YAML"
    )


def input_sockets(component: Component | type[Component]) -> dict[str, InputSocket]:
    """The inputs of a component, read from the signature and type hints of its `run()`."""
    cls = component if isinstance(component, type) else type(component)
    run = cls.run
    hints = typing.get_type_hints(run, include_extras=True)
    sockets: dict[str, InputSocket] = {}
    for name, param in inspect.signature(run).parameters.items():
        if name == "self" or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        annotation = hints.get(name, Any)
        variadic = typing.get_origin(annotation) is Annotated and _VARIADIC in annotation.__metadata__
        if variadic:
            annotation = typing.get_args(typing.get_args(annotation)[0])[0]
        sockets[name] = InputSocket(name, annotation, param.default is inspect.Parameter.empty, variadic)
    return sockets
