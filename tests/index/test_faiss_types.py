import numpy as np
import pytest

from rag.core.errors import ConfigError
from rag.embed.quantize import score_rows
from rag.index import faiss_types
from rag.index.faiss_index import FaissIndex
from rag.index.faiss_types import MIN_APPROXIMATE, ivf_lists, resolve_factory
from tests.index.test_bm25_index import is_memory_mapped

DIM = 32
N = MIN_APPROXIMATE + 2_000  # large enough for the presets to pick approximate types


def clustered(n: int, seed: int = 0, dim: int = DIM, spread: float = 0.3) -> np.ndarray:
    """Normalized points around 256 random centres (the same centres for every n and seed)."""
    centres = np.random.default_rng(0).standard_normal((256, dim))
    rng = np.random.default_rng(seed)
    points = centres[rng.integers(0, 256, n)] + spread * rng.standard_normal((n, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


DATA = clustered(N)
IDS = [f"d{i}" for i in range(N)]
QUERIES = clustered(30, seed=1)


@pytest.fixture(autouse=True)
def small_training_sample(monkeypatch):
    monkeypatch.setattr(faiss_types, "TRAIN_SAMPLE", 4_000)  # PQ training time grows with it


def recall_at_10(index, ids=IDS, vectors=DATA, queries=QUERIES, metric="ip") -> float:
    scores = queries @ vectors.T
    if metric == "l2":
        scores = 2 * scores - (vectors**2).sum(axis=1)  # -|q - v|^2 up to a per-query constant
    exact = np.argsort(-scores, axis=1)[:, :10]
    _, found = index.search(queries, 10)
    return float(np.mean([len(set(f) & {ids[i] for i in row}) / 10 for f, row in zip(found, exact, strict=True)]))


@pytest.fixture
def count_training(monkeypatch):
    calls = []
    train = faiss_types.train

    def counting(index, sample, factory):
        calls.append(factory)
        train(index, sample, factory)

    monkeypatch.setattr(faiss_types, "train", counting)
    return calls


@pytest.mark.parametrize(
    ("factory", "precision", "structure", "minimum"),
    [
        ("flat", "float32", "Flat", 1.0),
        ("flat", "float16", "Flat", 0.98),
        ("flat", "int8", "Flat", 0.9),
        ("ivf", "float32", "IVF256,Flat", 0.9),
        ("ivf", "int8", "IVF256,SQ8", 0.85),
        ("ivfpq", "float32", "IVF256,PQ4np", 0.9),
        ("hnsw", "float32", "HNSW32", 0.95),
        ("hnsw", "float16", "HNSW32,SQfp16", 0.95),
        ("IVF64,Flat", "float32", "IVF64,Flat", 0.9),
        ("HNSW16", "float32", "HNSW16", 0.9),
    ],
)
def test_each_type_finds_the_true_neighbours(factory, precision, structure, minimum, count_training):
    index = FaissIndex(DIM, factory=factory, precision=precision)
    index.add(IDS, DATA)
    assert recall_at_10(index) >= minimum
    assert index._built_as == structure
    trained = "IVF" in structure
    assert count_training == ([structure] if trained else [])
    assert index.vectors.dtype == np.dtype(precision)
    scores, _ = index.search(QUERIES, 10)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first


def test_presets_size_themselves_to_the_corpus():
    assert resolve_factory("ivf", 500, 384) == resolve_factory("hnsw", 500, 384) == "Flat"
    assert resolve_factory("ivf", 100_000, 384) == "IVF1024,Flat"
    assert resolve_factory("ivf", 100_000, 384, "int8") == "IVF1024,SQ8"
    assert resolve_factory("ivfpq", 100_000, 384) == "IVF1024,PQ48np"
    assert resolve_factory("hnsw", 100_000, 384, "float16") == "HNSW32,SQfp16"
    assert resolve_factory("ivf", 100_000, 384, binary=True) == "BIVF1024"
    assert resolve_factory("IVF7,Flat", 10, 384) == "IVF7,Flat"
    assert [ivf_lists(n) for n in (10_000, 40_000, 160_000, 1_000_000)] == [256, 1024, 2048, 4096]
    with pytest.raises(ConfigError, match="binary"):
        resolve_factory("ivfpq", 100_000, 384, binary=True)


def test_an_explicit_factory_with_too_few_vectors_to_train_is_a_config_error():
    index = FaissIndex(DIM, factory="IVF1024,Flat")
    index.add(IDS[:500], DATA[:500])
    with pytest.raises(ConfigError, match="cannot be trained on 500 vectors"):
        index.search(QUERIES, 3)


def test_save_and_load_reuse_the_trained_structure(tmp_path, count_training):
    index = FaissIndex(DIM, factory="ivf", precision="int8", nprobe=16)
    index.add(IDS, DATA)
    before = index.search(QUERIES, 10)
    index.save(tmp_path / "ivf")
    assert (tmp_path / "ivf" / "faiss.index").is_file() and (tmp_path / "ivf" / "ranges.npy").is_file()
    assert count_training == ["IVF256,SQ8"]

    loaded = FaissIndex.load(tmp_path / "ivf", nprobe=16)
    assert is_memory_mapped(loaded.vectors)
    np.testing.assert_array_equal(loaded.ranges, index.ranges)
    after = loaded.search(QUERIES, 10)
    assert after[1] == before[1]
    np.testing.assert_allclose(after[0], before[0], rtol=1e-6)
    assert count_training == ["IVF256,SQ8"]  # not trained again


def test_additions_after_loading_extend_the_saved_structure(tmp_path, monkeypatch):
    index = FaissIndex(DIM, factory="hnsw")
    index.add(IDS[:-100], DATA[:-100])
    index.save(tmp_path / "gen1")
    loaded = FaissIndex.load(tmp_path / "gen1")
    monkeypatch.setattr(FaissIndex, "_empty", lambda self, factory: pytest.fail("the graph was rebuilt"))
    loaded.add(IDS[-100:], DATA[-100:])
    assert loaded._faiss.ntotal == N  # the saved graph, extended
    assert recall_at_10(loaded) >= 0.95
    loaded.save(tmp_path / "gen2")
    assert FaissIndex.load(tmp_path / "gen2").search(QUERIES, 5)[1] == loaded.search(QUERIES, 5)[1]


@pytest.mark.parametrize("factory", ["ivf", "ivfpq"])
def test_removal_keeps_the_training_and_drops_the_rows(tmp_path, factory, count_training):
    index = FaissIndex(DIM, factory=factory)
    index.add(IDS, DATA)
    index.save(tmp_path / "gen1")
    loaded = FaissIndex.load(tmp_path / "gen1")
    gone = set(IDS[:1_000])
    loaded.remove(gone)
    keep = [i for i, item in enumerate(IDS) if item not in gone]
    assert len(loaded) == len(keep)
    assert recall_at_10(loaded, [IDS[i] for i in keep], DATA[keep]) >= 0.8
    assert not gone & {i for row in loaded.search(DATA[:50], 20)[1] for i in row}
    assert len(count_training) == 1  # trained once, before saving


def test_a_preset_retrains_when_the_corpus_outgrows_its_parameters(count_training):
    index = FaissIndex(DIM, factory="ivf")
    index.add(IDS, DATA)
    index.search(QUERIES, 1)
    more = clustered(30_000, seed=2)
    index.add([f"m{i}" for i in range(len(more))], more)
    index.search(QUERIES, 1)
    assert count_training == ["IVF256,Flat", "IVF1024,Flat"]


def test_l2_with_rescoring_returns_exact_squared_distances():
    index = FaissIndex(DIM, metric="l2", factory="ivfpq", rescore_multiplier=8)
    index.add(IDS, DATA)
    scores, found = index.search(QUERIES[:3], 5)
    rows = [[IDS.index(i) for i in row] for row in found]
    expected = [-((DATA[r] - q) ** 2).sum(axis=1) for q, r in zip(QUERIES[:3], rows, strict=True)]
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    assert recall_at_10(index, metric="l2") >= 0.8


def test_device_settings():
    with pytest.raises(ConfigError, match="device"):
        FaissIndex(DIM, device="tpu")
    with pytest.raises(ConfigError, match="precision"):
        FaissIndex(DIM, precision="binary")
    faiss = faiss_types.import_faiss()
    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        pytest.skip("this FAISS build sees a GPU")
    index = FaissIndex(DIM, device="cuda")
    index.add(IDS[:10], DATA[:10])
    with pytest.raises(ConfigError, match="cuda"):
        index.search(QUERIES, 1)
    auto = FaissIndex(DIM, device="auto")
    auto.add(IDS[:10], DATA[:10])
    assert len(auto.search(QUERIES, 1)[1][0]) == 1


@pytest.mark.gpu
@pytest.mark.parametrize("factory", ["flat", "ivf"])
def test_gpu_search_matches_cpu_and_saves_through_a_cpu_copy(tmp_path, factory):
    cpu, gpu = FaissIndex(DIM, factory=factory, device="cpu"), FaissIndex(DIM, factory=factory, device="cuda")
    for index in (cpu, gpu):
        index.add(IDS, DATA)
    assert "Gpu" in type(gpu._built()).__name__
    assert recall_at_10(gpu) >= 0.9
    gpu.save(tmp_path / "gpu")
    loaded = FaissIndex.load(tmp_path / "gpu", device="cpu")
    assert recall_at_10(loaded) >= 0.9


def test_nprobe_and_ef_search_take_effect():
    uniform = np.random.default_rng(5).standard_normal((N, DIM)).astype(np.float32)
    recalls = {}
    for nprobe in (1, 64):
        index = FaissIndex(DIM, factory="IVF64,Flat", nprobe=nprobe)
        index.add(IDS, uniform)
        recalls[nprobe] = recall_at_10(index, vectors=uniform)
    assert recalls[64] == 1.0 > recalls[1] + 0.2
    index = FaissIndex(DIM, factory="HNSW4", ef_search=1)
    index.add(IDS, uniform)
    low = recall_at_10(index, vectors=uniform)
    index.ef_search = 400
    assert recall_at_10(index, vectors=uniform) > low + 0.1


def test_int8_flat_searches_the_stored_codes_themselves():
    index = FaissIndex(DIM, precision="int8")
    index.add(IDS[:2_000], DATA[:2_000])
    scores, found = index.search(QUERIES, 5)
    faiss = faiss_types.import_faiss()
    codes = faiss.vector_to_array(index._faiss.codes).reshape(2_000, DIM)
    np.testing.assert_array_equal(codes, index.vectors.view(np.uint8) ^ 0x80)  # bucket = code + 128
    rows = [[IDS.index(i) for i in row] for row in found]
    expected = [score_rows(q, index.vectors[r], index.ranges) for q, r in zip(QUERIES, rows, strict=True)]
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
