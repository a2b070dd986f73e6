"""SpladeEmbedder with stand-in models (the real packaged model is exercised in tests/retrieve/test_splade.py)."""

import logging
import sys

import numpy as np
import pytest

from rag.core.errors import ConfigError, MissingDependencyError
from rag.embed.splade import SpladeEmbedder

VOCAB = 12


class Tokenizer:
    """Whitespace tokens plus [CLS] and [SEP]."""

    def __call__(self, texts, add_special_tokens=True, verbose=True):
        return {"input_ids": [[0, *range(len(t.split())), 0] for t in texts]}


class SparseModel:
    """Stands in for a loaded SparseEncoder: queries weigh term `len(text) % VOCAB`, documents term 1 and 2."""

    max_seq_length = 6
    tokenizer = Tokenizer()

    def __init__(self):
        self.calls = []

    def encode_query(self, texts, **kwargs):
        import torch

        self.calls.append(("query", list(texts), kwargs))
        dense = torch.zeros(len(texts), VOCAB)
        for row, text in enumerate(texts):
            dense[row, len(text) % VOCAB] = 1.5
        return dense.to_sparse()

    def encode_document(self, texts, **kwargs):
        import torch

        self.calls.append(("document", list(texts), kwargs))
        # row r: term 1 given twice as 0.125 (uncoalesced: it sums to 0.25) and term 2 = r (a stored zero in row 0)
        rows = [r for r in range(len(texts)) for _ in range(3)]
        columns = [1, 1, 2] * len(texts)
        values = [v for r in range(len(texts)) for v in (0.125, 0.125, float(r))]
        shape = (len(texts), VOCAB)
        indices = torch.tensor([rows, columns])
        values = torch.tensor(values, dtype=torch.float64)
        return torch.sparse_coo_tensor(indices, values, shape, check_invariants=True)


@pytest.fixture
def embedder():
    pytest.importorskip("torch")
    embedder = SpladeEmbedder(batch_size=7, max_active_dims=5)
    embedder._model = SparseModel()
    return embedder


def test_queries_and_documents_use_their_own_encode_methods_and_settings(embedder):
    queries = embedder.encode_queries(["abc", "abcde"])
    documents = embedder.encode_documents(["x", "y", "z"])
    assert queries.dtype == documents.dtype == np.float32
    assert queries.format == documents.format == "csr"
    np.testing.assert_array_equal(queries.toarray()[:, [3, 5]], [[1.5, 0], [0, 1.5]])
    assert queries.nnz == 2
    assert documents.shape == (3, VOCAB) and documents.nnz == 5  # no stored zero for row 0, term 2
    np.testing.assert_array_equal(documents.toarray()[:, 1:3], [[0.25, 0], [0.25, 1], [0.25, 2]])
    kinds = [(kind, kwargs["batch_size"], kwargs["max_active_dims"]) for kind, _, kwargs in embedder._model.calls]
    assert kinds == [("query", 7, 5), ("document", 7, 5)]
    assert embedder.dimension == VOCAB


def test_no_texts_give_an_empty_matrix_of_the_right_width(embedder):
    assert embedder.encode_documents([]).shape == (0, VOCAB)
    assert embedder.encode_queries([]).shape == (0, VOCAB)


def test_a_query_longer_than_the_model_reads_is_logged(embedder, caplog):
    with caplog.at_level(logging.WARNING, logger="rag.embed.truncation"):
        embedder.encode_queries(["four short words here", "one two three four five"])
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1  # 4 + 2 = 6 tokens fit, 5 + 2 = 7 do not
    assert "query of 7 tokens is longer than the 6" in warnings[0] and "truncated" in warnings[0]


@pytest.mark.parametrize("settings", [{"device": "tpu"}, {"batch_size": 0}, {"max_active_dims": 0}])
def test_bad_settings_are_config_errors(settings):
    with pytest.raises(ConfigError):
        SpladeEmbedder(**settings)


def test_missing_sentence_transformers_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(MissingDependencyError) as info:
        SpladeEmbedder().load()
    assert (info.value.package, info.value.extra) == ("sentence-transformers", "embed")
    assert "SPLADE" in str(info.value)
