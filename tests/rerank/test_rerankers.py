"""The reranker contract (with a word-overlap reranker) and the cross-encoder with a real model."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from rag.core.errors import ConfigError, ModelLoadError
from rag.core.types import Chunk, Hit
from rag.eval.beir import load_beir
from rag.rerank.base import Reranker
from rag.rerank.cross_encoder import CrossEncoderReranker
from rag.train.reranker import mine_pairs, train_reranker
from tests.eval.conftest import write_beir
from tests.indexing_helpers import fake_pipeline


class OverlapReranker(Reranker):
    def __init__(self, top_k: int | None = 10, score_threshold: float | None = None) -> None:
        self.check_settings(top_k, score_threshold)
        self.top_k = top_k
        self.score_threshold = score_threshold

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        words = set(query.split())
        return [float(len(words & set(text.split()))) for text in texts]


def hits(*texts: str) -> list[Hit]:
    return [Hit(Chunk(f"c{i}", f"{i}.txt", t, 0, len(t)), 1.0 / (i + 1)) for i, t in enumerate(texts)]


def test_reorders_by_score_and_keeps_first_stage_order_on_ties() -> None:
    result = OverlapReranker().run("red fox", hits("a dog", "red fox", "a fox", "a cat"))["hits"]
    assert [h.chunk.text for h in result] == ["red fox", "a fox", "a dog", "a cat"]
    assert [h.score for h in result] == [2.0, 1.0, 0.0, 0.0]


def test_top_k_and_threshold() -> None:
    given = hits("a dog", "red fox", "a fox")
    assert len(OverlapReranker(top_k=1).run("red fox", given)["hits"]) == 1
    assert len(OverlapReranker().run("red fox", given, top_k=2)["hits"]) == 2
    kept = OverlapReranker(score_threshold=1.0).run("red fox", given)["hits"]
    assert [h.chunk.text for h in kept] == ["red fox", "a fox"]
    assert OverlapReranker().run("red fox", [])["hits"] == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"top_k": 0}, "top_k must be None or an integer >= 1"), ({"score_threshold": "high"}, "score_threshold")],
)
def test_bad_settings(kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError, match=message):
        OverlapReranker(**kwargs)
    with pytest.raises(ConfigError, match=message):
        CrossEncoderReranker(**kwargs)


CORPUS = [{"_id": f"d{i}", "title": f"Doc {i}", "text": f"topic{i} facts are here, topic{i} again."} for i in range(8)]
QUERIES = [{"_id": f"q{i}", "text": f"topic{i} facts"} for i in range(8)]
QRELS = [(f"q{i}", f"d{i}", 1) for i in range(8)]


def test_mined_pairs_are_judged_positives_and_retrieved_non_relevant(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    dataset = load_beir(write_beir(tmp_path / "ds", CORPUS, QUERIES, QRELS))
    pairs = mine_pairs(dataset, fake_pipeline(), negatives=2)
    assert len(pairs) == 8 * 3
    for query, passage, label in pairs:
        n = query.split()[0].removeprefix("topic")
        assert (f"topic{n} facts" in passage) == (label == 1)


def test_random_negatives_are_added_per_query_and_never_relevant(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    dataset = load_beir(write_beir(tmp_path / "ds", CORPUS, QUERIES, QRELS))
    pairs = mine_pairs(dataset, fake_pipeline(), negatives=1, random_negatives=2)
    assert len(pairs) == 8 * 4 and sum(label for _, _, label in pairs) == 8
    for query, passage, label in pairs:
        n = query.split()[0].removeprefix("topic")
        assert (f"topic{n} facts" in passage) == (label == 1)
    assert mine_pairs(dataset, fake_pipeline(), negatives=1, random_negatives=2) == pairs  # seeded


def test_a_missing_model_says_where_it_looked_and_what_to_do(tmp_path: Path) -> None:
    pytest.importorskip("sentence_transformers")
    reranker = CrossEncoderReranker(model=str(tmp_path / "no-such-model"))
    with pytest.raises(ModelLoadError, match=r"no-such-model.*rag train reranker"):
        reranker.warm_up()


@pytest.mark.integration
def test_train_then_rerank_with_the_trained_folder(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("datasets")
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    dataset = load_beir(write_beir(tmp_path / "ds", CORPUS, QUERIES, QRELS))
    out = tmp_path / "reranker"
    report = train_reranker(dataset, fake_pipeline(), out, negatives=1, max_length=32, batch_size=8)
    assert (report.positives, report.negatives) == (8, 8)
    assert json.loads((out / "rag_training.json").read_text())["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".reranker")]  # no temporary folder left
    reranker = CrossEncoderReranker(model=str(out), top_k=3, max_length=32)
    result = reranker.run("topic3 facts", hits(*(d["text"] for d in CORPUS)))["hits"]
    assert len(result) == 3 and all(0.0 <= h.score <= 1.0 for h in result)  # sigmoid of one logit
    again = train_reranker(dataset, fake_pipeline(), out, negatives=1, max_length=32, batch_size=8)
    assert again.out == str(out) and (out / "model.safetensors").exists()  # replaced in place


@pytest.mark.integration
def test_maxsim_reranker_with_real_minilm_tokens() -> None:
    pytest.importorskip("sentence_transformers")
    from rag.embed.multivector import maxsim
    from rag.rerank.maxsim import MaxSimReranker

    reranker = MaxSimReranker(top_k=2)
    given = hits(
        "The stock market fell sharply on Monday.",
        "Kittens sleep most of the day and purr when they are content.",
        "A recipe for sourdough bread with a long fermentation.",
    )
    result = reranker.run("why do cats purr", given)["hits"]
    assert result[0].chunk.text.startswith("Kittens") and len(result) == 2
    query = reranker._embedder.encode_queries(["why do cats purr"])[0]
    tokens = reranker._embedder.encode_documents([given[1].chunk.text])[0]
    assert result[0].score == pytest.approx(maxsim(query, tokens), rel=1e-5)
