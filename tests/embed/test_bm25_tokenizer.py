import sys

import numpy as np
import pytest

from rag.core.errors import ConfigError, MissingDependencyError
from rag.embed.bm25 import ENGLISH_STOPWORDS, BM25Tokenizer, term_frequencies


def test_default_lowercases_and_splits_on_word_characters():
    assert BM25Tokenizer()("The Cat's hat-trick, 42 times!") == ["the", "cat", "s", "hat", "trick", "42", "times"]


def test_case_is_kept_when_lowercase_is_off():
    assert BM25Tokenizer(lowercase=False)("The Cat") == ["The", "Cat"]


def test_custom_token_pattern():
    assert BM25Tokenizer(token_pattern=r"[a-z]{3,}")("an ox and a cat") == ["and", "cat"]


def test_invalid_token_pattern_is_a_config_error():
    with pytest.raises(ConfigError, match="not a valid regex"):
        BM25Tokenizer(token_pattern="(")


def test_english_stopwords_are_dropped():
    assert {"the", "and", "of"} <= ENGLISH_STOPWORDS
    assert BM25Tokenizer(stopwords="english")("The cat and the hat of doom") == ["cat", "hat", "doom"]


def test_custom_stopword_list():
    assert BM25Tokenizer(stopwords=["cat"])("the cat sat") == ["the", "sat"]


def test_unknown_stopword_name_is_a_config_error():
    with pytest.raises(ConfigError, match="stopwords"):
        BM25Tokenizer(stopwords="klingon")


def test_unknown_stemmer_is_a_config_error():
    with pytest.raises(ConfigError, match="stemmer"):
        BM25Tokenizer(stemmer="porter")


def test_snowball_without_its_package_names_package_and_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "snowballstemmer", None)
    with pytest.raises(MissingDependencyError) as info:
        BM25Tokenizer(stemmer="snowball")
    assert info.value.package == "snowballstemmer"
    assert info.value.extra == "bm25-stem"
    assert "rag[bm25-stem]" in str(info.value)


def test_snowball_stems_after_stopwords():
    pytest.importorskip("snowballstemmer")
    assert BM25Tokenizer(stopwords="english", stemmer="snowball")("The running cats") == ["run", "cat"]


def test_tokenize_many():
    assert BM25Tokenizer().tokenize(["a b", "", "C"]) == [["a", "b"], [], ["c"]]


def test_term_frequencies_counts_and_grows_the_vocabulary():
    vocabulary: dict[str, int] = {}
    first = term_frequencies([["cat", "sat", "cat"], []], vocabulary)
    assert vocabulary == {"cat": 0, "sat": 1}
    assert first.shape == (2, 2)
    np.testing.assert_array_equal(first.toarray(), [[2, 1], [0, 0]])

    second = term_frequencies([["dog", "cat"]], vocabulary)
    assert vocabulary == {"cat": 0, "sat": 1, "dog": 2}
    assert second.shape == (1, 3)
    np.testing.assert_array_equal(second.toarray(), [[1, 0, 1]])


def test_term_frequencies_of_nothing():
    vocabulary = {"cat": 0}
    empty = term_frequencies([], vocabulary)
    assert empty.shape == (0, 1)
    assert empty.nnz == 0
