"""Filters applied inside the real retrievers (BM25, dense float/int8/binary over FAISS), end to end through
`RAG.query`: exactly the best of the chunks that pass, `top_k` of them whenever that many pass."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from click.testing import CliRunner

from rag.api import RAG
from rag.cli import main
from rag.core.component import Component
from rag.core.errors import ConfigError, PipelineError
from rag.core.filters import parse_filter
from rag.core.pipeline import IndexingSettings, Pipeline
from rag.core.run_report import recording
from rag.core.types import Chunk, Hit
from rag.fuse.rrf import ReciprocalRankFusion
from rag.ingest.chunkers.recursive import RecursiveChunker
from rag.retrieve.bm25 import BM25Retriever
from rag.retrieve.colbert import ColBERTRetriever
from rag.retrieve.dense import DenseRetriever
from rag.retrieve.matryoshka import MatryoshkaRetriever
from tests.fakes import HashRetriever

TOPICS = ["otters", "volcanoes", "bread", "comets", "violins", "glaciers"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sixty one-chunk files over six topics, in three folders, as .md and .txt."""
    root = tmp_path_factory.mktemp("filtered") / "docs"
    for i in range(60):
        topic = TOPICS[i % 6]
        folder = root / ["alpha", "beta", "gamma"][i % 3]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{topic}-{i}.{'md' if i % 2 else 'txt'}").write_text(f"Notes {i} about {topic} and {TOPICS[i % 5]}.")
    return root


def pipeline(legs: dict[str, object]) -> Pipeline:
    names = list(legs)
    components = dict(legs)
    connections = []
    if len(names) > 1:
        components["fusion"] = ReciprocalRankFusion(top_k=10)
        connections = [(f"{n}.hits", "fusion.hits") for n in names]
    out = "fusion" if len(names) > 1 else names[0]
    return Pipeline(
        components,  # type: ignore[arg-type]
        connections,
        inputs={"query": [f"{n}.query" for n in names], "top_k": [f"{out}.top_k"]},
        outputs={"hits": f"{out}.hits"},
        indexing=IndexingSettings(chunker=RecursiveChunker(chunk_size=200, chunk_overlap=0, unit="chars")),
    )


def brute_force(rag: RAG, query: str, allowed: set[str], k: int) -> list[str]:
    """The exact top k by cosine over the stored float vectors of the allowed chunks."""
    retriever = rag.pipeline.components["dense"]
    index = retriever._index  # the stored rows are what exact search reads
    vector = retriever.encode_queries([query])[0]
    rows = [row for row, chunk_id in enumerate(index.ids) if chunk_id in allowed]
    scores = np.asarray(index.vectors[rows], dtype=np.float32) @ vector
    return [index.ids[rows[i]] for i in np.argsort(-scores, kind="stable")[:k]]


@pytest.mark.parametrize("precision", ["float32", "int8", "binary"])
def test_dense_filtered_search_is_exact_and_full(corpus: Path, tmp_path: Path, precision: str) -> None:
    rag = RAG(tmp_path / "idx", pipeline({"dense": DenseRetriever(precision=precision, top_k=10)}))
    rag.index(corpus)
    rag.refresh()
    for text in ("path matches 'beta/**'", "type == md and path matches 'gamma/*'"):
        store = rag._store
        assert store is not None
        allowed = set(store.matching(parse_filter(text).checked(store.filter_fields())))
        with recording() as report:
            hits = rag.query("sea otters swimming", top_k=10, filters=text)
        assert len(hits) == min(10, len(allowed)) and {h.id for h in hits} <= allowed
        # a flat index skips the other rows; binary's Hamming shortlist is approximate: so few rows are scored exactly
        strategy = "exact scores of" if precision == "binary" else "FAISS with an ID selector,"
        assert report.notes["dense"] == [f"filtered search: {strategy} {len(allowed)} allowed rows of 60"]
        if precision == "float32":
            assert [h.id for h in hits] == brute_force(rag, "sea otters swimming", allowed, 10)


def test_bm25_and_a_fusion_filter_every_leg(corpus: Path, tmp_path: Path) -> None:
    rag = RAG(tmp_path / "idx", pipeline({"bm25": BM25Retriever(top_k=3), "dense": DenseRetriever(top_k=3)}))
    rag.index(corpus)
    hits = rag.query("otters", top_k=8, filters={"path": {"$matches": "alpha/**"}, "type": "txt"})
    assert len(hits) == 8 and all(h.chunk.path.startswith("alpha/") and h.chunk.path.endswith(".txt") for h in hits)
    unfiltered = [h.chunk.path for h in rag.query("otters", top_k=8)]
    assert any(not path.startswith("alpha/") for path in unfiltered)
    bm25 = RAG(tmp_path / "bm25", pipeline({"bm25": BM25Retriever()}))
    bm25.index(corpus)
    only = bm25.query("volcanoes", top_k=50, filters="path matches 'beta/**' and title exists")
    assert only and all(h.chunk.path.startswith("beta/") and "volcanoes" in h.chunk.text for h in only)
    assert {h.chunk.path for h in only} == {
        h.chunk.path for h in bm25.query("volcanoes", top_k=50) if h.chunk.path.startswith("beta/")
    }


def test_bad_filters_are_refused_before_any_search(corpus: Path, tmp_path: Path) -> None:
    rag = RAG(tmp_path / "idx", pipeline({"bm25": BM25Retriever()}))
    rag.index(corpus)
    with pytest.raises(ConfigError, match="no chunk of this index has a field 'tenant'; known fields: "):
        rag.query("otters", filters="tenant == acme")
    assert rag.query("otters", filters="tenant == acme", allow_unknown_fields=True) == []
    with pytest.raises(ConfigError, match="'size' is a number"):
        rag.query("otters", filters="size > big")
    hashed = RAG(tmp_path / "hash", pipeline({"h": HashRetriever()}))
    with pytest.raises(PipelineError, match=r"retriever 'h' .*cannot apply filters exactly yet"):
        hashed.query("otters", filters="type == md")


class _Finder(Component):
    """Finds hits, with no idea of the index's chunks or of filters (as a LangChain retriever in a pipeline)."""

    outputs: ClassVar[dict[str, Any]] = {"hits": list[Hit]}

    def run(self, query: str) -> dict[str, list[Hit]]:
        return {"hits": [Hit(Chunk("x", "secret.md", "unfiltered", 0, 10), 1.0)]}


def test_a_leg_that_cannot_take_filters_is_an_error_not_an_unfiltered_leg(corpus: Path, tmp_path: Path) -> None:
    rag = RAG(tmp_path / "idx", pipeline({"bm25": BM25Retriever(top_k=3), "other": _Finder()}))
    rag.index(corpus)
    assert any(h.chunk.path == "secret.md" for h in rag.query("otters", top_k=5))
    with pytest.raises(PipelineError, match=r"component 'other' .* takes no filters"):
        rag.query("otters", top_k=5, filters="type == md")


@pytest.mark.parametrize("leg", ["matryoshka", "colbert"])
def test_funnel_and_multivector_legs_keep_to_the_filter(corpus: Path, tmp_path: Path, leg: str) -> None:
    retriever = (
        MatryoshkaRetriever(top_k=10) if leg == "matryoshka" else ColBERTRetriever(top_k=10, candidates=12, nprobe=1)
    )
    rag = RAG(tmp_path / leg, pipeline({"r": retriever}))
    rag.index(corpus)
    rag.refresh()
    store = rag._store
    assert store is not None
    exact = [h.id for h in rag.query("glaciers and comets", top_k=60)]  # every chunk scored in full
    for text in ("path matches 'beta/**'", "type == md and path matches 'gamma/*'", "path == alpha/otters-0.txt"):
        allowed = set(store.matching(parse_filter(text).checked(store.filter_fields())))
        hits = rag.query("glaciers and comets", top_k=10, filters=text)
        assert len(hits) == min(10, len(allowed)) and {h.id for h in hits} <= allowed, text
        if len(allowed) <= 12:  # few pass: all of them are scored in full, as unfiltered
            assert [h.id for h in hits] == [i for i in exact if i in allowed][:10], text


def test_cli_filter(corpus: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    where = ["--index", "f", "--index-dir", str(tmp_path), "--pipeline", "bm25"]
    assert runner.invoke(main, ["index", str(corpus), *where]).exit_code == 0
    result = runner.invoke(main, ["query", "glaciers", "--filter", "path matches 'gamma/**'", "--json", *where])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    paths = [hit["source"]["path"] for hit in answer["hits"]]
    assert paths and all(path.startswith("gamma/") for path in paths)
    assert answer["timings"]["total_ms"] >= answer["timings"]["components"]["bm25"]["ms"] > 0
    result = runner.invoke(main, ["query", "glaciers", "--filter", "tpye == md", *where])
    assert result.exit_code == 1 and "no chunk of this index has a field 'tpye'" in result.output


def test_front_matter_becomes_fields_and_a_metadata_change_reindexes_without_embedding(tmp_path: Path) -> None:
    from tests.fakes import HashRetriever

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "acme.md").write_text("---\nkind: contract\ntags: [acme, supply]\nsigned: 2026-01-05\n---\n# Acme\n\nterms")
    (docs / "beta.md").write_text("---\nkind: memo\nsigned: 2025-11-30\n---\n# Beta\n\nterms of beta")
    (docs / "plain.md").write_text("---\nthis is: [not, closed\n\n# Plain\n\nterms too")
    rag = RAG(tmp_path / "idx", pipeline({"bm25": BM25Retriever()}))
    rag.index(docs)
    assert [h.chunk.path for h in rag.query("terms", filters="kind == contract")] == ["acme.md"]
    assert [h.chunk.path for h in rag.query("terms", filters="tags in [supply]")] == ["acme.md"]
    assert [h.chunk.path for h in rag.query("terms", filters="signed >= 2026-01-01")] == ["acme.md"]
    assert "kind" not in rag.query("terms", filters="path == acme.md")[0].chunk.text  # taken out of the text
    assert "this is" in rag.query("terms", filters="path == plain.md")[0].chunk.text  # not front matter: kept
    (docs / "beta.md").write_text("---\nkind: contract\nsigned: 2025-11-30\n---\n# Beta\n\nterms of beta")
    counting = RAG(tmp_path / "hash", pipeline({"vec": HashRetriever()}))
    counting.index(docs)
    (docs / "acme.md").write_text("---\nkind: draft\n---\n# Acme\n\nterms")
    report = rag.index(docs)
    assert report.changed == 2 and report.chunks_embedded == 0 and report.committed  # beta and acme
    assert [h.chunk.path for h in rag.query("terms", filters="kind == contract")] == ["beta.md"]
    hashed = counting.pipeline.components["vec"]
    before = hashed.embedded
    counting.index(docs)
    assert hashed.embedded == before  # new metadata, same chunks: nothing embedded again


def test_records_of_json_jsonl_and_csv_files_filter_by_their_own_fields(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    orders = [{"customer": "acme", "year": 2025, "item": "bolts"}, {"customer": "beta", "year": 2026, "item": "nuts"}]
    (docs / "orders.jsonl").write_text("".join(json.dumps(o) + "\n" for o in orders))
    (docs / "stock.csv").write_text("item,count,code\nbolts,12,007\nnuts,3.5,010\n")
    (docs / "people.json").write_text(json.dumps([{"name": "Ada", "team": {"city": "London"}, "tenant": "bobco"}]))
    (docs / "people.json.meta.json").write_text(json.dumps({"tenant": "acme"}))
    rag = RAG(tmp_path / "idx", pipeline({"bm25": BM25Retriever()}))
    rag.index(docs)
    texts = [h.chunk.text for h in rag.query("customer item bolts nuts", top_k=10, filters="year >= 2026")]
    assert texts == ["customer: beta\nyear: 2026\nitem: nuts"]  # one record, its own chunk
    assert [h.chunk.text for h in rag.query("item bolts nuts", filters="count > 10")] == [
        "item: bolts\ncount: 12\ncode: 007"
    ]
    assert [h.chunk.text[:11] for h in rag.query("item", filters="code == '007'")] == ["item: bolts"]
    assert [h.chunk.path for h in rag.query("Ada", filters="team.city == London")] == ["people.json"]
    assert rag.query("Ada", filters="tenant == bobco") == []  # the sidecar's tenant wins over the record's
    assert [h.chunk.path for h in rag.query("Ada", filters="tenant == acme")] == ["people.json"]


def test_the_rows_of_filters_taking_turns_are_kept_until_the_index_changes(corpus: Path, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(corpus, docs)
    rag = RAG(tmp_path / "idx", pipeline({"bm25": BM25Retriever()}))
    rag.index(docs)

    def rows(folder: str) -> np.ndarray:
        retriever, store = rag.pipeline.components["bm25"], rag._store
        assert isinstance(retriever, BM25Retriever) and store is not None
        return retriever._allowed_rows(parse_filter(f"path matches '{folder}/**'").checked(store.filter_fields()))

    rag.refresh()
    first = rows("alpha")
    assert len(first) == 20 and len(rows("beta")) == 20 and rows("alpha") is first  # kept while filters take turns
    (docs / "alpha" / "new.md").write_text("A new note about otters.")
    rag.index(docs)
    rag.refresh()
    assert len(rows("alpha")) == 21  # the index changed: worked out again
