"""What every benchmark script shares: where the data is, the command header, writing into docs."""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from pathlib import Path

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
