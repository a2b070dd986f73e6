"""`rag tune`: a hybrid's fusion learned from judged queries, estimated on held-out folds (rag.eval.tune)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from rag.cli import main
from rag.core.errors import ConfigError, PipelineError
from rag.core.pipeline import IndexingSettings, Pipeline
from rag.core.serialization import dump_pipeline, load_pipeline
from rag.eval.beir import load_beir
from rag.eval.runner import evaluate
from rag.eval.tune import grid, synthetic_dataset, tune_fusion
from rag.fuse.rrf import ReciprocalRankFusion
from rag.ingest.chunkers.recursive import RecursiveChunker
from rag.retrieve.bm25 import BM25Retriever
from tests.fakes import HashRetriever


def hybrid(name: str = "weak-hybrid") -> Pipeline:
    """BM25 fused with a weak leg (hashed bag-of-words vectors): equal weights are not the best."""
    return Pipeline(
        {"bm25": BM25Retriever(top_k=100), "hash": HashRetriever(dim=16, top_k=100), "fusion": ReciprocalRankFusion()},
        [("bm25.hits", "fusion.hits"), ("hash.hits", "fusion.hits")],
        inputs={"query": ["bm25.query", "hash.query"], "top_k": ["fusion.top_k"]},
        outputs={"hits": "fusion.hits"},
        indexing=IndexingSettings(chunker=RecursiveChunker()),
        name=name,
    )


def test_tuning_learns_to_trust_the_strong_leg_and_reports_held_out_scores(
    scifact_slice: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    dataset = load_beir(scifact_slice)
    report = tune_fusion(dataset, hybrid(), folds=5)
    assert report.fusion == "fusion" and report.queries == 60 and len(report.folds_chose) == 5
    assert len(report.tried) == len({c.label() for c in grid(2)} | {report.baseline.label()})
    assert [score for _, score in report.tried] == sorted((score for _, score in report.tried), reverse=True)
    assert report.chosen == report.tried[0][0] and report.gain_interval[0] > 0
    # the baseline candidate is the pipeline as it runs: the same nDCG@10 as rag eval gives it
    assert report.held_out["baseline"] == pytest.approx(evaluate(dataset, hybrid()).metrics["ndcg@10"])
    weights = report.chosen.settings["weights"]
    assert weights is not None and weights[0] > weights[1]  # BM25 over the hashed leg
    assert report.held_out["tuned"] > report.held_out["baseline"]
    low, high = report.gain_interval
    assert low <= report.held_out["tuned"] - report.held_out["baseline"] <= high


def test_cli_writes_a_pipeline_that_loads_back(
    scifact_slice: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "weak.yaml").write_text(dump_pipeline(hybrid()))
    out = tmp_path / "tuned.yaml"
    args = ["tune", str(scifact_slice), "--split", "test", "--pipeline", str(tmp_path / "weak.yaml")]
    args += ["--allow", "tests.fakes.HashRetriever", "--out", str(out), "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["chosen"] != data["baseline"] and len(data["gain_interval_95"]) == 2
    tuned = load_pipeline(str(out), ["tests.fakes.HashRetriever"])
    fusion = tuned.components["fusion"]
    assert f"{type(fusion).__name__}(" in data["chosen"] and fusion.settings["top_k"] == 10
    assert set(tuned.components) == {"bm25", "hash", "fusion"}


def test_too_few_queries_and_one_leg_are_refused(scifact_slice: Path, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    few = load_beir(scifact_slice).first_queries(10)
    with pytest.raises(ConfigError, match="10 judged queries, fewer than 20: the estimate would be unreliable"):
        tune_fusion(few, hybrid())
    forced = tune_fusion(few, hybrid(), folds=2, force=True)
    assert forced.queries == 10
    assert forced.chosen == (forced.tried[0][0] if forced.gain_interval[0] > 0 else forced.baseline)
    with pytest.raises(PipelineError, match="no fusion of two or more retrievers, so there is nothing to tune"):
        tune_fusion(load_beir(scifact_slice), load_pipeline("bm25"))


def test_synthetic_judgements_come_from_the_documents(scifact_slice: Path) -> None:
    dataset = synthetic_dataset(load_beir(scifact_slice), count=50)
    assert len(dataset.queries) == 50 and dataset.split == "synthetic"
    for qid, text in dataset.queries.items():
        (doc,) = dataset.qrels[qid]
        assert text == dataset.corpus[doc][0]  # the title (SciFact's documents all have one)
