"""`evaluate` and `rag eval`: index reuse, chunking, batched and one-at-a-time runs, run files, JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from rag.cli import main
from rag.core.errors import ConfigError, PipelineError
from rag.core.pipeline import Pipeline
from rag.core.serialization import dump_pipeline, load_pipeline
from rag.eval.beir import load_beir
from rag.eval.runner import evaluate, write_run_file
from tests.eval.conftest import write_beir
from tests.indexing_helpers import fake_pipeline

CORPUS = [
    {"_id": "cats", "title": "Cats", "text": "Cats purr and sleep all day. " * 3},
    {"_id": "dogs", "title": "Dogs", "text": "Dogs bark at the mailman. " * 3},
    {"_id": "fish", "title": "Fish", "text": "Fish swim in the pond. " * 3},
]
QUERIES = [{"_id": "q1", "text": "cats purr"}, {"_id": "q2", "text": "dogs bark"}]
QRELS = [("q1", "cats", 1), ("q2", "dogs", 1)]


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "tiny", CORPUS, QUERIES, QRELS)


def test_scores_and_reuses_the_index(dataset_dir: Path, tmp_path: Path) -> None:
    dataset = load_beir(dataset_dir)
    first = evaluate(dataset, fake_pipeline(), top_k=3, index_root=tmp_path / "eval")
    assert first.metrics["ndcg@10"] == 1.0 and first.metrics["recall@100"] == 1.0
    assert first.run["q1"][0][0] == "cats"
    assert not first.index["reused"]
    pipeline = fake_pipeline()
    second = evaluate(dataset, pipeline, top_k=3, index_root=tmp_path / "eval")
    assert second.index["reused"] and second.index["parts"] == {
        name: {**part, "reused": True} for name, part in first.index["parts"].items()
    }
    assert pipeline.components["vec"].embedded == 0  # nothing encoded the second time
    assert second.run == first.run
    other = evaluate(dataset, fake_pipeline(dim=32), top_k=3, index_root=tmp_path / "eval")
    assert other.index["parts"]["vec"]["path"] != first.index["parts"]["vec"]["path"]  # other settings, other index


def test_batched_and_one_at_a_time_runs_agree(dataset_dir: Path, tmp_path: Path) -> None:
    report = evaluate(load_beir(dataset_dir), fake_pipeline(), top_k=3, index_root=tmp_path)
    assert report.qps > 0 and report.qps_one_at_a_time > 0
    assert report.latency_ms["p50"] <= report.latency_ms["p95"]


def test_pipeline_chunking_ranks_documents_by_their_best_chunk(dataset_dir: Path, tmp_path: Path) -> None:
    report = evaluate(load_beir(dataset_dir), fake_pipeline(chunk_size=40), chunking="pipeline", index_root=tmp_path)
    for ranking in report.run.values():
        docs = [doc for doc, _ in ranking]
        assert len(docs) == len(set(docs)) == 3  # several chunks per document, each document once
    assert report.run["q2"][0][0] == "dogs"


def test_run_file_is_trec_format(dataset_dir: Path, tmp_path: Path) -> None:
    report = evaluate(load_beir(dataset_dir), fake_pipeline(), top_k=2, index_root=tmp_path)
    write_run_file(report, tmp_path / "run.trec")
    lines = (tmp_path / "run.trec").read_text().splitlines()
    assert len(lines) == 4
    qid, q0, doc, rank, score, name = lines[0].split()
    assert (qid, q0, doc, rank, name) == ("q1", "Q0", "cats", "1", "fake")
    float(score)


def test_pipelines_that_cannot_be_evaluated_are_refused(dataset_dir: Path, tmp_path: Path) -> None:
    dataset = load_beir(dataset_dir)
    no_hits = Pipeline({"vec": fake_pipeline().components["vec"]}, inputs={"query": ["vec.query"]}, outputs={})
    with pytest.raises(PipelineError, match="no 'hits' output"):
        evaluate(dataset, no_hits, index_root=tmp_path)
    with pytest.raises(ConfigError, match="chunking must be one of"):
        evaluate(dataset, fake_pipeline(), chunking="pages", index_root=tmp_path)


@pytest.mark.integration
def test_cli_json_and_run_file(dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    run_file = tmp_path / "bm25.run"
    args = ["eval", str(dataset_dir), "--pipeline", "bm25", "--json", "--run-file", str(run_file)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"dataset", "pipeline", "queries", "metrics", "qps", "latency_ms"} <= data.keys()
    assert set(data["metrics"]) == {"ndcg@10", "recall@10", "recall@100", "mrr@10", "map@100"}
    assert set(data["latency_ms"]) == {"p50", "p95"}
    assert (data["dataset"], data["pipeline"], data["queries"]) == ("tiny", "bm25", 2)
    assert data["metrics"]["ndcg@10"] == 1.0
    assert run_file.read_text().startswith("q1 Q0 cats 1 ")
    assert (tmp_path / "cache" / "eval").is_dir()


def test_cli_reports_a_bad_dataset_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["eval", str(tmp_path / "missing")])
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: dataset folder") and "\n" not in result.stderr.strip()


def test_dense_pipelines_share_the_embedding_cache(dataset_dir: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("sentence_transformers")
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    dataset = load_beir(dataset_dir)
    evaluate(dataset, load_pipeline("dense"), top_k=3)
    calls: list[int] = []
    binary = load_pipeline("dense-binary")
    embedder = binary.components["dense"]._embedder
    original = embedder._encode_documents
    monkeypatch.setattr(embedder, "_encode_documents", lambda texts: calls.append(len(texts)) or original(texts))
    report = evaluate(dataset, binary, top_k=3)
    assert calls == []  # every document vector came from the cache
    assert report.run["q1"][0][0] == "cats"


def test_cli_compares_pipelines_in_one_table_and_plots(dataset_dir: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    files = []
    for name, dim in (("hash64", 64), ("hash16", 16)):
        pipeline = fake_pipeline(dim=dim)
        pipeline.name = name
        files.append(tmp_path / f"{name}.yaml")
        files[-1].write_text(dump_pipeline(pipeline))
    plot = tmp_path / "quality.png"
    args = ["eval", str(dataset_dir), "--compare", *map(str, files), "--allow", "tests.fakes.HashRetriever"]
    result = CliRunner().invoke(main, [*args, "--json", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [p["pipeline"] for p in data["pipelines"]] == ["hash64", "hash16"]
    assert plot.read_bytes().startswith(b"\x89PNG")
    table = CliRunner().invoke(main, args)
    assert table.exit_code == 0 and "hash64" in table.stdout and "hash16" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--compare"], "name the pipelines to compare"), (["--pipeline", "bm25", "--compare", "bm25"], "not both")],
)
def test_cli_compare_mistakes(dataset_dir: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["eval", str(dataset_dir), *args])
    assert result.exit_code == 1 and message in result.stderr


def test_a_filter_keeps_every_query_to_the_chunks_that_pass(dataset_dir: Path, tmp_path: Path) -> None:
    from rag.core.pipeline import IndexingSettings
    from rag.ingest.chunkers.recursive import RecursiveChunker
    from rag.retrieve.bm25 import BM25Retriever

    bm25 = Pipeline(
        {"bm25": BM25Retriever()},
        inputs={"query": ["bm25.query"], "top_k": ["bm25.top_k"]},
        outputs={"hits": "bm25.hits"},
        indexing=IndexingSettings(chunker=RecursiveChunker(chunk_size=200, chunk_overlap=0, unit="chars")),
        name="bm25",
    )
    dataset = load_beir(dataset_dir)
    report = evaluate(dataset, bm25, top_k=3, index_root=tmp_path, filters="path != cats")
    assert all(doc != "cats" for ranking in report.run.values() for doc, _ in ranking)
    assert report.per_query["recall@100"] == {"q1": 0.0, "q2": 1.0}
    assert report.to_dict()["filters"] == {"path": {"$ne": "cats"}}
    with pytest.raises(ConfigError, match="no chunk of this index has a field 'tenant'"):
        evaluate(dataset, bm25, top_k=3, index_root=tmp_path, filters="tenant == a")
    with pytest.raises(PipelineError, match=r"takes no filters|cannot apply filters"):
        evaluate(dataset, fake_pipeline(), top_k=3, index_root=tmp_path, filters="path != cats")
    path = tmp_path / "bm25.yaml"
    path.write_text(dump_pipeline(bm25))
    args = ["eval", str(dataset_dir), "--pipeline", str(path), "--filter", "title == Dogs", "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["filters"] == {"title": {"$eq": "Dogs"}}
