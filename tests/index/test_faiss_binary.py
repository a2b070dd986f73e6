import numpy as np
import pytest

from rag.core.errors import ConfigError, IndexStoreError
from rag.embed.quantize import quantize, score_rows
from rag.index import faiss_types
from rag.index.faiss_binary import BinaryFaissIndex
from rag.index.faiss_index import FaissIndex
from rag.index.faiss_types import MIN_APPROXIMATE
from tests.index.test_bm25_index import is_memory_mapped

DIM = 128


def clustered(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    centres = np.random.default_rng(0).standard_normal((256, dim))
    rng = np.random.default_rng(seed)
    points = centres[rng.integers(0, 256, n)] + 0.3 * rng.standard_normal((n, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


DATA = clustered(2_000, seed=0)
IDS = [f"b{i}" for i in range(len(DATA))]
QUERIES = clustered(20, seed=1)


def exact_top(queries, vectors, ids, k):
    scores = queries @ vectors.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), [[ids[i] for i in row] for row in order]


def test_rescoring_every_row_is_exact_float_search():
    index = BinaryFaissIndex(DIM, rescore_multiplier=len(DATA))
    index.add(IDS, DATA)
    scores, found = index.search(QUERIES, 10)
    expected_scores, expected = exact_top(QUERIES, DATA, IDS, 10)
    assert found == expected
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5)


def test_an_oversampled_hamming_shortlist_finds_the_float_top_1():
    index = BinaryFaissIndex(DIM)
    index.add(IDS, DATA)
    near = DATA[::100] + 0.02 * np.random.default_rng(2).standard_normal((20, DIM)).astype(np.float32)
    _, found = index.search(near, 10)
    _, expected = exact_top(near, DATA, IDS, 10)
    assert [row[0] for row in found] == [row[0] for row in expected]
    recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, expected, strict=True)])
    assert recall >= 0.8
    assert index.codes.dtype == np.uint8 and index.codes.shape == (len(DATA), DIM // 8)


@pytest.mark.parametrize("factory", ["BFlat", "BIVF16"])
def test_a_batch_split_across_threads_equals_each_query_alone(monkeypatch, factory):
    faiss = faiss_types.import_faiss()
    threads, pools = faiss.omp_get_max_threads(), []
    pool = faiss_types._search_pool
    monkeypatch.setattr(faiss_types, "_search_pool", lambda n: pools.append(n) or pool(n))
    index = BinaryFaissIndex(DIM, factory=factory, nprobe=4)
    index.add(IDS, DATA)
    queries = clustered(100, seed=3)
    faiss.omp_set_num_threads(3)
    try:
        scores, found = index.search(queries, 10)  # three blocks of at least 16 queries
    finally:
        faiss.omp_set_num_threads(threads)
    assert pools == [3]
    alone = [index.search(query[None], 10) for query in queries]
    assert found == [ids[0] for _, ids in alone]
    np.testing.assert_array_equal(scores, np.concatenate([s for s, _ in alone]))


def test_int8_rescoring_rows_keep_their_ranges_across_save_and_load(tmp_path):
    index = BinaryFaissIndex(DIM, rescore_precision="int8")
    index.add(IDS[:1_000], DATA[:1_000])
    ranges = index.ranges.copy()
    scores, found = index.search(QUERIES, 5)
    rows = index.rows[[IDS.index(i) for i in found[0]]]
    np.testing.assert_allclose(scores[0], score_rows(QUERIES[0], rows, ranges), rtol=1e-5)
    index.save(tmp_path / "gen1")
    assert (tmp_path / "gen1" / "ranges.npy").is_file()

    loaded = BinaryFaissIndex.load(tmp_path / "gen1")
    np.testing.assert_array_equal(loaded.ranges, ranges)
    loaded.add(IDS[1_000:], DATA[1_000:])  # later rows use the stored ranges
    np.testing.assert_array_equal(loaded.rows[1_000:], quantize(DATA[1_000:], "int8", ranges))
    np.testing.assert_array_equal(loaded.ranges, ranges)


def test_save_load_memory_maps_codes_and_rescoring_rows(tmp_path):
    index = BinaryFaissIndex(DIM)
    index.add(IDS, DATA)
    before = index.search(QUERIES, 10)
    index.save(tmp_path / "bin")
    files = {p.name for p in (tmp_path / "bin").iterdir()}
    assert files == {"codes.npy", "rows.npy", "ids.json", "manifest.json"}

    loaded = BinaryFaissIndex.load(tmp_path / "bin")
    assert is_memory_mapped(loaded.rows) and is_memory_mapped(loaded.codes)
    after = loaded.search(QUERIES, 10)
    assert after[1] == before[1]
    np.testing.assert_array_equal(after[0], before[0])

    loaded.remove([*IDS[:500], "unknown"])
    loaded.add(["new"], DATA[:1])
    _, found = loaded.search(QUERIES, 50)
    assert not set(IDS[:500]) & {i for row in found for i in row}
    _, top = loaded.search(DATA[:1], 1)
    assert top == [["new"]]
    with pytest.raises(IndexStoreError, match="exists"):
        loaded.save(tmp_path / "bin")


@pytest.mark.parametrize(("factory", "structure"), [("ivf", "BIVF256"), ("hnsw", "BHNSW32"), ("BIVF64", "BIVF64")])
def test_approximate_types_save_their_structure_and_keep_ivf_training(tmp_path, monkeypatch, factory, structure):
    calls = []
    train = faiss_types.train
    monkeypatch.setattr(faiss_types, "train", lambda index, sample, f: (calls.append(f), train(index, sample, f)))
    many = clustered(MIN_APPROXIMATE, seed=3)
    ids = [f"m{i}" for i in range(len(many))]
    index = BinaryFaissIndex(DIM, factory=factory, nprobe=32)
    index.add(ids, many)
    index.save(tmp_path / "gen1")
    assert index._built_as == structure
    assert (tmp_path / "gen1" / "faiss.index").is_file()

    loaded = BinaryFaissIndex.load(tmp_path / "gen1", nprobe=32)
    assert loaded.search(many[:5], 1)[1] == [[i] for i in ids[:5]]
    loaded.remove(ids[:5])
    assert all(row[0] not in ids[:5] for row in loaded.search(many[:5], 1)[1])
    assert calls == ([structure] if "IVF" in structure else [])  # trained once, never again


def test_empty_index_and_bad_input(tmp_path):
    index = BinaryFaissIndex()
    scores, found = index.search(QUERIES[:2], 3)
    assert scores.shape == (2, 0) and found == [[], []]
    index.save(tmp_path / "empty")
    assert len(BinaryFaissIndex.load(tmp_path / "empty")) == 0
    index.add(["a"], DATA[:1])
    with pytest.raises(IndexStoreError, match="dimension"):
        index.search(np.ones((1, 3), dtype=np.float32), 1)
    with pytest.raises(IndexStoreError, match="already"):
        index.add(["a"], DATA[:1])
    FaissIndex(DIM).save(tmp_path / "float")
    with pytest.raises(IndexStoreError, match="binary FAISS index"):
        BinaryFaissIndex.load(tmp_path / "float")


@pytest.mark.parametrize(
    "settings", [{"rescore_precision": "float16"}, {"rescore_multiplier": 0}, {"device": "tpu"}, {"factory": "ivfpq"}]
)
def test_bad_settings_are_config_errors(settings):
    with pytest.raises(ConfigError):
        index = BinaryFaissIndex(DIM, **settings)
        index.add(IDS, DATA)
        index.search(QUERIES, 1)


@pytest.mark.gpu
def test_binary_flat_on_gpu_matches_cpu(tmp_path):
    cpu, gpu = BinaryFaissIndex(DIM, device="cpu"), BinaryFaissIndex(DIM, device="cuda")
    for index in (cpu, gpu):
        index.add(IDS, DATA)
    assert "Gpu" in type(gpu._built()).__name__
    assert gpu.search(QUERIES, 10)[1] == cpu.search(QUERIES, 10)[1]
    gpu.save(tmp_path / "gpu")
    assert BinaryFaissIndex.load(tmp_path / "gpu", device="cpu").search(QUERIES, 10)[1] == cpu.search(QUERIES, 10)[1]
