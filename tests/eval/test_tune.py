"""`rag tune`: a hybrid's fusion learned from judged queries, estimated on held-out folds (rag.eval.tune)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from rag.cli import main
from rag.core.errors import ConfigError, PipelineError
from rag.core.pipeline import IndexingSettings, Pipeline
from rag.core.serialization import dump_pipeline, load_pipeline, pipeline_from_dict
from rag.core.types import Chunk, Hit
from rag.eval.beir import BeirDataset, load_beir
from rag.eval.runner import evaluate
from rag.eval.tune import compare_on, grid, synthetic_dataset, tune_fusion, with_fusion
from rag.eval.tune_rerank import DEPTHS, RerankCandidate, RerankStage, rerank_scores, rerank_stage, reranker_scores
from rag.fuse.rrf import ReciprocalRankFusion
from rag.fuse.score import ScoreFusion
from rag.ingest.chunkers.recursive import RecursiveChunker
from rag.rerank.base import Reranker
from rag.retrieve.bm25 import BM25Retriever
from tests.fakes import HashRetriever, OverlapReranker


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


# ---- a pipeline that reranks its fused candidates -----------------------------------------------------------


class JudgedReranker(Reranker):
    """Knows the judgements: a passage of a document judged relevant to the query scores 1, any other 0."""

    def __init__(self, relevant: dict[str, list[str]] | None = None) -> None:
        self.check_settings(None, None)
        self.top_k = None
        self.score_threshold = None
        self.relevant = relevant or {}

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        return [float(any(text in doc for doc in self.relevant.get(query, []))) for text in texts]


def reranked(reranker: Reranker, name: str = "reranked-hybrid") -> Pipeline:
    """`hybrid()`'s legs, RRF's top 20 to `reranker`, the two lists blended 0.8 / 0.2 (as hybrid-rerank does)."""
    return Pipeline(
        {
            "bm25": BM25Retriever(top_k=100),
            "hash": HashRetriever(dim=16, top_k=100),
            "fusion": ReciprocalRankFusion(top_k=20),
            "reranker": reranker,
            "blend": ScoreFusion(method="zscore", weights=[0.8, 0.2], top_k=10),
        },
        [
            ("bm25.hits", "fusion.hits"),
            ("hash.hits", "fusion.hits"),
            ("fusion.hits", "reranker.hits"),
            ("fusion.hits", "blend.hits"),
            ("reranker.hits", "blend.hits"),
        ],
        inputs={"query": ["bm25.query", "hash.query", "reranker.query"], "top_k": ["blend.top_k"]},
        outputs={"hits": "blend.hits"},
        indexing=IndexingSettings(chunker=RecursiveChunker()),
        name=name,
    )


def judged(dataset: BeirDataset) -> JudgedReranker:
    return JudgedReranker(
        {
            text: [dataset.document_text(doc) for doc in dataset.qrels.get(qid, {}) if doc in dataset.corpus]
            for qid, text in dataset.queries.items()
        }
    )


def test_a_reranked_pipeline_tunes_its_depth_and_blend_on_its_reranked_answer(
    scifact_slice: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    dataset = load_beir(scifact_slice)
    pipeline = reranked(judged(dataset))
    assert rerank_stage(pipeline, "fusion") == RerankStage("fusion", "reranker", "blend")
    report = tune_fusion(dataset, pipeline, folds=5)
    stage = report.rerank
    assert stage is not None and stage.fusion == "reranker" and stage.queries == 60
    assert stage.baseline == RerankCandidate(20, "ScoreFusion", (("method", "zscore"), ("weights", [0.8, 0.2])))
    # a reranker that knows the answers: rerank deeper than 20 (every judged document is in the top 30 here),
    # and give it at least an equal say
    weights = stage.chosen.blend_settings["weights"]
    assert stage.chosen.depth > 20 and weights[1] >= weights[0]
    assert stage.held_out["tuned"] > stage.held_out["baseline"] and stage.gain_interval[0] > 0
    # the pipeline's own settings, simulated on the reranker's scores, are what the pipeline answers
    same = compare_on(dataset, pipeline, report)
    assert same["baseline"] == pytest.approx(evaluate(dataset, pipeline).metrics["ndcg@10"])
    assert same["tuned"] > same["baseline"]
    allowed = ["tests.fakes.HashRetriever", "tests.eval.test_tune.JudgedReranker"]
    tuned = pipeline_from_dict(with_fusion(pipeline, report), allowed, "tuned")
    assert tuned.components["fusion"].settings["top_k"] == stage.chosen.depth
    assert tuned.components["blend"].settings.items() >= {**stage.chosen.blend_settings, "top_k": 10}.items()


def test_a_reranker_without_a_blend_tunes_its_depth_only(scifact_slice: Path, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    pipeline = Pipeline(
        {
            "bm25": BM25Retriever(top_k=100),
            "hash": HashRetriever(dim=16, top_k=100),
            "fusion": ReciprocalRankFusion(top_k=20),
            "reranker": OverlapReranker(top_k=10),
        },
        [("bm25.hits", "fusion.hits"), ("hash.hits", "fusion.hits"), ("fusion.hits", "reranker.hits")],
        inputs={"query": ["bm25.query", "hash.query", "reranker.query"]},
        outputs={"hits": "reranker.hits"},
        indexing=IndexingSettings(chunker=RecursiveChunker()),
        name="reranked-no-blend",
    )
    dataset = load_beir(scifact_slice)
    report = tune_fusion(dataset, pipeline, folds=5)
    assert report.rerank is not None
    assert sorted(c.depth for c, _ in report.rerank.tried) == sorted({*DEPTHS, 20})
    assert all(c.blend_type is None for c, _ in report.rerank.tried)
    assert compare_on(dataset, pipeline, report)["baseline"] == pytest.approx(
        evaluate(dataset, pipeline).metrics["ndcg@10"]
    )


def test_cli_tunes_a_reranked_pipeline_and_writes_it(
    scifact_slice: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "reranked.yaml").write_text(dump_pipeline(reranked(OverlapReranker())))
    out = tmp_path / "tuned.yaml"
    allowed = ["--allow", "tests.fakes.HashRetriever", "--allow", "tests.fakes.OverlapReranker"]
    args = ["tune", str(scifact_slice), "--split", "test", "--pipeline", str(tmp_path / "reranked.yaml"), *allowed]
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "reranking by 'reranker' after the chosen fusion" in result.output
    assert result.output.count("held out (5 folds)") == 2
    tuned = load_pipeline(str(out), ["tests.fakes.HashRetriever", "tests.fakes.OverlapReranker"])
    assert set(tuned.components) == {"bm25", "hash", "fusion", "reranker", "blend"}
    data = json.loads(CliRunner().invoke(main, [*args, "--json"]).stdout)
    assert data["rerank"]["baseline"] == "rerank the top 20, blend ScoreFusion(method=zscore, weights=[0.8, 0.2])"


class CountingReranker(OverlapReranker):
    def __init__(self) -> None:
        super().__init__()
        self.scored = 0

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        self.scored += len(texts)
        return super().score(query, texts)


def test_scores_already_known_are_not_computed_again() -> None:
    corpus = {f"d{i}": (f"title {i}", f"word{i} text") for i in range(5)}
    dataset = BeirDataset("toy", "test", corpus, {"q": "word1 text"}, {"q": {"d1": 1}}, "sha")
    hits = [Hit(Chunk(f"d{i}#0", f"d{i}", dataset.document_text(f"d{i}"), 0, 10, {}), 1.0 / (i + 1)) for i in range(5)]
    reranker = CountingReranker()
    known = reranker_scores(reranker, dataset, {"q": hits}, 3)
    assert reranker.scored == 3 and set(known["q"]) == {"d0#0", "d1#0", "d2#0"}
    again = reranker_scores(reranker, dataset, {"q": hits}, 5, known)
    assert reranker.scored == 5 and again is known and len(known["q"]) == 5
    # d1 holds both query words: reranked first, whatever its fused rank
    scores = rerank_scores(RerankCandidate(5), {"q": hits}, known, reranker, dataset)
    assert scores["q"] == pytest.approx(1.0)


def test_a_blend_fed_reranker_first_is_refused_with_what_to_connect() -> None:
    pipeline = reranked(OverlapReranker())
    data = pipeline.to_dict()
    blend = [c for c in data["connections"] if c["receiver"] == "blend.hits"]
    others = [c for c in data["connections"] if c["receiver"] != "blend.hits"]
    data["connections"] = others + blend[::-1]
    flipped = pipeline_from_dict(data, ["tests.fakes.HashRetriever", "tests.fakes.OverlapReranker"], "flipped")
    with pytest.raises(
        PipelineError, match=re.escape("connect the first stage first (fusion.hits, then reranker.hits)")
    ):
        rerank_stage(flipped, "fusion")
