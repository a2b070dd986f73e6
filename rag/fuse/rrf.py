"""Reciprocal-rank fusion (Cormack, Clarke & Büttcher, 2009)."""

from __future__ import annotations

from typing import Any, ClassVar

from rag.core.component import Component, Variadic
from rag.core.errors import ConfigError
from rag.core.types import Hit

__all__ = ["ReciprocalRankFusion"]


class ReciprocalRankFusion(Component):
    """Fuse ranked lists: score(d) = Σ 1 / (k + rank(d)), rank starting at 1.

    Ties are broken by the best rank a chunk reached in any list, then by id, so the result is
    deterministic. The fused score replaces the retrievers' scores.
    """

    outputs: ClassVar[dict[str, Any]] = {"hits": list[Hit]}

    def __init__(self, k: int = 60, top_k: int = 10) -> None:
        if k < 0:
            raise ConfigError(f"ReciprocalRankFusion: k must be >= 0, got {k}")
        if top_k < 1:
            raise ConfigError(f"ReciprocalRankFusion: top_k must be >= 1, got {top_k}")
        self.k = k
        self.top_k = top_k

    def run(self, hits: Variadic[list[Hit]], top_k: int | None = None) -> dict[str, list[Hit]]:
        scores: dict[str, float] = {}
        best_rank: dict[str, int] = {}
        chunks = {}
        for ranked in hits:
            for rank, hit in enumerate(ranked, start=1):
                scores[hit.id] = scores.get(hit.id, 0.0) + 1.0 / (self.k + rank)
                best_rank[hit.id] = min(best_rank.get(hit.id, rank), rank)
                chunks.setdefault(hit.id, hit.chunk)
        order = sorted(scores, key=lambda i: (-scores[i], best_rank[i], i))
        return {"hits": [Hit(chunks[i], scores[i]) for i in order[: top_k or self.top_k]]}
