"""Quality against latency for several pipelines, drawn with matplotlib (imported when called)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from rag.core.errors import MissingDependencyError
from rag.eval.runner import EvalReport

__all__ = ["plot_quality_latency"]


def plot_quality_latency(reports: Sequence[EvalReport], path: str | os.PathLike[str], metric: str = "ndcg@10") -> None:
    """A PNG at `path`: one point per pipeline, median latency (log scale) across, `metric` up."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingDependencyError("matplotlib", "plot", "rag eval --plot") from exc
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    for report in reports:
        x, y = report.latency_ms["p50"], report.metrics[metric]
        axes.scatter([x], [y], s=40)
        axes.annotate(report.pipeline, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=9)
    axes.set_xscale("log")
    axes.set_xlabel("median latency per query, one at a time (ms, log scale)")
    axes.set_ylabel(metric)
    first = reports[0]
    axes.set_title(f"{first.dataset} ({first.split}, {len(first.run)} queries): quality against latency")
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
