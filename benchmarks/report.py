"""What benchmark scripts share: where the data is, the command header, writing into docs, SciFact's hybrid legs."""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rag.eval.beir import BeirDataset
    from rag.eval.tune import TuneReport
    from rag.retrieve.base import Retriever

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
PAGE = REPO / "docs" / "benchmarks.md"


def header(command: str) -> str:
    """The line above a table: the command that produced it and the machine it ran on."""
    return (
        f"Command: `{command}` ({platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')})"
    )


def command_line() -> str:
    """How this script was invoked, for the table's header."""
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(REPO) if script.is_relative_to(REPO) else script
    return " ".join(["python", str(shown), *sys.argv[1:]])


def peak_memory_mb() -> float:
    """This process's resident-memory high-water mark."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def markdown_table(columns: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, text: str, heading: str, page: Path = PAGE) -> None:
    """Put `text` between `<!-- name -->` and `<!-- /name -->` in the page (appended under `heading` if absent)."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    content = page.read_text(encoding="utf-8") if page.exists() else "# Benchmarks\n"
    block = f"{start}\n{text}\n{end}"
    if start in content and end in content:
        head, _, rest = content.partition(start)
        _, _, tail = rest.partition(end)
        content = head + block + tail
    else:
        content = content.rstrip() + f"\n\n## {heading}\n\n{block}\n"
    page.write_text(content, encoding="utf-8")


def hybrid_legs(split: str = "test") -> tuple[BeirDataset, list[Retriever]]:
    """SciFact (`split`'s queries) and `hybrid`'s two retrievers, BM25 and MiniLM dense, loaded with their
    corpus index (built, or reused, by `rag eval`'s machinery)."""
    from rag.core.serialization import load_pipeline
    from rag.eval.beir import load_beir
    from rag.eval.runner import evaluate
    from rag.indexer import retrievers

    dataset = load_beir(DATA / "scifact", split=split)
    pipeline = load_pipeline("hybrid")
    evaluate(dataset, pipeline, top_k=100)  # loads (or builds) the index into the pipeline's retrievers
    return dataset, list(retrievers(pipeline).values())


def tuned_cells(report: TuneReport) -> list[str]:
    """A `rag tune` stage as two table cells: held-out shipped -> tuned (gain, 95% interval), and what was chosen."""
    low, high = report.gain_interval
    held_out = (
        f"{report.held_out['baseline']:.4f} → {report.held_out['tuned']:.4f} ({report.gain:+.4f}, "
        f"{low:+.4f} to {high:+.4f})"
    )
    return [held_out, "shipped kept" if report.chosen == report.baseline else report.chosen.label()]
