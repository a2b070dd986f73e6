"""`rag tune` for a pipeline that reranks its fused candidates: how many to rerank, and how to blend the scores.

A reranked hybrid (`hybrid-rerank`) hands its fusion's top `depth` candidates to a reranker, and may blend the
reranker's list with the fusion's (a second fusion component fed by both). After the first-stage fusion is
chosen, the reranker scores each query's candidates once, as deep as any candidate needs; every (depth, blend)
candidate is then scored on those scores with the same cross-validation as the fusion itself. Tuning the two
stages one after the other, the first with the second fixed, is a coordinate step, not a joint search: the
fusion is chosen for its own top 10, not for what the reranker makes of its top `depth`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rag.core.errors import PipelineError
from rag.core.pipeline import Pipeline
from rag.core.types import Hit
from rag.eval.beir import BeirDataset
from rag.eval.metrics import evaluate_run
from rag.fuse.rrf import ReciprocalRankFusion
from rag.fuse.score import ScoreFusion
from rag.rerank.base import Reranker

__all__ = [
    "ALL",
    "BLEND_WEIGHTS",
    "DEPTHS",
    "RerankCandidate",
    "RerankStage",
    "candidate_of_stage",
    "rerank_grid",
    "rerank_scores",
    "rerank_stage",
    "reranker_scores",
]

DEPTHS = (10, 20, 30, 50)
"""Candidates handed to the reranker, besides the pipeline's own number."""
ALL = 100
"""The depth of a fusion that keeps every candidate (`top_k: null`): as deep as `rag tune` runs the legs."""
BLEND_WEIGHTS = tuple(round(0.1 * i, 1) for i in range(1, 10))
"""The first stage's share of a blend's weight (the reranker has the rest)."""
_BLEND_METHODS = ("minmax", "zscore", "dbsf")


@dataclass(frozen=True)
class RerankStage:
    """Where a pipeline reranks: its first-stage fusion, the reranker fed by it, and the blend of the two (or None
    when the reranker's order is the answer)."""

    fusion: str
    reranker: str
    blend: str | None

    def reranker_in(self, pipeline: Pipeline) -> Reranker:
        component = pipeline.components[self.reranker]
        assert isinstance(component, Reranker)  # rerank_stage found it as one
        return component


@dataclass(frozen=True)
class RerankCandidate:
    """How many fused candidates to rerank, and the blend's type and settings (None: the reranker's order)."""

    depth: int
    blend_type: str | None = None
    blend: tuple[tuple[str, Any], ...] = ()

    @property
    def blend_settings(self) -> dict[str, Any]:
        return dict(self.blend)

    def label(self) -> str:
        if self.blend_type is None:
            return f"rerank the top {self.depth}, reranker's order"
        shown = ", ".join(f"{k}={v}" for k, v in self.blend if v is not None)
        return f"rerank the top {self.depth}, blend {self.blend_type}({shown})"


def rerank_stage(pipeline: Pipeline, fusion: str) -> RerankStage | None:
    """The reranking step after `fusion` in `pipeline`, or None when nothing reranks its hits."""

    def senders(name: str) -> list[str]:
        return [c.sender for c in pipeline.connections if c.receiver == name]

    rerankers = [
        name
        for name, component in pipeline.components.items()
        if isinstance(component, Reranker) and fusion in senders(name)
    ]
    if not rerankers:
        return None
    reranker = rerankers[0]
    blends = [
        name
        for name, component in pipeline.components.items()
        if isinstance(component, ReciprocalRankFusion | ScoreFusion) and set(senders(name)) == {fusion, reranker}
    ]
    if blends and senders(blends[0]) != [fusion, reranker]:
        raise PipelineError(
            f"pipeline '{pipeline.name}': '{blends[0]}' blends '{reranker}' before '{fusion}'; connect the first "
            f"stage first ({fusion}.hits, then {reranker}.hits), so that its weights read first stage, reranker"
        )
    return RerankStage(fusion, reranker, blends[0] if blends else None)


def candidate_of_stage(pipeline: Pipeline, stage: RerankStage) -> RerankCandidate:
    """The pipeline's own depth (its fusion's `top_k`; a fusion keeping every candidate counts as `ALL`) and
    blend as a candidate."""
    depth = pipeline.components[stage.fusion].settings.get("top_k") or ALL
    if stage.blend is None:
        return RerankCandidate(depth)
    blend = pipeline.components[stage.blend]
    settings = {k: v for k, v in blend.settings.items() if k != "top_k"}
    return RerankCandidate(depth, type(blend).__name__, tuple(sorted(settings.items())))


def rerank_grid(stage: RerankStage, own: RerankCandidate) -> list[RerankCandidate]:
    """Every depth (`DEPTHS` and the pipeline's own); with a blend in the pipeline, every blend: score fusion with
    each normalisation and first-stage share (`BLEND_WEIGHTS`), and reciprocal rank fusion. (The reranker's order
    alone is not among them there: the blend component would have to go; a share of 0.1 comes close.)"""
    depths = sorted({*DEPTHS, own.depth})
    if stage.blend is None:
        return [RerankCandidate(depth) for depth in depths]
    candidates = []
    for depth in depths:
        candidates.append(RerankCandidate(depth, "ReciprocalRankFusion", (("k", 60),)))
        for method in _BLEND_METHODS:
            for share in BLEND_WEIGHTS:
                weights = [share, round(1 - share, 1)]
                candidates.append(RerankCandidate(depth, "ScoreFusion", (("method", method), ("weights", weights))))
    return candidates


def rerank_scores(
    candidate: RerankCandidate,
    fused: dict[str, list[Hit]],
    scores: dict[str, dict[str, float]],
    reranker: Reranker,
    dataset: BeirDataset,
) -> dict[str, float]:
    """nDCG@10 per query of the pipeline's answer with `candidate`: its top `depth` fused hits reranked by
    `scores` (query id -> chunk id -> the reranker's score, as its `run` keeps them), then blended."""
    blend = _blend(candidate)
    run = {}
    for qid, hits in fused.items():
        top = hits[: candidate.depth]
        reranked = _reranked(top, scores[qid], reranker)
        final = blend.run(hits=[top, reranked])["hits"] if blend is not None else reranked
        run[qid] = list(dict.fromkeys(hit.chunk.path for hit in final))
    return evaluate_run(run, dataset.qrels)["ndcg@10"]


def reranker_scores(
    reranker: Reranker,
    dataset: BeirDataset,
    fused: dict[str, list[Hit]],
    depth: int,
    known: dict[str, dict[str, float]] | None = None,
) -> dict[str, dict[str, float]]:
    """The reranker's score of each query's top `depth` fused hits (query id -> chunk id -> score), added to
    `known` (scores already computed, which are not computed again) and returned."""
    reranker.warm_up()
    out = known if known is not None else {}
    for qid, hits in fused.items():
        scored = out.setdefault(qid, {})
        missing = [hit for hit in hits[:depth] if hit.chunk.id not in scored]
        if missing:
            values = reranker.score(dataset.queries[qid], [hit.chunk.text for hit in missing])
            scored |= {hit.chunk.id: float(value) for hit, value in zip(missing, values, strict=True)}
    return out


def _reranked(hits: list[Hit], scores: dict[str, float], reranker: Reranker) -> list[Hit]:
    """What the reranker's `run` returns for `hits`: best first (stable), its threshold and `top_k` applied."""
    ordered = sorted(hits, key=lambda hit: -scores[hit.chunk.id])
    threshold = reranker.score_threshold
    kept = [
        Hit(hit.chunk, scores[hit.chunk.id])
        for hit in ordered
        if threshold is None or scores[hit.chunk.id] >= threshold
    ]
    return kept[: reranker.top_k] if reranker.top_k else kept


def _blend(candidate: RerankCandidate) -> ReciprocalRankFusion | ScoreFusion | None:
    if candidate.blend_type is None:
        return None
    if candidate.blend_type == "ReciprocalRankFusion":
        return ReciprocalRankFusion(**candidate.blend_settings, top_k=None)
    return ScoreFusion(**candidate.blend_settings, top_k=None)
