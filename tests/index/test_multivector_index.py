import numpy as np
import pytest

from rag.core.errors import ConfigError, IncompatibleIndexError, IndexStoreError
from rag.embed.multivector import maxsim
from rag.index.multivector_index import MIN_TRAIN_TOKENS, MultiVectorIndex

pytest.importorskip("faiss")


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def random_docs(count: int, dim: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"doc{i:03d}": unit(rng.standard_normal((int(rng.integers(1, 12)), dim))) for i in range(count)}


def clustered(docs: int = 400, topics: int = 50, dim: int = 32, seed: int = 0):
    """Documents of two topics each (30 tokens) plus 10 tokens from shared "stopword" clusters; queries of 8 tokens."""
    rng = np.random.default_rng(seed)
    centers = unit(rng.standard_normal((topics, dim)))
    common = unit(rng.standard_normal((5, dim)))

    def around(points: np.ndarray, noise: float) -> np.ndarray:
        return unit(points + noise / np.sqrt(dim) * rng.standard_normal(points.shape))  # noise of norm ~ `noise`

    corpus, subjects = {}, []
    for i in range(docs):
        pair = rng.choice(topics, size=2, replace=False)
        subjects.append(pair)
        tokens = np.concatenate([centers[rng.choice(pair, 30)], common[rng.integers(0, 5, 10)]])
        corpus[f"doc{i:03d}"] = around(tokens, 1.0)
    queries = [around(centers[rng.choice(subjects[rng.integers(docs)], 8)], 1.0) for _ in range(30)]
    return corpus, queries


def build(docs: dict[str, np.ndarray], **settings) -> MultiVectorIndex:
    index = MultiVectorIndex(**settings)
    index.add(list(docs), list(docs.values()))
    return index


@pytest.mark.parametrize(("storage", "tolerance"), [("float16", 2e-3), ("int8", 3e-2)])
def test_round_trip_is_memory_mapped_and_scores_match_maxsim(tmp_path, storage, tolerance):
    docs = random_docs(400)  # enough tokens to train centroids
    index = build(docs, storage=storage)
    query = unit(np.random.default_rng(1).standard_normal((4, 16)))
    expected = sorted(((i, maxsim(query, t)) for i, t in docs.items()), key=lambda p: -p[1])[:5]
    found = index.search(query, 5, candidates=400)  # every document scored exactly
    assert found[0][0] == expected[0][0]
    np.testing.assert_allclose([s for _, s in found], [maxsim(query, docs[i]) for i, _ in found], atol=tolerance * 4)
    np.testing.assert_allclose(
        [s for _, s in found], [s for _, s in expected], atol=tolerance * 4
    )  # near-ties may swap
    index.save(tmp_path / "gen1")
    assert (tmp_path / "gen1" / "scales.npy").exists() == (storage == "int8")
    assert (tmp_path / "gen1" / "centroids.npy").exists() and (tmp_path / "gen1" / "codes.npy").exists()
    loaded = MultiVectorIndex.load(tmp_path / "gen1")
    assert isinstance(loaded.tokens, np.memmap) and loaded.tokens.dtype == np.dtype(storage)
    assert len(loaded) == 400 and "doc007" in loaded and loaded.token_count == sum(len(t) for t in docs.values())
    assert loaded.search(query, 5, candidates=400) == found


def test_removed_documents_are_never_returned_and_save_compacts(tmp_path):
    docs = random_docs(40)
    index = build(docs)
    query = docs["doc003"]
    assert index.search(query, 1)[0][0] == "doc003"
    index.remove(["doc003", "doc010", "unknown"])
    assert len(index) == 38 and "doc003" not in index
    assert all(i not in ("doc003", "doc010") for i, _ in index.search(query, 40))
    index.save(tmp_path / "gen")
    loaded = MultiVectorIndex.load(tmp_path / "gen")
    assert loaded.ids == [i for i in docs if i not in ("doc003", "doc010")]
    live_tokens = sum(len(t) for i, t in docs.items() if i not in ("doc003", "doc010"))
    assert loaded.token_count == len(np.load(tmp_path / "gen" / "tokens.npy")) == live_tokens
    assert loaded.search(docs["doc020"], 1)[0][0] == "doc020"
    loaded.add(["doc003"], [docs["doc003"]])  # a removed id can come back
    assert loaded.search(query, 1)[0][0] == "doc003"


def test_save_only_creates_new_files(tmp_path):
    index = build(random_docs(5))
    index.save(tmp_path)
    with pytest.raises(IndexStoreError, match="exists"):
        index.save(tmp_path)


def test_an_empty_index_finds_nothing_and_round_trips(tmp_path):
    index = MultiVectorIndex()
    assert index.search(np.ones((2, 4), dtype=np.float32), 3) == []
    index.save(tmp_path)
    assert len(MultiVectorIndex.load(tmp_path)) == 0


def test_other_dimensions_and_duplicates_are_refused():
    index = build(random_docs(3))
    with pytest.raises(IncompatibleIndexError, match="dimension 8"):
        index.search(np.ones((2, 8), dtype=np.float32), 1)
    with pytest.raises(IndexStoreError, match="already"):
        index.add(["doc000"], [np.ones((1, 16))])
    with pytest.raises(ConfigError):
        MultiVectorIndex(storage="float32")


def test_small_indexes_are_searched_exactly_without_centroids(tmp_path):
    docs = random_docs(10)  # fewer tokens than MIN_TRAIN_TOKENS
    assert sum(len(t) for t in docs.values()) < MIN_TRAIN_TOKENS
    index = build(docs)
    assert len(index.shortlist(docs["doc001"], 3, 1)) == 10
    index.save(tmp_path)
    assert not (tmp_path / "centroids.npy").exists()


def test_candidates_hold_the_exact_top_10_while_scoring_a_tenth_of_the_documents():
    corpus, queries = clustered()
    index = build(corpus)
    everything = np.arange(len(corpus))
    kept = []
    for query in queries:
        exact = np.argsort(-index.score(query, everything), kind="stable")[:10]
        shortlist = index.shortlist(query, 40, 4)
        assert len(shortlist) <= 40
        kept.append(len(np.intersect1d(exact, shortlist)) / 10)
    assert index.centroid_vectors is not None and len(index.centroid_vectors) >= 64
    assert np.mean(kept) >= 0.95
    hits = index.search(queries[0], 10, candidates=40)
    assert [i for i, _ in hits] == [index.ids[d] for d in np.argsort(-index.score(queries[0], everything))[:10]]


def test_additions_use_the_trained_centroids_until_the_corpus_grows_fourfold(tmp_path):
    corpus, queries = clustered(docs=100)
    items = list(corpus.items())
    index = build(dict(items[:60]))
    index.search(queries[0], 5)
    trained, centroids = index.trained_on, index.centroid_vectors.copy()
    index.save(tmp_path / "gen1")
    loaded = MultiVectorIndex.load(tmp_path / "gen1")
    loaded.add([i for i, _ in items[60:]], [t for _, t in items[60:]])  # under 4x: no retraining
    assert loaded.search(corpus["doc077"], 1)[0][0] == "doc077"
    np.testing.assert_array_equal(loaded.centroid_vectors, centroids)
    assert len(loaded.codes) == loaded.token_count
    more, _ = clustered(docs=300, seed=1)
    loaded.add([f"more{i}" for i in range(len(more))], list(more.values()))  # over 4x the training set
    loaded.save(tmp_path / "gen2")
    assert loaded.trained_on == loaded.token_count > 4 * trained
    assert MultiVectorIndex.load(tmp_path / "gen2").search(corpus["doc077"], 1)[0][0] == "doc077"
