import pytest

from rag.core.errors import ConfigError, IndexStoreError
from rag.retrieve.bm25 import BM25Retriever
from tests.retrieve.contract import CHUNKS, DictLookup, chunk, round_trip


def test_full_contract_round_trip(tmp_path):
    round_trip(lambda: BM25Retriever(top_k=3), tmp_path)


def test_ties_are_broken_by_id_and_top_k_is_respected():
    twins = [chunk(i, "identical words here") for i in ("b", "c", "a")]
    lookup = DictLookup([*twins, *CHUNKS])
    retriever = BM25Retriever()
    retriever.load(None, lookup)
    retriever.add([*twins, *CHUNKS])
    assert [h.id for h in retriever.run(query="identical words")["hits"]] == ["a", "b", "c"]
    assert [h.id for h in retriever.run(query="identical words", top_k=2)["hits"]] == ["a", "b"]


def test_chunks_already_indexed_are_skipped():
    retriever = BM25Retriever()
    retriever.load(None, DictLookup(CHUNKS))
    retriever.add(CHUNKS[:2])
    retriever.add([CHUNKS[1], CHUNKS[2], CHUNKS[2]])
    assert len(retriever) == 3


def test_stopwords_setting_changes_tokenization():
    lookup = DictLookup(CHUNKS)
    plain, filtered = BM25Retriever(), BM25Retriever(stopwords="english")
    for retriever in (plain, filtered):
        retriever.load(None, lookup)
        retriever.add(CHUNKS)
    assert plain.run(query="the")["hits"]
    assert filtered.run(query="the")["hits"] == []


def test_index_settings_leave_out_top_k():
    settings = BM25Retriever(top_k=5, k1=1.2).index_settings()
    assert settings == {"k1": 1.2, "b": 0.75, "epsilon": 0.25, "lowercase": True, "stopwords": None, "stemmer": None}


def test_use_before_load_is_an_error():
    with pytest.raises(IndexStoreError, match="load"):
        BM25Retriever().run(query="cats")


@pytest.mark.parametrize(
    "settings", [{"top_k": 0}, {"stopwords": "klingon"}, {"stemmer": "porter"}], ids=["top_k", "stopwords", "stemmer"]
)
def test_bad_settings_are_config_errors(settings):
    with pytest.raises(ConfigError):
        BM25Retriever(**settings)
