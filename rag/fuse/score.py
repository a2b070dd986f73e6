"""Score fusion: each list's scores normalised, weighted and summed.

Normalisations, per list:
- "minmax": (s - min) / (max - min); a list whose scores are all equal gives 1 to each.
- "zscore": (s - mean) / std; all equal gives 0 to each.
- "dbsf" (distribution-based score fusion, as in Qdrant): min-max between mean - 3 std and
  mean + 3 std, clipped to [0, 1]; all equal gives 0.5.
A chunk a list did not return counts as that list's lowest normalised score, so missing from a
list is never better than being last in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np

from rag.core.component import Component, Variadic
from rag.core.errors import ConfigError
from rag.core.run_report import note
from rag.core.types import Chunk, Hit
from rag.fuse.lists import check_fusion_settings, cut_lists

__all__ = ["NORMALIZATIONS", "ScoreFusion", "normalize"]

NORMALIZATIONS = ("minmax", "zscore", "dbsf")


def normalize(scores: Sequence[float], method: str) -> np.ndarray:
    """The scores of one list, normalised by `method` (see the module docstring)."""
    values = np.asarray(scores, dtype=np.float64)
    if values.size == 0:
        return values
    if method == "minmax":
        low, high = values.min(), values.max()
        return (values - low) / (high - low) if high > low else np.ones_like(values)
    mean, std = values.mean(), values.std()
    if method == "zscore":
        return (values - mean) / std if std > 0 else np.zeros_like(values)
    if method == "dbsf":
        return np.clip((values - (mean - 3 * std)) / (6 * std), 0.0, 1.0) if std > 0 else np.full_like(values, 0.5)
    raise ConfigError(f"score normalisation must be one of {', '.join(NORMALIZATIONS)}, got {method!r}")


class ScoreFusion(Component):
    """Fuse lists by their normalised scores: score(d) = Σ weight_i * normalised_i(d).

    `method` is "minmax", "zscore" or "dbsf". `weights`, `list_top_k` and `top_k` (None keeps
    every candidate, the union) work as in `ReciprocalRankFusion`; `weights: "auto"` takes the weights
    the index learned from its own documents (`rag.fuse.adapt`; equal until an estimate is given with
    `use_estimate`). Ties are broken by the best rank a chunk reached in any list, then by id. One list
    is returned as it is, cut to `top_k`.
    """

    outputs: ClassVar[dict[str, Any]] = {"hits": list[Hit]}

    def __init__(
        self,
        method: str = "minmax",
        top_k: int | None = 10,
        weights: list[float] | Literal["auto"] | None = None,
        list_top_k: int | list[int] | None = None,
    ) -> None:
        if method not in NORMALIZATIONS:
            raise ConfigError(f"ScoreFusion: method must be one of {', '.join(NORMALIZATIONS)}, got {method!r}")
        if isinstance(weights, str) and weights != "auto":
            raise ConfigError(f"ScoreFusion: weights must be a list of numbers, 'auto' or None, got {weights!r}")
        check_fusion_settings("ScoreFusion", top_k, None if weights == "auto" else weights, list_top_k)
        self.method = method
        self.top_k = top_k
        self.weights = weights
        self.list_top_k = list_top_k
        self.estimate: Any = None  # the LegWeights of `weights: auto`, given by the index

    def use_estimate(self, estimate: Any) -> None:
        """Fuse with the weights the index learned (`rag.fuse.adapt.LegWeights`; None: equal weights)."""
        self.estimate = estimate

    def run(self, hits: Variadic[list[Hit]], top_k: int | None = None) -> dict[str, list[Hit]]:
        """The fused hits, best first."""
        limit = top_k or self.top_k
        lists, weights = cut_lists("ScoreFusion", hits, self._weights(len(hits)), self.list_top_k)
        if len(lists) == 1:
            return {"hits": lists[0][:limit]}
        scores: dict[str, float] = {}
        best_rank: dict[str, int] = {}
        chunks: dict[str, Chunk] = {}
        members: list[set[str]] = []
        floors = []
        for ranked, weight in zip(lists, weights, strict=True):
            normalised = normalize([hit.score for hit in ranked], self.method)
            floors.append(weight * float(normalised.min()) if normalised.size else 0.0)
            members.append(set())
            for rank, (hit, value) in enumerate(zip(ranked, normalised.tolist(), strict=True), start=1):
                chunk_id = hit.chunk.id
                members[-1].add(chunk_id)
                if chunk_id in scores:
                    scores[chunk_id] += weight * value
                    best_rank[chunk_id] = min(best_rank[chunk_id], rank)
                else:
                    scores[chunk_id] = weight * value
                    best_rank[chunk_id] = rank
                    chunks[chunk_id] = hit.chunk
        for present, floor in zip(members, floors, strict=True):  # absent from a list: that list's lowest score
            for chunk_id in scores.keys() - present:
                scores[chunk_id] += floor
        order = sorted(scores, key=lambda i: (-scores[i], best_rank[i], i))[:limit]
        return {"hits": [Hit(chunks[i], scores[i]) for i in order]}

    def _weights(self, count: int) -> list[float] | None:
        """The weights to fuse `count` lists with: as set, or for `auto` the index's estimate (said in the run's
        report) when it has one per list."""
        if self.weights != "auto":
            return self.weights
        if self.estimate is None or len(self.estimate.weights) != count:
            note("weights: equal (no estimate from the index)")
            return None
        note(self.estimate.description)  # made once per estimate, not per query
        return list(self.estimate.weights)
