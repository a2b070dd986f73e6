import sys

import numpy as np
import pytest

from rag.core.errors import ConfigError, IndexNotFoundError, IndexStoreError, MissingDependencyError
from rag.index import faiss_store
from rag.index.faiss_index import FaissIndex
from rag.index.rescore import rescore
from tests.index.test_bm25_index import is_memory_mapped

DIM = 16


def random_vectors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def brute_force(ids: list[str], vectors: np.ndarray, queries: np.ndarray, k: int, metric: str):
    squared_l2 = ((queries[:, None, :] - vectors[None, :, :]) ** 2).sum(axis=2)
    scores = queries @ vectors.T if metric == "ip" else -squared_l2
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), [[ids[i] for i in row] for row in order]


def assert_matches(index: FaissIndex, ids, vectors, queries, k, metric):
    scores, found = index.search(queries, k)
    expected_scores, expected_ids = brute_force(ids, vectors, queries, k, metric)
    assert found == expected_ids
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_search_add_and_remove_match_brute_force(metric):
    vectors = random_vectors(200, seed=1)
    ids = [f"v{i}" for i in range(200)]
    queries = random_vectors(5, seed=2)
    index = FaissIndex(DIM, metric=metric)
    index.add(ids[:150], vectors[:150])
    assert_matches(index, ids[:150], vectors[:150], queries, 10, metric)

    index.add(ids[150:], vectors[150:])  # extends the already built FAISS index
    assert len(index) == 200
    assert_matches(index, ids, vectors, queries, 10, metric)

    gone = set(ids[::3]) | {"not-there"}
    index.remove(gone)
    keep = [i for i, item in enumerate(ids) if item not in gone]
    assert index.ids == [ids[i] for i in keep]
    assert_matches(index, [ids[i] for i in keep], vectors[keep], queries, 10, metric)


def test_k_larger_than_the_index_returns_every_row():
    index = FaissIndex(DIM)
    index.add(["a", "b"], random_vectors(2, seed=3))
    scores, found = index.search(random_vectors(1, seed=4), 10)
    assert scores.shape == (1, 2)
    assert sorted(found[0]) == ["a", "b"]


def test_empty_index_search():
    scores, found = FaissIndex().search(random_vectors(3, seed=5), 4)
    assert scores.shape == (3, 0)
    assert found == [[], [], []]


def test_first_add_fixes_the_dimension_and_others_are_refused():
    index = FaissIndex()
    index.add(["a"], random_vectors(1, seed=6))
    assert index.dimension == DIM
    with pytest.raises(IndexStoreError, match="dimension"):
        index.add(["b"], np.ones((1, DIM + 1), dtype=np.float32))
    with pytest.raises(IndexStoreError, match="dimension"):
        index.search(np.ones((1, 3), dtype=np.float32), 1)


def test_duplicate_ids_are_refused():
    index = FaissIndex(DIM)
    index.add(["a"], random_vectors(1, seed=7))
    with pytest.raises(IndexStoreError, match="already"):
        index.add(["a"], random_vectors(1, seed=8))


def test_save_load_round_trip(tmp_path):
    vectors = random_vectors(60, seed=9)
    ids = [f"id-{i}" for i in range(60)]
    queries = random_vectors(4, seed=10)
    index = FaissIndex(DIM, metric="l2")
    index.add(ids, vectors)
    index.save(tmp_path / "vec")
    assert {p.name for p in (tmp_path / "vec").iterdir()} == {"vectors.npy", "ids.json", "manifest.json"}

    loaded = FaissIndex.load(tmp_path / "vec")
    assert (loaded.dimension, loaded.metric, loaded.ids) == (DIM, "l2", ids)
    assert is_memory_mapped(loaded.vectors)
    original, loaded_result = index.search(queries, 7), loaded.search(queries, 7)
    np.testing.assert_array_equal(original[0], loaded_result[0])
    assert original[1] == loaded_result[1]

    loaded.remove(ids[:10])
    loaded.add(["new"], vectors[:1])
    assert_matches(loaded, [*ids[10:], "new"], np.vstack([vectors[10:], vectors[:1]]), queries, 5, "l2")


def test_empty_round_trip(tmp_path):
    FaissIndex().save(tmp_path)
    loaded = FaissIndex.load(tmp_path)
    assert len(loaded) == 0
    assert loaded.search(random_vectors(1, seed=11), 3)[1] == [[]]


def test_save_never_overwrites(tmp_path):
    FaissIndex(DIM).save(tmp_path)
    with pytest.raises(IndexStoreError, match="exists"):
        FaissIndex(DIM).save(tmp_path)


def test_load_missing(tmp_path):
    with pytest.raises(IndexNotFoundError):
        FaissIndex.load(tmp_path)


def test_bad_settings():
    with pytest.raises(ConfigError, match="metric"):
        FaissIndex(DIM, metric="cosine")
    index = FaissIndex(DIM, factory="NoSuchIndex")
    index.add(["a"], random_vectors(1, seed=12))
    with pytest.raises(ConfigError, match="factory"):
        index.search(random_vectors(1, seed=13), 1)


def test_missing_faiss_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    index = FaissIndex(DIM)
    index.add(["a"], random_vectors(1, seed=14))
    with pytest.raises(MissingDependencyError) as info:
        index.search(random_vectors(1, seed=15), 1)
    assert info.value.extra == "faiss"


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2]),  # truncated
        lambda path: path.write_bytes(b"not a numpy file at all"),
        lambda path: path.write_bytes(b""),
    ],
)
def test_a_damaged_vectors_file_is_the_one_line_index_damaged_error(tmp_path, damage):
    index = FaissIndex(DIM)
    index.add([f"id-{i}" for i in range(20)], random_vectors(20, seed=3))
    index.save(tmp_path / "vec")
    damage(tmp_path / "vec" / "vectors.npy")
    with pytest.raises(IndexStoreError, match=r"^index damaged: .*vectors\.npy cannot be read .*--rebuild\)$"):
        FaissIndex.load(tmp_path / "vec")


@pytest.mark.parametrize(
    ("factory", "share"),
    [("Flat", 0.01), ("Flat", 0.3), ("HNSW16", 0.3), ("HNSW16", 0.9), ("IVF32,Flat", 0.2), ("IVF32,Flat", 0.6)],
)
def test_a_filtered_search_returns_k_allowed_rows_by_every_strategy(
    factory: str, share: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exact scores of a few allowed rows, an ID selector on a flat index, an ID selector probing nprobe / share
    lists on an IVF one (every list at 20%: exact), over-fetching on HNSW (as on an index too large to score every
    allowed row exactly)."""
    monkeypatch.setattr(faiss_store, "_EXACT_ROWS", 0)
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(2000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = FaissIndex(32, "ip", factory=factory)
    index.add([f"r{i}" for i in range(2000)], vectors)
    allowed = np.sort(rng.choice(2000, int(share * 2000), replace=False))
    queries = vectors[:50] + 0.1
    _, ids = index.search(queries, 10, allowed)
    allowed_ids = {f"r{i}" for i in allowed}
    assert all(len(row) == 10 and set(row) <= allowed_ids for row in ids)
    exact = [[f"r{allowed[i]}" for i in np.argsort(-(vectors[allowed] @ q), kind="stable")[:10]] for q in queries]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact, strict=True)])
    if factory == "Flat" or (factory.startswith("IVF") and share * 32 <= 8):  # every list probed: exact
        assert recall == 1.0
    elif factory.startswith("IVF"):  # as good as the unfiltered search of the same index, at least
        _, everywhere = index.search(queries, 10)
        truth = [[f"r{i}" for i in np.argsort(-(vectors @ q), kind="stable")[:10]] for q in queries]
        unfiltered = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(everywhere, truth, strict=True)])
        assert recall >= unfiltered - 0.02
    else:
        assert recall >= 0.9


@pytest.mark.parametrize("factory", ["HNSW16", "IVF32,Flat"])
def test_fewer_allowed_rows_than_an_approximate_index_needs_are_searched_exactly(factory: str) -> None:
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(2000, 32)).astype(np.float32)
    index = FaissIndex(32, "ip", factory=factory, nprobe=1, ef_search=10)
    index.add([f"r{i}" for i in range(2000)], vectors)
    allowed = np.sort(rng.choice(2000, 1200, replace=False))
    _, ids = index.search(vectors[:20], 10, allowed)
    exact = [[f"r{allowed[i]}" for i in np.argsort(-(vectors[allowed] @ q), kind="stable")[:10]] for q in vectors[:20]]
    assert ids == exact


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("precision", ["float32", "int8"])
@pytest.mark.parametrize("share", [0.1, 0.6])
def test_exact_filtered_scores_equal_rescoring_whether_rows_are_gathered_or_all_scored(
    metric: str, precision: str, share: float
) -> None:
    """Below a quarter of the rows the allowed ones are gathered; above, every row is scored and the rest dropped:
    both give the scores and order that rescoring the allowed rows does."""
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(3000, 16)).astype(np.float32)
    index = FaissIndex(16, metric, precision=precision)
    index.add([f"r{i}" for i in range(3000)], vectors)
    allowed = np.sort(rng.choice(3000, int(share * 3000), replace=False))
    queries = rng.normal(size=(7, 16)).astype(np.float32)
    scores, rows = index._search_exact(queries, 10, allowed)
    stored, stored_metric = index._exact()
    expected = rescore(queries, np.broadcast_to(allowed, (7, len(allowed))), stored, 10, index.ranges, stored_metric)
    assert np.array_equal(rows, expected[1])
    assert np.allclose(scores, expected[0], rtol=1e-4, atol=1e-4)
