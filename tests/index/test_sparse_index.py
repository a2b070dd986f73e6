import numpy as np
import pytest
from scipy import sparse

from rag.core.errors import IndexNotFoundError, IndexStoreError
from rag.index.sparse_index import SparseIndex, id_ranks, top_k
from tests.index.test_bm25_index import is_memory_mapped

DIM = 50


def random_rows(n: int, seed: int, density: float = 0.1) -> sparse.csr_array:
    rng = np.random.default_rng(seed)
    weights = np.round(rng.random((n, DIM)) * 4, 1) + 0.1  # positive, with repeated values (ties)
    return sparse.csr_array(np.where(rng.random((n, DIM)) < density, weights, 0).astype(np.float32))


def build(n: int = 40, seed: int = 0, prefix: str = "d") -> tuple[SparseIndex, dict[str, np.ndarray]]:
    rows = random_rows(n, seed)
    index = SparseIndex(DIM, metadata={"model": "m"})
    ids = [f"{prefix}{i:03d}" for i in range(n)]
    index.add(ids, rows)
    return index, dict(zip(ids, rows.toarray(), strict=True))


def expected_ranking(dense: dict[str, np.ndarray], query: np.ndarray, k: int) -> list[tuple[str, float]]:
    """The brute-force answer: dot products of documents that share a term with the query."""
    scored = [(i, float(v @ query)) for i, v in dense.items() if np.any((v != 0) & (query != 0))]
    return sorted(scored, key=lambda pair: (-pair[1], pair[0]))[:k]


def assert_same(found: list[tuple[str, float]], expected: list[tuple[str, float]]) -> None:
    assert [i for i, _ in found] == [i for i, _ in expected]
    np.testing.assert_allclose([s for _, s in found], [s for _, s in expected], rtol=1e-6)


def queries(seed: int) -> np.ndarray:
    return random_rows(6, seed, density=0.15).toarray()


def test_scores_computed_by_hand():
    index = SparseIndex(5)
    index.add(["a", "b", "c"], np.array([[1, 0, 2, 0, 0], [0, 3, 0, 0, 0.5], [0, 0, 0, 0, 4]], dtype=np.float32))
    query = sparse.csr_array(np.array([[2, 0, 1, 0, 1]], dtype=np.float32))
    np.testing.assert_allclose(index.scores(query), [2 * 1 + 1 * 2, 0.5, 4])
    assert index.search(query, 10) == [("a", 4.0), ("c", 4.0), ("b", 0.5)]
    assert index.search(np.array([0, 1, 0, 0, 0], dtype=np.float32), 10) == [("b", 3.0)]
    assert index.search(np.array([0, 0, 0, 7, 0]), 10) == []  # no document has term 3
    assert index.search(query, 0) == []


def test_search_matches_brute_force_for_every_k():
    index, dense = build()
    for query in queries(1):
        for k in (1, 3, 10, 1000):
            assert_same(index.search(query, k), expected_ranking(dense, query, k))


def test_batch_search_equals_one_search_per_query():
    index, _ = build()
    batch = queries(2)
    assert index.search_batch(sparse.csr_array(batch), 5) == [index.search(q, 5) for q in batch]
    assert index.search_batch(np.zeros((0, DIM)), 5) == []


def test_ties_are_broken_by_id_and_kept_at_the_cut():
    index = SparseIndex(3)
    index.add(["z", "a", "m", "b"], np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0], [2, 0, 0]], dtype=np.float32))
    query = np.array([1, 0, 0], dtype=np.float32)
    assert index.search(query, 2) == [("b", 2.0), ("a", 1.0)]
    assert index.search(query, 3) == [("b", 2.0), ("a", 1.0), ("m", 1.0)]
    assert top_k(["x", "y"], np.array([1, 0]), np.array([0.5, 0.5]), 1) == [("x", 0.5)]


def test_remove_and_add_equal_a_fresh_index():
    index, dense = build(40, seed=3)
    assert index.search(queries(5)[0], 1000)  # builds the posting lists, which the changes must replace
    gone = ["d000", "d007", "d013", "d039"]
    index.remove([*gone, "never-indexed"])
    extra = random_rows(5, seed=4)
    index.add([f"n{i}" for i in range(5)], extra)
    for doc_id in gone:
        del dense[doc_id]
    dense.update({f"n{i}": row for i, row in enumerate(extra.toarray())})
    assert len(index) == len(dense) == 41 and "d000" not in index and "n4" in index
    for query in queries(5):
        assert_same(index.search(query, 1000), expected_ranking(dense, query, 1000))


def test_remove_everything_then_add_again():
    index, _ = build(3)
    index.remove(index.ids)
    assert len(index) == 0 and index.nnz == 0
    assert index.search(np.ones(DIM), 5) == []
    assert index.scores(np.ones(DIM)).shape == (0,)
    index.add(["x"], np.eye(DIM, dtype=np.float32)[:1])
    assert index.search(np.ones(DIM), 5) == [("x", 1.0)]


def test_add_refuses_existing_or_repeated_ids_and_other_dimensions():
    index, _ = build(3)
    with pytest.raises(IndexStoreError, match="already"):
        index.add(["d000"], np.ones((1, DIM)))
    with pytest.raises(IndexStoreError, match="repeated"):
        index.add(["y", "y"], np.ones((2, DIM)))
    with pytest.raises(ValueError, match="columns"):
        index.add(["y"], np.ones((1, DIM + 1)))
    with pytest.raises(ValueError, match="2 ids for 1 vectors"):
        index.add(["y", "w"], np.ones((1, DIM)))
    with pytest.raises(ValueError, match="one query vector"):
        index.search(np.ones((2, DIM)), 3)
    assert len(index) == 3


def test_explicit_zeros_are_dropped_and_the_callers_vectors_untouched():
    vectors = sparse.csr_array((np.array([0.0, 1.0], dtype=np.float32), np.array([0, 1]), np.array([0, 2])), (1, 2))
    index = SparseIndex(2)
    index.add(["a"], vectors)
    assert index.nnz == 1 and vectors.nnz == 2
    assert index.search(np.array([1.0, 0.0]), 5) == []  # a stored zero does not make "a" share term 0


def test_save_load_round_trip_is_identical_and_memory_mapped(tmp_path):
    index, dense = build(30, seed=6)
    index.save(tmp_path / "sparse")
    names = {p.name for p in (tmp_path / "sparse").iterdir()}
    assert names == {"data.npy", "indices.npy", "indptr.npy", "ids.json", "manifest.json"}
    loaded = SparseIndex.load(tmp_path / "sparse")
    assert loaded.ids == index.ids and loaded.dimension == DIM and loaded.metadata == {"model": "m"}
    assert is_memory_mapped(loaded.matrix.data) and is_memory_mapped(loaded.matrix.indices)
    batch = queries(7)
    assert loaded.search_batch(batch, 1000) == index.search_batch(batch, 1000)
    for query in batch:
        assert_same(loaded.search(query, 1000), expected_ranking(dense, query, 1000))


def test_a_loaded_index_can_be_updated_without_touching_its_files(tmp_path):
    index, dense = build(20, seed=8)
    index.save(tmp_path / "one")
    before = {p.name: p.read_bytes() for p in (tmp_path / "one").iterdir()}
    loaded = SparseIndex.load(tmp_path / "one")
    loaded.remove(["d000", "d001"])
    loaded.add(["x"], np.ones((1, DIM), dtype=np.float32))
    del dense["d000"], dense["d001"]
    dense["x"] = np.ones(DIM, dtype=np.float32)
    assert {p.name: p.read_bytes() for p in (tmp_path / "one").iterdir()} == before
    loaded.save(tmp_path / "two")
    again = SparseIndex.load(tmp_path / "two")
    for query in queries(9):
        assert_same(again.search(query, 1000), expected_ranking(dense, query, 1000))


def test_empty_index_round_trip(tmp_path):
    SparseIndex(DIM).save(tmp_path / "empty")
    loaded = SparseIndex.load(tmp_path / "empty")
    assert len(loaded) == 0 and loaded.dimension == DIM
    assert loaded.search(np.ones(DIM), 3) == []


def test_save_never_overwrites(tmp_path):
    index, _ = build(2)
    index.save(tmp_path)
    with pytest.raises(IndexStoreError, match="exists"):
        index.save(tmp_path)


def test_load_errors(tmp_path):
    with pytest.raises(IndexNotFoundError):
        SparseIndex.load(tmp_path / "nothing")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "manifest.json").write_text('{"format": "rag.bm25/1"}')
    with pytest.raises(IndexStoreError, match="not a sparse index"):
        SparseIndex.load(tmp_path / "other")
    index, _ = build(3)
    index.save(tmp_path / "cut")
    (tmp_path / "cut" / "ids.json").unlink()
    (tmp_path / "cut" / "ids.json").write_text('["d000"]')
    with pytest.raises(IndexStoreError, match="inconsistent"):
        SparseIndex.load(tmp_path / "cut")


def test_numpy_ordering_with_id_ranks_equals_the_python_sort() -> None:
    rng = np.random.default_rng(0)
    ids = [f"doc-{i:03d}" for i in rng.permutation(300)]  # rows not in id order
    ranks = id_ranks(ids)
    for k in (1, 5, 50, 400):
        rows = np.sort(rng.choice(300, size=120, replace=False))
        scores = rng.integers(0, 6, size=rows.size).astype(np.float64)  # many ties: ids decide
        assert top_k(ids, rows, scores, k, ranks) == top_k(ids, rows, scores, k)
