"""`rag tune`: learn a hybrid pipeline's fusion settings from judged queries, with cross-validation.

The legs (the retrievers feeding the fusion) run once per query, as deep as any candidate needs; every candidate
fusion (reciprocal rank with several `k`, score fusion with each normalisation; leg weights on a grid; per-leg
depth) is then the pipeline's own fusion component run on those lists, so what is scored is what will run.
The estimate is honest: the queries are split into folds, the best candidate on the other folds is scored on each
held-out fold, and only those held-out scores are reported (with a bootstrap 95% interval of the gain over the
pipeline as it is). The settings chosen are the best on all the queries when that interval is above zero, and the
pipeline's own otherwise (a gain that may be noise changes nothing). `synthetic` judgements (a sentence
of a document as the query, that document as the answer) stand in for labels when a collection has none.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rag.core.component import Component
from rag.core.errors import ConfigError, PipelineError
from rag.core.pipeline import Pipeline
from rag.core.types import Hit
from rag.eval.beir import BeirDataset
from rag.eval.metrics import evaluate_run, mean
from rag.eval.runner import load_corpus_index
from rag.eval.tune_rerank import (
    ALL,
    RerankCandidate,
    RerankStage,
    candidate_of_stage,
    rerank_grid,
    rerank_scores,
    rerank_stage,
    reranker_scores,
)
from rag.fuse.rrf import ReciprocalRankFusion
from rag.fuse.score import ScoreFusion
from rag.indexer import retrievers

__all__ = [
    "MIN_QUERIES",
    "Candidate",
    "TuneReport",
    "candidate_of",
    "candidate_scores",
    "fusion_of",
    "leg_lists",
    "synthetic_dataset",
    "tune_fusion",
]

MIN_QUERIES = 20
"""Fewer judged queries than this give an estimate too noisy to tune on (refused unless forced)."""
DEPTH = ALL
"""How deep the legs run; candidates cut their lists to their own `list_top_k`."""
_RRF_K = (10, 30, 60, 100)
_METHODS = ("minmax", "zscore", "dbsf")
_LIST_DEPTHS = (None, 50, 20)
_BOOTSTRAP = 2000


@dataclass(frozen=True)
class Candidate:
    """One fusion setting: the component type and its settings (without `top_k`)."""

    type: str
    settings: dict[str, Any]
    estimate: Any = field(default=None, compare=False)
    """For `weights: auto`, the weights the index learned (`rag.fuse.adapt.LegWeights`)."""

    def build(self, top_k: int) -> Component:
        if self.type == "ReciprocalRankFusion":
            return ReciprocalRankFusion(**self.settings, top_k=top_k)
        fusion = ScoreFusion(**self.settings, top_k=top_k)
        fusion.use_estimate(self.estimate)
        return fusion

    def label(self) -> str:
        shown = {k: v for k, v in self.settings.items() if v is not None}
        return f"{self.type}({', '.join(f'{k}={v}' for k, v in shown.items())})"


@dataclass
class TuneReport:
    """What `tune_fusion` tried and chose; the scores are nDCG@10."""

    fusion: str
    """The name of the tuned component in the pipeline (for the `rerank` stage: the reranker)."""
    queries: int
    folds: int
    baseline: Any
    """The pipeline's own settings: a `Candidate` (for the `rerank` stage, a `RerankCandidate`)."""
    chosen: Any
    """The best candidate on all the queries when the held-out gain's interval is above zero, else `baseline`."""
    tried: list[tuple[Any, float]]
    """Every candidate with its mean over all the queries, best first."""
    held_out: dict[str, float]
    """Cross-validated: `tuned` (each fold scored with the candidate best on the others), `baseline`."""
    gain_interval: tuple[float, float]
    """Bootstrap 95% interval of the held-out gain (tuned - baseline)."""
    folds_chose: list[str] = field(default_factory=list)
    rerank: TuneReport | None = None
    """For a pipeline that reranks the fused candidates: its depth and blend, tuned with the chosen fusion."""

    @property
    def gain(self) -> float:
        """The held-out gain, tuned - baseline."""
        return self.held_out["tuned"] - self.held_out["baseline"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "fusion": self.fusion,
            "queries": self.queries,
            "folds": self.folds,
            "baseline": self.baseline.label(),
            "chosen": self.chosen.label(),
            "held_out": self.held_out,
            "gain": self.gain,
            "gain_interval_95": list(self.gain_interval),
            "folds_chose": self.folds_chose,
            "tried": [{"candidate": c.label(), "ndcg@10": score} for c, score in self.tried],
        } | ({"rerank": self.rerank.to_dict()} if self.rerank is not None else {})


def fusion_of(pipeline: Pipeline) -> tuple[str, list[str]]:
    """The fusion component of a hybrid pipeline and its legs (the retrievers feeding it, in connection order)."""
    legs = set(retrievers(pipeline))
    for name, component in pipeline.components.items():
        feeding = [c.sender for c in pipeline.connections if c.receiver == name and c.sender in legs]
        if len(feeding) >= 2 and isinstance(component, ReciprocalRankFusion | ScoreFusion):
            return name, feeding
    raise PipelineError(
        f"pipeline '{pipeline.name}' has no fusion of two or more retrievers, so there is nothing to tune; "
        "tune a hybrid pipeline (hybrid, hybrid-splade, default)"
    )


def tune_fusion(
    dataset: BeirDataset, pipeline: Pipeline, *, folds: int = 5, seed: int = 0, force: bool = False
) -> TuneReport:
    """Tune `pipeline`'s fusion on `dataset`'s judged queries (see the module docstring)."""
    if len(dataset.queries) < MIN_QUERIES and not force:
        raise ConfigError(
            f"{dataset.name} ({dataset.split}) has {len(dataset.queries)} judged queries, fewer than {MIN_QUERIES}: "
            "the estimate would be unreliable; judge more queries, or pass --force"
        )
    if not 2 <= folds <= len(dataset.queries):
        raise ConfigError(f"folds must be between 2 and the number of queries ({len(dataset.queries)}), got {folds}")
    name, legs = fusion_of(pipeline)
    lists = leg_lists(dataset, pipeline, legs)
    baseline = candidate_of(pipeline.components[name])
    candidates = {c.label(): c for c in [baseline, *grid(len(legs))]}  # the baseline first: it wins ties
    per_query = {label: candidate_scores(c, lists, dataset) for label, c in candidates.items()}
    report = _cross_validated(name, candidates, per_query, baseline.label(), folds, seed)
    stage = rerank_stage(pipeline, name)
    if stage is not None:
        report.rerank = _tune_rerank(dataset, pipeline, stage, report.chosen, lists, folds, seed)
    return report


def _tune_rerank(
    dataset: BeirDataset,
    pipeline: Pipeline,
    stage: RerankStage,
    fusion: Candidate,
    lists: dict[str, list[list[Hit]]],
    folds: int,
    seed: int,
) -> TuneReport:
    """The reranking depth and blend (`rag.eval.tune_rerank`), with `fusion` as the first stage."""
    own = candidate_of_stage(pipeline, stage)
    candidates = {c.label(): c for c in [own, *rerank_grid(stage, own)]}
    deepest = max(c.depth for c in candidates.values())
    fused = _fused(fusion, lists, deepest)
    reranker = stage.reranker_in(pipeline)
    scores = reranker_scores(reranker, dataset, fused, deepest)
    per_query = {label: rerank_scores(c, fused, scores, reranker, dataset) for label, c in candidates.items()}
    return _cross_validated(stage.reranker, candidates, per_query, own.label(), folds, seed)


def _fused(fusion: Candidate, lists: dict[str, list[list[Hit]]], depth: int) -> dict[str, list[Hit]]:
    component = fusion.build(top_k=depth)
    return {qid: component.run(hits=legs)["hits"] for qid, legs in lists.items()}


def _cross_validated(
    name: str,
    candidates: dict[str, Any],
    per_query: dict[str, dict[str, float]],
    baseline: str,
    folds: int,
    seed: int,
) -> TuneReport:
    """Each fold scored with the candidate best on the other folds; the gain over `baseline` with its interval."""
    qids = list(per_query[baseline])
    order = random.Random(seed).sample(qids, len(qids))
    fold_of = {qid: i % folds for i, qid in enumerate(order)}
    tuned: dict[str, float] = {}
    chose = []
    for fold in range(folds):
        train = [q for q in qids if fold_of[q] != fold]
        best = max(per_query, key=lambda label: float(np.mean([per_query[label][q] for q in train])))
        chose.append(best)
        tuned |= {q: per_query[best][q] for q in qids if fold_of[q] == fold}
    gains = np.array([tuned[q] - per_query[baseline][q] for q in qids])
    means = {label: mean(scores) for label, scores in per_query.items()}
    tried = sorted(((candidates[label], score) for label, score in means.items()), key=lambda item: -item[1])
    interval = bootstrap_interval(gains, seed)
    return TuneReport(
        fusion=name,
        queries=len(qids),
        folds=folds,
        baseline=candidates[baseline],
        chosen=tried[0][0] if interval[0] > 0 else candidates[baseline],  # a gain that may be noise changes nothing
        tried=tried,
        held_out={"tuned": mean(tuned), "baseline": means[baseline]},
        gain_interval=interval,
        folds_chose=chose,
    )


def compare_on(dataset: BeirDataset, pipeline: Pipeline, report: TuneReport) -> dict[str, Any]:
    """The pipeline as it is against the settings `report` chose, on other queries (a test split): nDCG@10 of each
    and the bootstrap 95% interval of the gain. A reranked pipeline is scored on its reranked answer."""
    name, legs = fusion_of(pipeline)
    lists = leg_lists(dataset, pipeline, legs)
    own = candidate_of(pipeline.components[name])
    stage = rerank_stage(pipeline, name)
    if stage is None:
        before = candidate_scores(own, lists, dataset)
        after = candidate_scores(report.chosen, lists, dataset)
    else:
        assert report.rerank is not None
        known: dict[str, dict[str, float]] = {}  # the two settings mostly rerank the same candidates
        before = _answer_scores(dataset, pipeline, stage, lists, own, candidate_of_stage(pipeline, stage), known)
        after = _answer_scores(dataset, pipeline, stage, lists, report.chosen, report.rerank.chosen, known)
    gains = np.array([after[q] - before[q] for q in dataset.queries])
    return {
        "split": dataset.split,
        "queries": len(dataset.queries),
        "baseline": mean(before),
        "tuned": mean(after),
        "gain_interval_95": list(bootstrap_interval(gains, 0)),
    }


def _answer_scores(
    dataset: BeirDataset,
    pipeline: Pipeline,
    stage: RerankStage,
    lists: dict[str, list[list[Hit]]],
    fusion: Candidate,
    rerank: RerankCandidate,
    known: dict[str, dict[str, float]],
) -> dict[str, float]:
    fused = _fused(fusion, lists, rerank.depth)
    reranker = stage.reranker_in(pipeline)
    scores = reranker_scores(reranker, dataset, fused, rerank.depth, known)
    return rerank_scores(rerank, fused, scores, reranker, dataset)


def with_fusion(pipeline: Pipeline, report: TuneReport) -> dict[str, Any]:
    """The pipeline as plain data (for YAML) with the settings `report` chose: its fusion replaced (its own
    `top_k` kept, or set to the tuned reranking depth) and a reranked pipeline's blend replaced."""
    name, _ = fusion_of(pipeline)
    data = pipeline.to_dict()
    chosen: Candidate = report.chosen
    top_k = pipeline.components[name].settings.get("top_k")
    stage = rerank_stage(pipeline, name)
    if stage is not None and report.rerank is not None:
        rerank: RerankCandidate = report.rerank.chosen
        top_k = rerank.depth
        if stage.blend is not None and rerank.blend_type is not None:
            blend_top_k = pipeline.components[stage.blend].settings.get("top_k")
            data["components"][stage.blend] = {
                "type": rerank.blend_type,
                "init": {**rerank.blend_settings, "top_k": blend_top_k},
            }
    data["components"][name] = {"type": chosen.type, "init": {**chosen.settings, "top_k": top_k}}
    return data


def leg_lists(dataset: BeirDataset, pipeline: Pipeline, legs: Sequence[str]) -> dict[str, list[list[Hit]]]:
    """Query id -> each leg's hits (`DEPTH` deep), in `legs` order; the indexes come from `rag eval`'s cache."""
    load_corpus_index(dataset, pipeline)
    qids, texts = list(dataset.queries), list(dataset.queries.values())
    ranked = []
    for leg in legs:
        retriever = pipeline.components[leg]
        retriever.warm_up()
        ranked.append(retriever.run_batch(texts, DEPTH))  # type: ignore[attr-defined]
    return {qid: [hits[i] for hits in ranked] for i, qid in enumerate(qids)}


def grid(legs: int) -> list[Candidate]:
    """Reciprocal rank fusion (each `k`) and score fusion (each normalisation), each with every leg weighting on
    a grid (steps of 0.1 for two legs, 0.25 for more) and every per-leg depth."""
    step = 10 if legs == 2 else 4
    weightings = [
        [round(w / step, 2) for w in combo]
        for combo in itertools.product(range(step + 1), repeat=legs)
        if sum(combo) == step and all(w > 0 for w in combo)
    ]
    candidates = []
    for weights, depth in itertools.product(weightings, _LIST_DEPTHS):
        equal = len(set(weights)) == 1
        settings: dict[str, Any] = {"weights": None if equal else weights, "list_top_k": depth}
        candidates += [Candidate("ReciprocalRankFusion", {"k": k, **settings}) for k in _RRF_K]
        candidates += [Candidate("ScoreFusion", {"method": m, **settings}) for m in _METHODS]
    return candidates


def bootstrap_interval(values: np.ndarray, seed: int) -> tuple[float, float]:
    """The 95% bootstrap interval of the mean of `values` (resampling queries)."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(_BOOTSTRAP, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def synthetic_dataset(dataset: BeirDataset, count: int = 400, seed: int = 0) -> BeirDataset:
    """Judgements made from the corpus itself: the title of a sampled document as the query (a sentence of six
    words or more from it when it has no title), that document as its one relevant answer. Titles share fewer
    words with their document than its own sentences do, so they favour lexical legs less (see docs/fusion.md)."""
    rng = random.Random(seed)
    queries, qrels = {}, {}
    for doc_id in rng.sample(sorted(dataset.corpus), min(count, len(dataset.corpus))):
        title, text = dataset.corpus[doc_id]
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 6]
        query = title.strip() or (rng.choice(sentences) if sentences else "")
        if query:
            queries[f"synthetic-{doc_id}"] = query
            qrels[f"synthetic-{doc_id}"] = {doc_id: 1}
    return BeirDataset(dataset.name, "synthetic", dataset.corpus, queries, qrels, dataset.corpus_sha256)


def candidate_of(component: Component) -> Candidate:
    """A fusion component as a `Candidate` (its settings but `top_k`, and for `weights: auto` its estimate)."""
    settings = {k: v for k, v in component.settings.items() if k != "top_k"}
    return Candidate(type(component).__name__, settings, getattr(component, "estimate", None))


def candidate_scores(candidate: Candidate, lists: dict[str, list[list[Hit]]], dataset: BeirDataset) -> dict[str, float]:
    """nDCG@10 per query of `candidate` fusing the legs' lists (documents ranked by their best chunk)."""
    fusion = candidate.build(top_k=DEPTH)
    run = {}
    for qid, legs in lists.items():
        run[qid] = list(dict.fromkeys(hit.chunk.path for hit in fusion.run(hits=legs)["hits"]))
    return evaluate_run(run, dataset.qrels)["ndcg@10"]
