"""One indexing job of the server, run in a child process that is bounded in memory and time.

A hostile upload (a decompression bomb the loaders' limits do not foresee, a parser that loops or crashes) can
then take down only its own job: the child is killed when its resident memory (with its own children) goes over
`memory_mb` or when it runs longer than `timeout_s`, and the server goes on answering queries from the previous
index generation, which the killed run never touched (see `rag.store.index_folder`). The child rebuilds the
served pipeline from its description, allowing exactly the component classes the server already uses.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.core.errors import RagError, ResourceLimitError
from rag.core.pipeline import Pipeline
from rag.core.serialization import pipeline_from_dict

__all__ = ["IndexJobRunner"]

logger = logging.getLogger(__name__)

_POLL_S = 0.05


@dataclass(frozen=True)
class IndexJobRunner:
    """Brings the index at `index` in step with a folder, in a child process, and returns the run's report (a
    dict, with the child's `peak_memory_mb` as sampled every 50 ms); a RagError of the run is raised again here, and
    going over a bound raises ResourceLimitError."""

    index: Path
    pipeline: Pipeline
    memory_mb: float = 4096.0
    timeout_s: float = 3600.0
    wait: float = 600.0

    def __call__(self, folder: Path) -> dict[str, Any]:
        context = multiprocessing.get_context("spawn")  # never fork a process that runs threads
        results: multiprocessing.Queue[tuple[str, Any]] = context.Queue()
        spec = self.pipeline.to_dict()
        allowed = sorted({_dotted(component) for component in self.pipeline.components.values()})
        if self.pipeline.indexing is not None:
            allowed.append(_dotted(self.pipeline.indexing.chunker))
        child = context.Process(
            target=_run,
            args=(str(self.index), spec, allowed, str(folder), self.wait, results),
            name="rag-index-job",
            daemon=True,
        )
        child.start()
        try:
            outcome = self._watch(child, results)
        finally:
            if child.is_alive():
                child.kill()
            child.join()
        kind, value, peak = outcome
        if kind == "report":
            return {**value, "peak_memory_mb": round(peak / 2**20)}
        if kind == "error":
            raise RagError(value)
        raise ResourceLimitError(value)

    def _watch(self, child: Any, results: multiprocessing.Queue[tuple[str, Any]]) -> tuple[str, Any, int]:
        """(kind, value, peak resident bytes): the child's result, or ("killed", reason) when it went over a bound
        or ended without one."""
        import psutil

        started = time.monotonic()
        process = psutil.Process(child.pid)
        peak = 0
        while True:
            try:
                return (*results.get(timeout=_POLL_S), peak)
            except queue.Empty:
                pass
            if not child.is_alive():
                try:  # it may have put its result just before it ended
                    return (*results.get(timeout=1.0), peak)
                except queue.Empty:
                    reason = f"the indexing process ended without a result (exit code {child.exitcode})"
                    return "killed", reason, peak
            peak = max(peak, _resident(process))
            if peak > self.memory_mb * 2**20:
                reason = (
                    f"the indexing job used over {self.memory_mb:.0f} MB of memory and was stopped "
                    "(a decompression bomb?); raise --job-memory-mb if the documents are genuine"
                )
                return "killed", reason, peak
            if time.monotonic() - started > self.timeout_s:
                reason = (
                    f"the indexing job ran over {self.timeout_s:.0f} s and was stopped; raise --job-timeout-s if "
                    "the documents are genuine"
                )
                return "killed", reason, peak


def _resident(process: Any) -> int:
    """Resident bytes of `process` and its children (0 once it is gone)."""
    import psutil

    try:
        members = [process, *process.children(recursive=True)]
        return sum(member.memory_info().rss for member in members)
    except psutil.Error:
        return 0


def _dotted(component: object) -> str:
    kind = type(component)
    return f"{kind.__module__}.{kind.__qualname__}"


def _run(
    index: str,
    spec: dict[str, Any],
    allowed: list[str],
    folder: str,
    wait: float,
    results: multiprocessing.Queue[tuple[str, Any]],
) -> None:
    """The child: index `folder` into `index` with the pipeline `spec`, and put ("report", dict) or
    ("error", message) on `results`."""
    from rag.api import RAG

    try:
        pipeline = pipeline_from_dict(spec, allowed, "the served pipeline")
        report = RAG(index, pipeline, allowed).index(folder, wait=wait)
        results.put(("report", report.to_dict()))
    except RagError as exc:
        results.put(("error", str(exc)))
    except Exception:
        logging.getLogger(__name__).exception("indexing job failed")
        results.put(("error", "internal error while indexing; the server log has the details"))
