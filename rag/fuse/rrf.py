"""Reciprocal-rank fusion (Cormack, Clarke & Büttcher, 2009), weighted."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from rag.core.component import Component, Variadic
from rag.core.errors import ConfigError
from rag.core.types import Chunk, Hit
from rag.fuse.lists import check_fusion_settings, cut_lists

__all__ = ["ReciprocalRankFusion"]


class ReciprocalRankFusion(Component):
    """Fuse ranked lists: score(d) = Σ weight_i / (k + rank_i(d)), rank starting at 1.

    `weights` (one per list, in the order of the pipeline's connections; default 1 each) scale
    each list's contribution; `list_top_k` (one integer, or one per list) keeps only the top of
    each list before fusing. `top_k=None` keeps every candidate (the union), for a reranker to
    order. Ties are broken by the best rank a chunk reached in any list, then by id, so the result
    is deterministic. One list is returned as it is (cut to `top_k`), its scores untouched.
    """

    outputs: ClassVar[dict[str, Any]] = {"hits": list[Hit]}

    def __init__(
        self,
        k: int = 60,
        top_k: int | None = 10,
        weights: list[float] | None = None,
        list_top_k: int | list[int] | None = None,
    ) -> None:
        if k < 0:
            raise ConfigError(f"ReciprocalRankFusion: k must be >= 0, got {k}")
        check_fusion_settings("ReciprocalRankFusion", top_k, weights, list_top_k)
        self.k = k
        self.top_k = top_k
        self.weights = weights
        self.list_top_k = list_top_k

    def run(self, hits: Variadic[list[Hit]], top_k: int | None = None) -> dict[str, list[Hit]]:
        """The fused hits, best first."""
        limit = top_k or self.top_k
        lists, weights = cut_lists("ReciprocalRankFusion", hits, self.weights, self.list_top_k)
        if len(lists) == 1:
            return {"hits": lists[0][:limit]}
        return {"hits": fuse_ranks(lists, weights, self.k, limit)}


def fuse_ranks(lists: Sequence[Sequence[Hit]], weights: Sequence[float], k: int, limit: int | None) -> list[Hit]:
    """The best `limit` (None: all) chunks by Σ weight / (k + rank), ties by best rank, then id."""
    scores: dict[str, float] = {}
    best_rank: dict[str, int] = {}
    chunks: dict[str, Chunk] = {}
    for ranked, weight in zip(lists, weights, strict=True):
        for rank, hit in enumerate(ranked, start=1):
            chunk_id = hit.chunk.id
            if chunk_id in scores:
                scores[chunk_id] += weight / (k + rank)
                best_rank[chunk_id] = min(best_rank[chunk_id], rank)
            else:
                scores[chunk_id] = weight / (k + rank)
                best_rank[chunk_id] = rank
                chunks[chunk_id] = hit.chunk
    order = sorted(scores, key=lambda i: (-scores[i], best_rank[i], i))[:limit]
    return [Hit(chunks[i], scores[i]) for i in order]
