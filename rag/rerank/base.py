"""The reranker contract: score (query, passage) pairs, keep the best `top_k` above a threshold."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from rag.core.component import Component
from rag.core.errors import ConfigError
from rag.core.types import Hit

__all__ = ["Reranker"]


class Reranker(Component):
    """Re-order hits by `score(query, texts)`, best first; the new score replaces the old.

    Subclasses implement `score` and call `check_settings(top_k, score_threshold)` in their
    constructor. Hits scoring below `score_threshold` (when set) are dropped; equal scores keep
    the first stage's order. `top_k` (None keeps them all) can be overridden per run.
    """

    outputs: ClassVar[dict[str, Any]] = {"hits": list[Hit]}
    top_k: int | None
    score_threshold: float | None

    def check_settings(self, top_k: int | None, score_threshold: float | None) -> None:
        if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
            raise ConfigError(f"{type(self).__name__}: top_k must be None or an integer >= 1, got {top_k!r}")
        if score_threshold is not None and not isinstance(score_threshold, (int, float)):
            raise ConfigError(
                f"{type(self).__name__}: score_threshold must be None or a number, got {score_threshold!r}"
            )

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        """One relevance score per text (higher is more relevant)."""
        raise NotImplementedError

    def run(self, query: str, hits: list[Hit], top_k: int | None = None) -> dict[str, list[Hit]]:
        """The hits re-ordered by relevance to `query`, at most `top_k`, none below the threshold."""
        if not hits:
            return {"hits": []}
        scores = self.score(query, [hit.chunk.text for hit in hits])
        order = sorted(range(len(hits)), key=lambda i: -scores[i])  # stable: ties keep the first stage's order
        threshold = self.score_threshold
        kept = [Hit(hits[i].chunk, float(scores[i])) for i in order if threshold is None or scores[i] >= threshold]
        return {"hits": kept[: top_k or self.top_k]}
