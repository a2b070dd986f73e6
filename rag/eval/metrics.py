"""Ranking metrics as trec_eval defines them (checked against pytrec_eval in the tests).

A run maps each query id to its ranked document ids, best first; qrels map each query id to
`{document id: relevance}` with relevance > 0. Each function returns one value per query.

- nDCG@k: gains are the relevance values, discount log2(rank + 1), normalised by the ideal
  ordering of all judged documents (trec_eval's `ndcg_cut`).
- recall@k: relevant documents in the top k over all relevant documents.
- MRR@k: 1 / rank of the first relevant document in the top k (0 when none).
- MAP@k: the mean, over all relevant documents, of precision at the rank of each one retrieved
  in the top k (trec_eval's `map_cut`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["METRICS", "evaluate_run", "mean"]

Run = Mapping[str, Sequence[str]]
Qrels = Mapping[str, Mapping[str, int]]


def ndcg(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    dcg = sum(relevant.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    best = sum(gain / math.log2(rank + 2) for rank, gain in enumerate(ideal))
    return dcg / best if best else 0.0


def recall(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    return sum(doc in relevant for doc in ranked[:k]) / len(relevant) if relevant else 0.0


def mrr(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    return next((1.0 / (rank + 1) for rank, doc in enumerate(ranked[:k]) if doc in relevant), 0.0)


def average_precision(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    hits, total = 0, 0.0
    for rank, doc in enumerate(ranked[:k]):
        if doc in relevant:
            hits += 1
            total += hits / (rank + 1)
    return total / len(relevant) if relevant else 0.0


METRICS = {
    "ndcg@10": (ndcg, 10),
    "recall@10": (recall, 10),
    "recall@100": (recall, 100),
    "mrr@10": (mrr, 10),
    "map@100": (average_precision, 100),
}
"""The metrics `rag eval` reports: name -> (function, cut-off)."""


def evaluate_run(run: Run, qrels: Qrels) -> dict[str, dict[str, float]]:
    """Metric name -> {query id: value} for every judged query (an unanswered query scores 0)."""
    return {
        name: {qid: function(run.get(qid, ()), relevant, k) for qid, relevant in qrels.items()}
        for name, (function, k) in METRICS.items()
    }


def mean(per_query: Mapping[str, float]) -> float:
    """The mean over queries (0 for no queries)."""
    return sum(per_query.values()) / len(per_query) if per_query else 0.0
