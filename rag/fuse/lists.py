"""What every fusion component does before fusing: check the settings, cut each list, merge chunks."""

from __future__ import annotations

from collections.abc import Sequence

from rag.core.errors import ConfigError
from rag.core.types import Hit

__all__ = ["check_fusion_settings", "cut_lists"]


def check_fusion_settings(
    name: str, top_k: int | None, weights: Sequence[float] | None, list_top_k: int | Sequence[int] | None
) -> None:
    """Raise a ConfigError naming every bad value."""
    problems = []
    if top_k is not None and top_k < 1:
        problems.append(f"top_k must be None (keep every candidate) or >= 1, got {top_k}")
    if weights is not None and (not weights or any(w < 0 for w in weights)):
        problems.append(f"weights must be a non-empty list of numbers >= 0, one per fused list, got {weights!r}")
    depths = [list_top_k] if isinstance(list_top_k, int) else list(list_top_k or [])
    if any(d < 1 for d in depths) or (list_top_k is not None and not depths):
        problems.append(f"list_top_k must be None, an integer >= 1 or one per fused list, got {list_top_k!r}")
    if problems:
        raise ConfigError(f"{name}: " + "; ".join(problems))


def cut_lists(
    name: str, hits: Sequence[list[Hit]], weights: Sequence[float] | None, list_top_k: int | Sequence[int] | None
) -> tuple[list[list[Hit]], list[float]]:
    """Each list cut to its `list_top_k`, and the weight of each (1 when not given)."""
    count = len(hits)
    for setting, value in (("weights", weights), ("list_top_k", list_top_k)):
        if isinstance(value, Sequence) and len(value) != count:
            raise ConfigError(
                f"{name}: {setting} has {len(value)} values but {count} lists are fused; give one per "
                "connected retriever, in the order of the pipeline's connections"
            )
    depths = [list_top_k] * count if list_top_k is None or isinstance(list_top_k, int) else list(list_top_k)
    cut = [list(ranked[:depth]) for ranked, depth in zip(hits, depths, strict=True)]
    return cut, list(weights) if weights is not None else [1.0] * count
