import mmap
import random

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from rag.core.errors import IndexNotFoundError, IndexStoreError
from rag.embed.bm25 import BM25Tokenizer
from rag.index.bm25_index import BM25Index

TOKENIZE = BM25Tokenizer()
VOCABULARY = """cat dog bird fish horse mouse lion tiger whale shark river mountain forest desert ocean city
village road bridge tower engine wheel battery solar wind energy power grid market price stock bond bank loan
credit music piano violin guitar song opera poem novel author library paper ink python java rust compiler
kernel thread memory cache disk network packet router"""
WORDS = VOCABULARY.split()
QUERIES = [
    "cat dog",
    "the cat and the dog",  # "the" / "and" occur in most documents: their idf is floored
    "piano piano violin",  # a repeated query term counts twice
    "quantum entanglement",  # unknown terms
    "memory cache disk network kernel",
    "of",
    "",
]
PARAMS = [(1.5, 0.75, 0.25), (1.2, 0.5, 0.5), (2.0, 0.9, 0.1)]  # b=1 makes rank_bm25 divide 0/0 on empty docs


def make_corpus(n: int, seed: int, prefix: str) -> dict[str, str]:
    rng = random.Random(seed)
    corpus = {}
    for i in range(n):
        words = [rng.choice(WORDS[: rng.randint(5, len(WORDS))]) for _ in range(rng.randint(3, 40))]
        words += ["the"] * (rng.random() < 0.9) + ["and"] * rng.randint(0, 3) * (rng.random() < 0.7)
        words += ["of"] * (rng.random() < 0.55)
        rng.shuffle(words)
        corpus[f"{prefix}{i:03d}"] = " ".join(words)
    corpus[f"{prefix}empty"] = "!!! ..."  # a document without tokens
    return corpus


def build(corpus: dict[str, str], k1=1.5, b=0.75, epsilon=0.25) -> BM25Index:
    index = BM25Index(k1=k1, b=b, epsilon=epsilon)
    index.add(list(corpus), TOKENIZE.tokenize(corpus.values()))
    return index


def assert_parity(index: BM25Index, corpus: dict[str, str], k1=1.5, b=0.75, epsilon=0.25) -> None:
    ids = list(corpus)
    reference = BM25Okapi(TOKENIZE.tokenize(corpus.values()), k1=k1, b=b, epsilon=epsilon)
    assert sorted(index.ids) == sorted(ids)
    order = [index.ids.index(i) for i in ids]
    for query in QUERIES:
        tokens = TOKENIZE(query)
        expected = reference.get_scores(tokens)
        np.testing.assert_allclose(index.scores(tokens)[order], expected, rtol=0, atol=1e-6, err_msg=query)


def is_memory_mapped(array) -> bool:
    while array is not None:
        if isinstance(array, np.memmap | mmap.mmap):
            return True
        array = getattr(array, "base", None)
    return False


@pytest.mark.parametrize(("k1", "b", "epsilon"), PARAMS)
def test_scores_equal_rank_bm25(k1, b, epsilon):
    corpus = make_corpus(50, seed=1, prefix="d")
    reference = BM25Okapi(TOKENIZE.tokenize(corpus.values()), k1=k1, b=b, epsilon=epsilon)
    floor = epsilon * reference.average_idf
    assert reference.idf["the"] == floor and reference.idf["and"] == floor  # the floor is exercised
    assert any(reference.get_scores(TOKENIZE(q)).any() for q in QUERIES)
    assert_parity(build(corpus, k1, b, epsilon), corpus, k1, b, epsilon)


def test_scores_after_remove_and_add_equal_a_fresh_rank_bm25():
    corpus = make_corpus(50, seed=2, prefix="d")
    corpus["dunique"] = "platypus the"  # its only document goes: the term must leave the idf average
    index = build(corpus)
    gone = ["d003", "d010", "d011", "d027", "d049", "dempty", "dunique"]
    index.remove([*gone, "never-indexed"])
    for doc_id in gone:
        del corpus[doc_id]
    extra = make_corpus(12, seed=3, prefix="n")
    extra["nnew"] = "zebra zebra quasar the"  # new terms grow the vocabulary
    index.add(list(extra), TOKENIZE.tokenize(extra.values()))
    corpus.update(extra)
    assert len(index) == len(corpus)
    assert_parity(index, corpus)
    np.testing.assert_allclose(
        index.scores(["zebra"])[index.ids.index("nnew")],
        BM25Okapi(TOKENIZE.tokenize(corpus.values())).get_scores(["zebra"])[list(corpus).index("nnew")],
    )


def test_remove_drops_terms_no_document_uses():
    index = build({"a": "cat dog", "b": "dog bird"})
    index.remove(["a"])
    assert set(index.vocabulary) == {"dog", "bird"}
    assert sorted(index.vocabulary.values()) == [0, 1]
    assert_parity(index, {"b": "dog bird"})


def test_remove_everything_then_add_again():
    index = build({"a": "cat dog", "b": "dog bird"})
    index.remove(["a", "b"])
    assert len(index) == 0 and index.vocabulary == {}
    assert index.scores(["cat"]).shape == (0,)
    assert index.search(["cat"], 5) == []
    index.add(["c"], [["cat"]])
    assert index.search(["cat"], 5) == [("c", pytest.approx(index.scores(["cat"])[0]))]


def test_adding_an_existing_or_repeated_id_is_refused():
    index = build({"a": "cat"})
    with pytest.raises(IndexStoreError, match="already"):
        index.add(["a"], [["dog"]])
    with pytest.raises(IndexStoreError, match="repeated"):
        index.add(["b", "b"], [["dog"], ["dog"]])


def test_search_is_top_k_by_score_with_ties_broken_by_id():
    corpus = make_corpus(50, seed=4, prefix="d")
    corpus.update({"z-twin": "cat cat whale", "a-twin": "cat cat whale", "m-twin": "cat cat whale"})
    index = build(corpus)
    query = TOKENIZE("cat whale")
    scores = dict(zip(index.ids, index.scores(query), strict=True))
    matching = {i for i, text in corpus.items() if {"cat", "whale"} & set(TOKENIZE(text))}
    expected = sorted(matching, key=lambda i: (-scores[i], i))
    assert len(expected) > 7
    for k in (1, 2, 3, 7, 1000):
        found = index.search(query, k)
        assert [i for i, _ in found] == expected[:k]
        assert [s for _, s in found] == [scores[i] for i in expected[:k]]
    twins = [i for i, _ in index.search(query, 1000) if i.endswith("twin")]
    assert twins == ["a-twin", "m-twin", "z-twin"]


@pytest.mark.parametrize("k", [1, 5, 20, 45, 60, 1000])
def test_search_equals_sorting_every_document_sharing_a_term(k):
    corpus = make_corpus(60, seed=11, prefix="d")
    index = build(corpus)
    for text in QUERIES:
        query = TOKENIZE(text)
        scores = dict(zip(index.ids, index.scores(query), strict=True))
        matching = [i for i, doc in corpus.items() if set(query) & set(TOKENIZE(doc))]
        expected = sorted(matching, key=lambda i: (-scores[i], i))[:k]
        assert index.search(query, k) == [(i, scores[i]) for i in expected], text


def test_search_returns_only_documents_sharing_a_term_even_on_tiny_corpora():
    index = build({"a": "cat", "b": "dog"})
    assert index.scores(["cat"]).tolist() == [0.0, 0.0]  # idf is log(1.5 / 1.5): BM25Okapi scores 0
    assert [i for i, _ in index.search(["cat"], 10)] == ["a"]
    assert index.search(["unknown"], 10) == []
    assert index.search(["cat"], 0) == []


def test_save_load_round_trip_is_identical_and_memory_mapped(tmp_path):
    corpus = make_corpus(50, seed=5, prefix="d")
    index = build(corpus, k1=1.2, b=0.5, epsilon=0.5)
    index.save(tmp_path / "bm25")
    assert {p.name for p in (tmp_path / "bm25").iterdir()} == {
        "data.npy",
        "indices.npy",
        "indptr.npy",
        "doc_lengths.npy",
        "ids.json",
        "vocabulary.json",
        "manifest.json",
    }
    loaded = BM25Index.load(tmp_path / "bm25", k1=1.2, b=0.5, epsilon=0.5)
    assert loaded.ids == index.ids
    assert loaded.vocabulary == index.vocabulary
    assert is_memory_mapped(loaded.term_frequencies.data)
    assert is_memory_mapped(loaded.term_frequencies.indices)
    assert is_memory_mapped(loaded.doc_lengths)
    for query in QUERIES:
        np.testing.assert_array_equal(loaded.scores(TOKENIZE(query)), index.scores(TOKENIZE(query)))
    assert_parity(loaded, corpus, k1=1.2, b=0.5, epsilon=0.5)


def test_a_loaded_index_can_be_updated_without_touching_its_files(tmp_path):
    corpus = make_corpus(20, seed=6, prefix="d")
    build(corpus).save(tmp_path / "one")
    before = {p.name: p.read_bytes() for p in (tmp_path / "one").iterdir()}
    loaded = BM25Index.load(tmp_path / "one")
    loaded.remove(["d000", "d001"])
    loaded.add(["x"], [["cat", "zebra"]])
    del corpus["d000"], corpus["d001"]
    corpus["x"] = "cat zebra"
    assert_parity(loaded, corpus)
    assert {p.name: p.read_bytes() for p in (tmp_path / "one").iterdir()} == before
    loaded.save(tmp_path / "two")
    assert_parity(BM25Index.load(tmp_path / "two"), corpus)


def test_empty_index_round_trip(tmp_path):
    BM25Index().save(tmp_path / "empty")
    loaded = BM25Index.load(tmp_path / "empty")
    assert len(loaded) == 0
    assert loaded.search(["cat"], 3) == []


def test_save_never_overwrites(tmp_path):
    index = build({"a": "cat"})
    index.save(tmp_path)
    with pytest.raises(IndexStoreError, match="exists"):
        index.save(tmp_path)


def test_load_of_a_missing_index(tmp_path):
    with pytest.raises(IndexNotFoundError):
        BM25Index.load(tmp_path / "nothing")


def test_load_refuses_another_format(tmp_path):
    (tmp_path / "manifest.json").write_text('{"format": "something-else"}')
    with pytest.raises(IndexStoreError, match="not a BM25 index"):
        BM25Index.load(tmp_path)
