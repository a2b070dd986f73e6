"""`--engine ray` against the local engine, on a real local Ray cluster (2 CPUs) with MiniLM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rag.api import RAG
from rag.core.serialization import load_pipeline
from rag.indexer import IndexReport, index_folder
from rag.store.chunk_store import ChunkStore
from rag.store.index_folder import IndexFolder
from tests.indexing_helpers import ALLOWED, check_consistent, fake_pipeline, make_corpus

ray = pytest.importorskip("ray")

from rag.distributed.ray_engine import RayEngine  # noqa: E402
from rag.distributed.shards import ShardedIndex, index_sharded  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOCS = {
    "otters.md": "# Sea otters\n\nSea otters eat sea urchins, crabs and clams. They open shells with stones.\n\n"
    + "Otters groom their dense fur for hours each day to keep warm in cold water. " * 12,
    "volcano.txt": "Mount Etna is an active volcano on the east coast of Sicily. It erupts several times a year.",
    "bread.md": "# Baking bread\n\nBread dough rises because yeast ferments sugars and releases carbon dioxide gas.",
    "notes/rust.md": "# Rust\n\nRust is a systems programming language: memory safety without garbage collection.",
    "data/teas.csv": "name,origin\nsencha,Japan\nlongjing,China\nassam,India\n",
    "empty.txt": "",
}
QUERIES = ["What do sea otters eat?", "Which island has a mountain that spews lava?", "memory safety", "green tea"]


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


def write_docs(folder: Path, docs: dict[str, str]) -> Path:
    for name, text in docs.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def both(folder: Path, root: Path) -> tuple[IndexReport, IndexReport]:
    local = index_folder(folder, root / "local", load_pipeline("dense"))
    pipeline = load_pipeline("dense")
    remote = index_folder(folder, root / "ray", pipeline, engine=RayEngine(workers=2))
    assert pipeline.components["dense"].embedder._model is None  # every vector came from the Ray actors
    return local, remote


def assert_same_index(root: Path) -> None:
    local_gen, ray_gen = (IndexFolder(root / name).require_current() for name in ("local", "ray"))
    local, remote = ChunkStore.load(local_gen), ChunkStore.load(ray_gen)
    assert list(local.chunks) == list(remote.chunks)  # same ids, in the same order
    assert local.chunks == remote.chunks
    assert local.files == remote.files
    vectors = {}
    for name, generation in (("local", local_gen), ("ray", ray_gen)):
        folder = generation / "components" / "dense"
        ids = json.loads((folder / "ids.json").read_text())
        vectors[name] = dict(zip(ids, np.load(folder / "vectors.npy"), strict=True))
    assert list(vectors["local"]) == list(vectors["ray"])  # rows added in the same order
    for chunk_id, row in vectors["local"].items():
        np.testing.assert_allclose(vectors["ray"][chunk_id], row, atol=1e-5)
    for query in QUERIES:
        hits = {name: RAG(root / name).query(query, top_k=5) for name in ("local", "ray")}
        assert [h.id for h in hits["local"]] == [h.id for h in hits["ray"]]
        np.testing.assert_allclose([h.score for h in hits["local"]], [h.score for h in hits["ray"]], atol=1e-5)


def test_ray_index_equals_local_and_stays_equal_through_updates(tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "docs", DOCS)
    local, remote = both(folder, tmp_path)
    assert local.to_dict() | {"seconds": 0} == remote.to_dict() | {"seconds": 0}
    assert remote.added == 5 and remote.failed == 1 and remote.failures[0]["path"] == "empty.txt"
    assert remote.chunks_embedded == remote.chunks_total > 5
    assert_same_index(tmp_path)
    assert not list((tmp_path / "ray").glob("tmp-*"))  # staging shards cleaned up

    # edit one file (one chunk changes), rename one, delete one, add one
    otters = folder / "otters.md"
    otters.write_text(otters.read_text().replace("clams", "mussels"))
    (folder / "notes" / "rust.md").rename(folder / "rust-language.md")
    (folder / "volcano.txt").unlink()
    (folder / "tea.md").write_text("# Tea\n\nGreen tea leaves are steamed or pan-fired to stop oxidation.")
    local, remote = both(folder, tmp_path)
    assert local.to_dict() | {"seconds": 0} == remote.to_dict() | {"seconds": 0}
    assert (remote.added, remote.changed, remote.removed) == (2, 1, 2)
    assert 0 < remote.chunks_embedded < remote.chunks_total  # unchanged chunks keep their vectors
    assert_same_index(tmp_path)

    # nothing changed: nothing to do on either engine
    local, remote = both(folder, tmp_path)
    assert not remote.committed and remote.unchanged == 5 and remote.chunks_embedded == 0


def test_ray_engine_with_a_driver_side_retriever(tmp_path: Path) -> None:
    """Retrievers without a sentence-transformers embedder still index on the driver, from Ray's chunks."""
    make_corpus(tmp_path / "docs", count=6)
    (tmp_path / "docs" / "bad.json").write_text("{not json")
    pipeline = fake_pipeline()
    report = index_folder(tmp_path / "docs", tmp_path / "idx", pipeline, engine=RayEngine(workers=2, read_batch=2))
    assert (report.added, report.failed) == (6, 1)
    assert report.failures[0]["path"] == "bad.json"
    assert pipeline.components["vec"].embedded == report.chunks_total
    check_consistent(tmp_path / "idx", {f"doc{i}.md" for i in range(6)})
    expected = index_folder(tmp_path / "docs", tmp_path / "local", fake_pipeline())
    assert (
        ChunkStore.load(IndexFolder(tmp_path / "idx").require_current()).chunks
        == ChunkStore.load(IndexFolder(tmp_path / "local").require_current()).chunks
    )
    assert expected.chunks_total == report.chunks_total
    assert RAG(tmp_path / "idx", allowed=ALLOWED).query("topic3 facts")[0].chunk.path == "doc3.md"


def test_cli_index_and_shard_index_with_engine_ray(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from rag.cli import main
    from rag.core.serialization import dump_pipeline

    make_corpus(tmp_path / "docs", count=4)
    (tmp_path / "fake.yaml").write_text(dump_pipeline(fake_pipeline()))
    common = ["--index-dir", str(tmp_path), "--pipeline", str(tmp_path / "fake.yaml"), "--allow", ALLOWED[0]]
    args = ["index", str(tmp_path / "docs"), *common, "--engine", "ray", "--json"]
    result = CliRunner().invoke(main, args)  # joins the fixture's cluster
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files"]["added"] == 4
    assert not [p for p in (tmp_path / "default").iterdir() if p.name.startswith("tmp-")]
    assert RAG(tmp_path / "default", allowed=ALLOWED).query("topic2 facts")[0].chunk.path == "doc2.md"
    args = ["shard", "index", str(tmp_path / "docs"), *common, "--index", "big", "--shards", "2", "--engine", "ray"]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files"]["added"] == 4


def test_sharded_index_built_with_ray_answers_like_one_index(tmp_path: Path) -> None:
    folder = write_docs(tmp_path / "docs", {k: v for k, v in DOCS.items() if k != "empty.txt"})
    index_folder(folder, tmp_path / "single", load_pipeline("dense"))
    report = index_sharded(folder, tmp_path / "sharded", load_pipeline("dense"), shards=3)  # Ray engine: above
    assert report.to_dict()["files"]["added"] == 5
    single = RAG(tmp_path / "single")
    for fanout in ("threads", "ray"):  # shards searched here, or in one Ray actor each
        sharded = ShardedIndex(tmp_path / "sharded", fanout=fanout)
        for query in QUERIES:
            for top_k in (1, 3, 50):
                expected, got = single.query(query, top_k=top_k), sharded.query(query, top_k=top_k)
                assert [h.id for h in expected] == [h.id for h in got]
                np.testing.assert_allclose([h.score for h in expected], [h.score for h in got], atol=1e-5)
