"""What the pipeline runs inside `recording()` did: each component's wall time, and the notes components make about
how they worked (a filtered FAISS search says which strategy it chose). `rag query --json` reports it as `timings`.

Outside `recording()` nothing is collected: `timed` and `note` cost a context variable lookup. The report follows the
context of the caller (a thread started inside it records nothing unless it copies the context).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RunReport", "note", "recording", "timed"]


@dataclass
class RunReport:
    """Milliseconds per component (summed over the runs recorded) and each component's notes, in order."""

    components_ms: dict[str, float] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """`{"components": {NAME: {"ms": MS, "notes": [...]}}}` (notes only where a component made some)."""
        names = list(self.components_ms) + [n for n in self.notes if n not in self.components_ms]
        components: dict[str, Any] = {}
        for name in names:
            components[name] = {"ms": round(self.components_ms.get(name, 0.0), 3)}
            if name in self.notes:
                components[name]["notes"] = self.notes[name]
        return {"components": components}


_report: ContextVar[RunReport | None] = ContextVar("rag_run_report", default=None)
_component: ContextVar[str] = ContextVar("rag_run_component", default="")


@contextmanager
def recording() -> Iterator[RunReport]:
    """Collect what the runs inside the block do into the yielded report."""
    report = RunReport()
    token = _report.set(report)
    try:
        yield report
    finally:
        _report.reset(token)


@contextmanager
def timed(component: str) -> Iterator[None]:
    """Time the block as a run of `component`; notes made inside it are that component's."""
    report = _report.get()
    if report is None:
        yield
        return
    token = _component.set(component)
    started = time.perf_counter()
    try:
        yield
    finally:
        elapsed = (time.perf_counter() - started) * 1000
        report.components_ms[component] = report.components_ms.get(component, 0.0) + elapsed
        _component.reset(token)


def note(text: str) -> None:
    """Record `text` for the component running now, when a report is being recorded."""
    report = _report.get()
    if report is not None:
        report.notes.setdefault(_component.get() or "(outside a component)", []).append(text)
