"""Which component classes a pipeline file may name.

The project's own components are listed in `rag.core.builtins` by short name and imported only when used, so
`import rag` stays fast. Any other class must be allowed by its full dotted name
(`allowed=["mypackage.module.MyRetriever"]`); a pipeline file never triggers another import.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Collection

from rag.core.builtins import BUILTIN_COMPONENTS, type_name
from rag.core.component import Component
from rag.core.errors import ConfigError

__all__ = ["BUILTIN_COMPONENTS", "resolve_type", "type_name"]


def resolve_type(name: str, allowed: Collection[str] = (), where: str = "") -> type[Component]:
    """The component class for `name`: a built-in short name, or a dotted name in `allowed`."""
    prefix = f"{where}: " if where else ""
    if name in BUILTIN_COMPONENTS:
        target = BUILTIN_COMPONENTS[name]
    elif name in allowed:
        module, _, qualname = name.rpartition(".")
        target = f"{module}:{qualname}"
    else:
        close = difflib.get_close_matches(name, list(BUILTIN_COMPONENTS), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(
            f"{prefix}unknown component type '{name}'; {hint}built-in types are "
            f"{', '.join(sorted(BUILTIN_COMPONENTS))}; a class of your own must be allowed by its "
            f"full name (allowed=['{name if '.' in name else 'package.module.' + name}'])"
        )
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{prefix}component type '{name}' cannot be imported from {module_name}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Component)):
        raise ConfigError(f"{prefix}'{name}' is not a rag Component subclass")
    return cls
