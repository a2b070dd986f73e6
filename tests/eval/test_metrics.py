"""Our metrics against hand-computed values and against pytrec_eval on a real BM25 run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rag.core.serialization import load_pipeline
from rag.eval.beir import load_beir
from rag.eval.metrics import evaluate_run, mean
from rag.eval.runner import evaluate


def test_hand_computed_values() -> None:
    qrels = {"q": {"a": 1, "b": 2, "z": 1}}
    run = {"q": ["x", "b", "y", "a"]}
    scores = {name: values["q"] for name, values in evaluate_run(run, qrels).items()}
    dcg = 2 / math.log2(3) + 1 / math.log2(5)
    ideal = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert scores["ndcg@10"] == pytest.approx(dcg / ideal)
    assert scores["recall@10"] == pytest.approx(2 / 3)
    assert scores["mrr@10"] == pytest.approx(1 / 2)
    assert scores["map@100"] == pytest.approx((1 / 2 + 2 / 4) / 3)


def test_cut_offs_and_unanswered_queries() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    run = {"q1": [f"n{i}" for i in range(10)] + ["a"]}  # relevant at rank 11; q2 has no ranking
    per_query = evaluate_run(run, qrels)
    assert per_query["ndcg@10"] == {"q1": 0.0, "q2": 0.0}
    assert per_query["mrr@10"]["q1"] == 0.0
    assert per_query["recall@100"]["q1"] == 1.0
    assert mean(per_query["recall@100"]) == 0.5


@pytest.mark.integration
def test_equal_to_pytrec_eval_on_a_real_run(scifact_slice: Path, tmp_path: Path) -> None:
    pytrec_eval = pytest.importorskip("pytrec_eval")
    dataset = load_beir(scifact_slice)
    report = evaluate(dataset, load_pipeline("bm25"), top_k=100, index_root=tmp_path)
    # distinct descending scores, so trec_eval's own tie-breaking cannot reorder the ranking
    run = {q: {doc: float(len(r) - i) for i, (doc, _) in enumerate(r)} for q, r in report.run.items()}
    measures = {"ndcg_cut.10", "recall.10", "recall.100", "map_cut.100", "recip_rank"}
    theirs = pytrec_eval.RelevanceEvaluator(dataset.qrels, measures).evaluate(run)
    names = {"ndcg@10": "ndcg_cut_10", "recall@10": "recall_10", "recall@100": "recall_100", "map@100": "map_cut_100"}
    for ours, their_name in names.items():
        for qid, value in report.per_query[ours].items():
            assert value == pytest.approx(theirs[qid][their_name], abs=1e-9), (ours, qid)
    # MRR@10 equals trec_eval's recip_rank of the ranking cut at 10
    cut = {q: dict(list(r.items())[:10]) for q, r in run.items()}
    theirs_cut = pytrec_eval.RelevanceEvaluator(dataset.qrels, {"recip_rank"}).evaluate(cut)
    for qid, value in report.per_query["mrr@10"].items():
        assert value == pytest.approx(theirs_cut[qid]["recip_rank"], abs=1e-9)
    assert 0.5 < report.metrics["ndcg@10"] <= 1.0
