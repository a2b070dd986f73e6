"""Leg weights learned from a collection's titles (`ScoreFusion(weights="auto")`): the estimate by hand, the titles
it asks, and end to end: learned when an index is built, stored with it, used by queries and shown in their report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.api import RAG
from rag.core.errors import ConfigError, IndexStoreError
from rag.core.pipeline import IndexingSettings, Pipeline
from rag.core.run_report import recording
from rag.core.types import Chunk, Hit
from rag.fuse.adapt import LegWeights, combined, leg_weights, title_queries
from rag.fuse.score import ScoreFusion
from rag.ingest.chunkers.recursive import RecursiveChunker
from rag.retrieve.bm25 import BM25Retriever
from rag.retrieve.dense import DenseRetriever


def chunk(path: str, title: str | None = None) -> Chunk:
    return Chunk(path, path, f"text of {path}", 0, 10, {"title": title} if title else {})


def listing(*paths: str) -> list[Hit]:
    """Hits scored 10, 9, 8... in this order."""
    return [Hit(chunk(p), 10.0 - rank) for rank, p in enumerate(paths)]


def test_a_leg_that_puts_right_answers_high_and_steadily_weighs_more() -> None:
    targets = ["a", "b", "c", "d"]
    steady = [listing(t, "x", "y", "z") for t in targets]  # always first
    erratic = [listing("a", "x", "y", "z"), listing("x", "y", "z", "b"), listing("c", "x", "y"), listing("x", "y")]
    strong, weak = leg_weights([steady, erratic], targets, "zscore")
    assert strong > weak == pytest.approx(strong / 10, abs=1e-3) and strong + weak == pytest.approx(2.0, abs=1e-3)
    assert leg_weights([steady, steady], targets, "zscore") == (1.0, 1.0)
    never = [listing("x", "y", "z")] * 4  # never finds the answer: the floor, not zero
    assert leg_weights([steady, never], targets, "minmax")[1] == pytest.approx(2 / 11, abs=1e-3)


def test_title_queries_are_one_documents_own_titles_of_two_words_or_more() -> None:
    chunks = [
        chunk("a.md", "Sea otters"),
        chunk("a.md", "Sea otters"),  # a second chunk of the same document
        chunk("b.md", "Shared title"),
        chunk("c.md", "Shared title"),  # two documents: it would not tell which is right
        chunk("d.md", "Otters"),  # one word
        chunk("install-guide.md", "Install guide"),  # the file's own name
        chunk("e.md"),
    ]
    assert title_queries(chunks) == [("Sea otters", "a.md")]
    many = [chunk(f"doc{i}.md", f"Title number {i}") for i in range(30)]
    assert title_queries(many, limit=5) == title_queries(list(reversed(many)), limit=5)  # a fixed sample
    assert len(title_queries(many, limit=5)) == 5


def test_auto_weights_are_equal_until_the_index_gives_an_estimate() -> None:
    fusion = ScoreFusion(method="zscore", weights="auto")
    lists = [hits_of(("a", 3.0), ("b", 2.0), ("c", 1.0)), hits_of(("c", 3.0), ("b", 2.0), ("a", 1.0))]
    with recording() as report:
        equal = [h.id for h in fusion.run(hits=lists)["hits"]]
    assert equal[0] == "b" or set(equal[:2]) == {"a", "c"}
    assert report.notes == {"(outside a component)": ["weights: equal (no estimate from the index)"]}
    fusion.use_estimate(LegWeights(("first", "second"), (1.8, 0.2), 120, "zscore"))
    with recording() as report:
        assert fusion.run(hits=lists)["hits"][0].id == "a"
    assert report.notes["(outside a component)"] == ["weights learned from 120 titles: first 1.8, second 0.2"]
    assert fusion.settings["weights"] == "auto"  # what a saved pipeline says
    with pytest.raises(ConfigError, match="weights must be a list of numbers, 'auto' or None"):
        ScoreFusion(weights="learned")  # type: ignore[arg-type]


def hits_of(*pairs: tuple[str, float]) -> list[Hit]:
    return [Hit(chunk(i), s) for i, s in pairs]


def hybrid() -> Pipeline:
    return Pipeline(
        {
            "bm25": BM25Retriever(top_k=20),
            "dense": DenseRetriever(top_k=20),
            "fusion": ScoreFusion(method="zscore", weights="auto", top_k=5),
        },
        [("bm25.hits", "fusion.hits"), ("dense.hits", "fusion.hits")],
        inputs={"query": ["bm25.query", "dense.query"], "top_k": ["fusion.top_k"]},
        outputs={"hits": "fusion.hits"},
        indexing=IndexingSettings(chunker=RecursiveChunker(chunk_size=400, chunk_overlap=0, unit="chars")),
    )


ANIMALS = ["otters", "herons", "badgers", "lynxes", "beavers", "ravens", "salmon", "moles", "hares", "owls"]
PLACES = ["rivers", "moors", "forests", "coasts", "lakes", "hills"]


def test_an_index_learns_its_fusion_weights_keeps_them_and_learns_again_when_chunks_change(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i, (animal, place) in enumerate((a, p) for a in ANIMALS for p in PLACES):
        text = f"# {animal.title()} of the {place}\n\nField notes {i}: {animal} living near {place}, seen at dawn."
        (docs / f"note-{i:02d}.md").write_text(text)
    rag = RAG(tmp_path / "idx", hybrid())
    rag.index(docs)
    generation = rag.folder.require_current()
    saved = json.loads((generation / "components" / "fusion" / "weights.json").read_text())
    assert saved["legs"] == ["bm25", "dense"] and saved["queries"] == 60 and len(saved["weights"]) == 2
    with recording() as report:
        assert len(rag.query("badgers near forests")) == 5
    assert report.notes["fusion"] == [
        f"weights learned from 60 titles: bm25 {saved['weights'][0]:g}, dense {saved['weights'][1]:g}"
    ]
    (generation / "components" / "fusion" / "weights.json").unlink()  # as in an index written before estimates
    (docs / "note-00.md").touch()
    rag.index(docs)  # nothing added or removed, no estimate to keep: learned from the retrievers as saved
    learned = rag.folder.require_current() / "components" / "fusion" / "weights.json"
    assert json.loads(learned.read_text()) == saved
    (docs / "note-01.md").touch()
    rag.index(docs)  # nothing added or removed: the estimate is kept (the same file, linked)
    kept = rag.folder.require_current() / "components" / "fusion" / "weights.json"
    assert kept != learned and kept.stat().st_ino == learned.stat().st_ino
    for path in sorted(docs.iterdir())[:20]:
        path.unlink()
    rag.index(docs)  # 40 titles left: too few to learn from, equal weights
    assert not (rag.folder.require_current() / "components" / "fusion" / "weights.json").exists()
    with recording() as report:
        rag.query("badgers near forests")
    assert report.notes["fusion"] == ["weights: equal (no estimate from the index)"]


def test_the_estimates_of_shards_are_averaged_by_how_many_titles_taught_them() -> None:
    first = LegWeights(("splade", "dense"), (1.5, 0.5), 100, "zscore")
    second = LegWeights(("splade", "dense"), (0.5, 1.5), 300, "zscore")
    assert combined([first, None, second]) == LegWeights(("splade", "dense"), (0.75, 1.25), 400, "zscore")
    assert combined([None, None]) is None


def test_a_damaged_estimate_is_an_index_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "weights.json").write_text('{"legs": ["bm25"]')
    with pytest.raises(IndexStoreError, match=r"^index damaged: .*weights\.json cannot be read .*--rebuild\)$"):
        LegWeights.load(tmp_path)
    assert LegWeights.load(tmp_path / "nowhere") is None
