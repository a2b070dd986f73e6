"""Sharded indexes with a model-free retriever: exact global top-k, incremental updates, bad input."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from rag.api import RAG
from rag.cli import main
from rag.core.errors import ConfigError, IncompatibleIndexError, IndexNotFoundError, IndexStoreError, PipelineError
from rag.core.filters import parse_filter
from rag.core.pipeline import IndexingSettings, Pipeline
from rag.core.serialization import load_pipeline
from rag.core.types import Chunk, Hit
from rag.distributed.shards import MANIFEST, ShardedIndex, index_sharded, merge_top_k, shard_of
from rag.indexer import index_folder
from rag.ingest.chunkers.recursive import RecursiveChunker
from rag.retrieve.splade import SpladeRetriever
from tests.indexing_helpers import ALLOWED, check_consistent, fake_pipeline, paragraph

QUERIES = ["topic1 facts", "paragraph 2 number", "topic7 topic3", "written here", "nothing matches this"]


def hit(chunk_id: str, score: float) -> Hit:
    return Hit(Chunk(chunk_id, "a.md", chunk_id, 0, 1), score)


def make_docs(folder: Path, count: int = 12) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"sub{i % 3}" / f"doc{i}.md").parent.mkdir(exist_ok=True)
        (folder / f"sub{i % 3}" / f"doc{i}.md").write_text(f"# Doc {i}\n\n" + paragraph(f"topic{i}", n=2 + i % 3))
    return folder


def assert_same_top_k(single: list[Hit], sharded: list[Hit]) -> None:
    """Equal scores rank by rank; the same ids at every score above the last (ties at the cut may differ)."""
    assert [round(h.score, 5) for h in single] == [round(h.score, 5) for h in sharded]
    if not single:
        return
    cut = round(single[-1].score, 5)
    assert {h.id for h in single if round(h.score, 5) > cut} == {h.id for h in sharded if round(h.score, 5) > cut}


def test_merge_top_k_equals_sorting_everything() -> None:
    rng = random.Random(7)
    lists = [
        sorted((hit(f"s{s}-{i}", rng.choice([0.1, 0.5, rng.random()])) for i in range(30)), key=lambda h: -h.score)
        for s in range(4)
    ]
    everything = sorted((h for hits in lists for h in hits), key=lambda h: (-h.score, h.id))
    for top_k in (1, 5, 29, 120, 500):
        assert merge_top_k([hits[:top_k] for hits in lists], top_k) == everything[:top_k]


def test_shard_assignment_is_stable_and_spread() -> None:
    paths = [f"folder/file{i}.txt" for i in range(400)]
    counts = [sum(shard_of(p, 4) == n for p in paths) for n in range(4)]
    assert min(counts) > 60 and sum(counts) == 400
    assert [shard_of(p, 4) for p in paths] == [shard_of(p, 4) for p in paths]


def test_sharded_query_equals_one_index_through_updates(tmp_path: Path) -> None:
    folder = make_docs(tmp_path / "docs")
    index_folder(folder, tmp_path / "single", fake_pipeline())
    report = index_sharded(folder, tmp_path / "sharded", fake_pipeline(), shards=4)
    assert report.to_dict()["files"]["added"] == 12
    assert sum(r.added for r in report.shards) == 12 and len(report.shards) == 4
    manifest = json.loads((tmp_path / "sharded" / MANIFEST).read_text())
    assert manifest["shards"] == ["shard-000", "shard-001", "shard-002", "shard-003"]
    for n, shard in enumerate(manifest["shards"]):  # every shard is an ordinary index of its files
        store = check_consistent(tmp_path / "sharded" / shard)
        assert all(shard_of(path, 4) == n for path in store.files)

    def compare() -> None:
        single = RAG(tmp_path / "single", allowed=ALLOWED)
        sharded = ShardedIndex(tmp_path / "sharded", ALLOWED)
        for query in QUERIES:
            for top_k in (1, 3, 10, 50):
                assert_same_top_k(single.query(query, top_k=top_k), sharded.query(query, top_k=top_k))

    compare()
    (folder / "sub0" / "doc0.md").write_text("# Doc 0\n\nrewritten: topic1 facts now live here too")
    (folder / "sub1" / "doc1.md").rename(folder / "doc1-renamed.md")
    (folder / "sub2" / "doc2.md").unlink()
    (folder / "new.md").write_text(paragraph("topic7"))
    index_folder(folder, tmp_path / "single", fake_pipeline())
    report = index_sharded(folder, tmp_path / "sharded", fake_pipeline(), shards=4)
    files = report.to_dict()["files"]
    assert (files["added"], files["changed"], files["removed"], files["unchanged"]) == (2, 1, 2, 9)
    compare()


def test_sharded_filters_keep_to_the_matching_chunks(tmp_path: Path) -> None:
    folder = make_docs(tmp_path / "docs")
    splade = Pipeline(
        {"splade": SpladeRetriever()},
        inputs={"query": ["splade.query"], "top_k": ["splade.top_k"]},
        outputs={"hits": "splade.hits"},
        indexing=IndexingSettings(chunker=RecursiveChunker(chunk_size=120, chunk_overlap=20, unit="chars")),
        name="splade",
    )
    index_sharded(folder, tmp_path / "sharded", splade, shards=3)
    sharded = ShardedIndex(tmp_path / "sharded", ALLOWED)
    query = "topic1 facts written here"
    everything = sharded.query(query, top_k=500)
    for text in ("path matches 'sub1/**'", "path == sub2/doc5.md", "path matches 'sub0/**' and title exists"):
        flt = parse_filter(text)
        passing = [h.id for h in everything if flt.matches({"path": h.chunk.path, **h.chunk.metadata})]
        got = sharded.query(query, top_k=3, filters=text)
        assert [h.id for h in got] == passing[:3], text
    with pytest.raises(ConfigError, match="no chunk of this index has a field 'tenant'"):
        sharded.query(query, filters="tenant == acme")
    assert sharded.query(query, filters="tenant == acme", allow_unknown_fields=True) == []
    index_sharded(folder, tmp_path / "hashed", fake_pipeline(), shards=2)
    with pytest.raises(PipelineError, match="cannot apply filters exactly"):
        ShardedIndex(tmp_path / "hashed", ALLOWED).query(query, filters="path matches 'sub1/**'")
    result = CliRunner().invoke(
        main,
        [
            "shard",
            "query",
            query,
            "--index",
            "sharded",
            "--index-dir",
            str(tmp_path),
            "--filter",
            "path == sub2/doc5.md",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "sub2/doc5.md" in result.output and "sub1/" not in result.output


def test_missing_shard_is_an_error_naming_it(tmp_path: Path) -> None:
    folder = make_docs(tmp_path / "docs", count=6)
    index_sharded(folder, tmp_path / "sharded", fake_pipeline(), shards=3)
    shutil.rmtree(tmp_path / "sharded" / "shard-001")
    with pytest.raises(IndexNotFoundError, match=r"shard 'shard-001' listed in .*shards.json is missing"):
        ShardedIndex(tmp_path / "sharded", ALLOWED)
    (tmp_path / "sharded" / "shard-001").mkdir()
    with pytest.raises(IndexNotFoundError, match=r"shard 'shard-001' .* has no committed index"):
        ShardedIndex(tmp_path / "sharded", ALLOWED)
    result = CliRunner().invoke(
        main, ["shard", "query", "topic1", "--index", "sharded", "--index-dir", str(tmp_path), "--allow", ALLOWED[0]]
    )
    assert result.exit_code == 1 and "shard-001" in result.stderr


def test_bad_input(tmp_path: Path) -> None:
    folder = make_docs(tmp_path / "docs", count=4)
    with pytest.raises(ConfigError, match=r"BM25Retriever.*per-shard corpus statistics"):
        index_sharded(folder, tmp_path / "bm25", load_pipeline("default"), shards=2)
    assert not (tmp_path / "bm25" / MANIFEST).exists()
    index_sharded(folder, tmp_path / "sharded", fake_pipeline(), shards=2)
    with pytest.raises(IncompatibleIndexError, match="has 2 shards, not 3"):
        index_sharded(folder, tmp_path / "sharded", fake_pipeline(), shards=3)
    index_sharded(folder, tmp_path / "sharded", fake_pipeline(), shards=1, rebuild=True)
    assert sorted(p.name for p in (tmp_path / "sharded").iterdir() if p.name.startswith("shard-")) == ["shard-000"]
    assert ShardedIndex(tmp_path / "sharded", ALLOWED).query("topic1 facts")[0].chunk.path == "sub1/doc1.md"
    index_folder(folder, tmp_path / "plain", fake_pipeline())
    with pytest.raises(IndexStoreError, match="ordinary index, not a sharded one"):
        ShardedIndex(tmp_path / "plain")
    with pytest.raises(IndexNotFoundError, match="no sharded index"):
        ShardedIndex(tmp_path / "nothing")


def test_cli_shard_index_and_query(tmp_path: Path) -> None:
    folder = make_docs(tmp_path / "docs", count=6)
    pipeline_file = tmp_path / "fake.yaml"
    from rag.core.serialization import dump_pipeline

    pipeline_file.write_text(dump_pipeline(fake_pipeline()))
    common = ["--index", "big", "--index-dir", str(tmp_path), "--allow", ALLOWED[0], "--json"]
    result = CliRunner().invoke(
        main, ["shard", "index", str(folder), "--shards", "3", "--pipeline", str(pipeline_file), *common]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["files"]["added"] == 6 and len(data["shards"]) == 3
    result = CliRunner().invoke(main, ["shard", "query", "topic4 facts", "--top-k", "2", *common])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)["hits"]
    assert len(hits) == 2 and hits[0]["source"]["path"] == "sub1/doc4.md"
    result = CliRunner().invoke(main, ["shard", "query", "x", "--address", "auto", *common])
    assert result.exit_code == 1 and "--fanout ray" in result.stdout
