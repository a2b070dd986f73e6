"""The one exception tree: library code raises only its own errors (the house rule, checked)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from rag.core import errors

PACKAGE = Path(__file__).resolve().parents[2] / "rag"
BUILTIN = {"ValueError", "RuntimeError", "TypeError", "KeyError", "Exception", "OSError", "IOError", "LookupError"}


def test_library_code_raises_no_builtin_exception() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            call = node.exc if isinstance(node, ast.Raise) else None
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in BUILTIN:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} raises {call.func.id}")
    assert not found, "raise an error of rag.core.errors instead: " + "; ".join(found)


def test_the_tree_keeps_builtin_catchers_working() -> None:
    for error, builtin in ((errors.InvalidArgumentError, ValueError), (errors.BrokenContractError, RuntimeError)):
        assert issubclass(error, errors.RagError)
        with pytest.raises(builtin):
            raise error("x")
    assert all(name in errors.__doc__ for name in errors.__all__)  # every error is drawn in the tree
