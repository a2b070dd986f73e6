import numpy as np
import pytest

import rag.retrieve.dense
from rag.core.errors import ConfigError, IncompatibleIndexError
from rag.embed.quantize import quantize
from rag.index.faiss_binary import BinaryFaissIndex
from rag.index.faiss_index import FaissIndex
from rag.retrieve.dense import DenseRetriever
from tests.index.test_bm25_index import is_memory_mapped
from tests.retrieve.contract import DictLookup, chunk
from tests.retrieve.test_dense_retriever import PASSAGES, HashEmbedder

TOPICS = [
    "cats purr and chase mice on the windowsill",
    "stock markets fell after interest rates rose",
    "the volcano erupted with ash and lava",
    "python lists support slicing and sorting",
    "whales and sharks swim in the deep ocean",
    "the piano has keys and hammers and strings",
    "rust checks memory safety when compiling",
    "bread dough rises with yeast in a warm oven",
]
CHUNKS = [chunk(f"t{n}-{v}", f"{text} variant {v} extra{v}") for n, text in enumerate(TOPICS) for v in range(30)]
DISTINCT = [chunk(f"t{n}", text) for n, text in enumerate(TOPICS)]


@pytest.fixture(autouse=True)
def hashed(monkeypatch):
    monkeypatch.setattr(rag.retrieve.dense, "SentenceTransformerEmbedder", HashEmbedder)
    monkeypatch.setattr(HashEmbedder, "embedded", [])


def built(tmp_path, chunks=CHUNKS, **settings) -> DenseRetriever:
    retriever = DenseRetriever(**settings)
    retriever.load(None, DictLookup(chunks))
    retriever.add(chunks)
    retriever.save(tmp_path / "index")
    reopened = DenseRetriever(**settings)
    reopened.load(tmp_path / "index", DictLookup(chunks))
    return reopened


@pytest.mark.parametrize("precision", ["float16", "int8", "binary"])
def test_each_precision_finds_the_same_top_1_as_float_on_distinct_passages(tmp_path, precision):
    reference = built(tmp_path / "float", DISTINCT)
    retriever = built(tmp_path / precision, DISTINCT, precision=precision)
    for text in TOPICS:
        query = text.split(" and ")[0]
        expected = reference.run(query=query, top_k=1)["hits"][0]
        hit = retriever.run(query=query, top_k=1)["hits"][0]
        assert hit.id == expected.id
        if precision != "int8":  # float16 rows, or binary rescored against float rows: near-float scores
            assert hit.score == pytest.approx(expected.score, abs=2e-3)


@pytest.mark.parametrize(("precision", "minimum"), [("int8", 0.9), ("binary", 0.7)])
def test_near_duplicates_keep_most_of_the_float_top_5(tmp_path, precision, minimum):
    reference = built(tmp_path / "float")
    retriever = built(tmp_path / precision, precision=precision)
    overlap = []
    for text in TOPICS:
        query = text.split(" and ")[0]
        expected = {h.id for h in reference.run(query=query, top_k=5)["hits"]}
        overlap.append(len(expected & {h.id for h in retriever.run(query=query, top_k=5)["hits"]}) / 5)
    assert np.mean(overlap) >= minimum


def test_binary_rescores_against_memory_mapped_float_rows(tmp_path):
    retriever = built(tmp_path, precision="binary", rescore_multiplier=2)
    index = retriever._index
    assert isinstance(index, BinaryFaissIndex)
    assert is_memory_mapped(index.rows) and index.rows.dtype == np.float32
    query = HashEmbedder("", "", 1, True).encode_queries(["volcano ash"])[0]
    hits = retriever.run(query="volcano ash", top_k=3)["hits"]
    rows = np.asarray(index.rows)[[index.ids.index(h.id) for h in hits]]
    np.testing.assert_allclose([h.score for h in hits], rows @ query, rtol=1e-5)


def test_int8_ranges_are_stored_and_reused_after_loading(tmp_path):
    retriever = built(tmp_path, precision="int8")
    index = retriever._index
    assert isinstance(index, FaissIndex) and index.vectors.dtype == np.int8
    ranges = index.ranges.copy()
    extra = chunk("extra", "a brand new passage about volcano lava")
    retriever._chunks = DictLookup([*CHUNKS, extra])
    retriever.add([extra])
    np.testing.assert_array_equal(index.ranges, ranges)
    vector = HashEmbedder("", "", 1, True).encode_documents([extra.text])
    np.testing.assert_array_equal(index.vectors[-1:], quantize(vector, "int8", ranges))
    assert retriever.run(query="brand new passage", top_k=1)["hits"][0].id == "extra"


def test_truncate_dim_keeps_leading_dimensions_renormalized(tmp_path):
    retriever = built(tmp_path, truncate_dim=16)
    index = retriever._index
    assert index.dimension == 16
    norms = np.linalg.norm(index.vectors, axis=1)
    assert (norms > 0).sum() > len(CHUNKS) / 2  # hashed words: some texts have none in the first 16 dimensions
    np.testing.assert_allclose(norms[norms > 0], 1.0, rtol=1e-5)
    assert retriever.run(query="volcano lava", top_k=1)["hits"][0].id.startswith("t2-")


def test_presets_and_search_settings_reach_the_index(tmp_path):
    retriever = built(tmp_path, factory="hnsw", ef_search=128, nprobe=4, rescore_multiplier=3)
    index = retriever._index
    assert (index.factory, index.ef_search, index.nprobe, index.rescore_multiplier) == ("hnsw", 128, 4, 3)
    assert retriever.run(query="piano keys", top_k=1)["hits"][0].id.startswith("t5-")


def test_index_settings_hold_what_shapes_the_vectors_and_nothing_else():
    base = {"model": "m", "normalize": True, "precision": "float32", "truncate_dim": None, "factory": "Flat"}
    assert DenseRetriever(model="m").index_settings() == base
    assert DenseRetriever(model="m", rescore_multiplier=9, nprobe=3, index_device="cpu").index_settings() == base
    assert DenseRetriever(model="m", precision="int8", truncate_dim=64, factory="ivf").index_settings() == {
        **base,
        "precision": "int8",
        "truncate_dim": 64,
        "factory": "ivf",
    }
    binary = DenseRetriever(model="m", precision="binary", rescore_precision="int8").index_settings()
    assert binary == {**base, "precision": "binary", "rescore_precision": "int8"}


@pytest.mark.parametrize(("built_with", "asked"), [("float32", "int8"), ("binary", "float32"), ("int8", "binary")])
def test_an_index_of_another_precision_is_refused(tmp_path, built_with, asked):
    built(tmp_path, precision=built_with)
    with pytest.raises(IncompatibleIndexError, match=f"holds {built_with} vectors"):
        DenseRetriever(precision=asked).load(tmp_path / "index", DictLookup(CHUNKS))


@pytest.mark.parametrize(
    "settings",
    [
        {"precision": "int4"},
        {"truncate_dim": 0},
        {"rescore_multiplier": 0},
        {"index_device": "tpu"},
        {"precision": "binary", "rescore_precision": "binary"},
    ],
)
def test_bad_settings_are_config_errors(settings):
    with pytest.raises(ConfigError):
        DenseRetriever(**settings)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("precision", ["int8", "binary"])
def test_minilm_quantized_search_agrees_with_float(tmp_path, monkeypatch, precision):
    monkeypatch.undo()  # the real embedder
    lookup = DictLookup(PASSAGES)
    ranked = {}
    for name in ("float32", precision):
        retriever = DenseRetriever(device="cpu", precision=name)
        retriever.load(None, lookup)
        retriever.add(PASSAGES)
        retriever.save(tmp_path / name)
        reopened = DenseRetriever(device="cpu", precision=name)
        reopened.load(tmp_path / name, lookup)
        ranked[name] = reopened.run(query="What do kittens like to do?")["hits"]
    assert ranked[precision][0].id == ranked["float32"][0].id == "cat"
    assert [h.id for h in ranked[precision]] == [h.id for h in ranked["float32"]]


def test_int8_calibrates_on_a_single_first_chunk(tmp_path):
    first, *rest = DISTINCT
    retriever = DenseRetriever(precision="int8")
    retriever.load(None, DictLookup(DISTINCT))
    retriever.add([first])
    retriever.add(rest)
    hits = retriever.run(query="volcano ash", top_k=2)["hits"]
    assert hits[0].id == "t2"
