"""Reading BEIR-format folders, and what is said when one is broken."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.core.errors import InputPathError
from rag.eval.beir import load_beir
from tests.eval.conftest import write_beir

CORPUS = [{"_id": "d1", "title": "Cats", "text": "Cats purr."}, {"_id": "d2", "text": "Dogs bark."}]
QUERIES = [{"_id": "q1", "text": "purring"}, {"_id": "q2", "text": "barking"}, {"_id": "q3", "text": "unjudged"}]


def test_reads_corpus_queries_and_judged_queries_only(tmp_path: Path) -> None:
    folder = write_beir(tmp_path / "ds", CORPUS, QUERIES, [("q1", "d1", 1), ("q2", "d2", 2), ("q2", "d1", 0)])
    dataset = load_beir(folder)
    assert dataset.name == "ds" and dataset.split == "test"
    assert dataset.corpus["d2"] == ("", "Dogs bark.")
    assert dataset.document_text("d1") == "Cats\n\nCats purr." and dataset.document_text("d2") == "Dogs bark."
    assert list(dataset.queries) == ["q1", "q2"]  # q3 has no relevant document
    assert dataset.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2}}  # relevance 0 is not relevant
    assert list(dataset.first_queries(1).qrels) == ["q1"]


def test_the_corpus_hash_follows_its_bytes(tmp_path: Path) -> None:
    a = load_beir(write_beir(tmp_path / "a", CORPUS, QUERIES, [("q1", "d1", 1)]))
    b = load_beir(write_beir(tmp_path / "b", CORPUS[:1], QUERIES, [("q1", "d1", 1)]))
    assert a.corpus_sha256 != b.corpus_sha256


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda f: (f / "corpus.jsonl").unlink(), r"corpus.jsonl is missing"),
        (lambda f: (f / "qrels" / "test.tsv").rename(f / "qrels" / "dev.tsv"), r"test.tsv is missing; splits.*dev"),
        (lambda f: (f / "corpus.jsonl").write_text('{"_id": "d1"}\nnot json\n'), r"corpus.jsonl:2 is not valid JSON"),
        (lambda f: (f / "corpus.jsonl").write_text('{"title": "x"}\n'), r"corpus.jsonl:1 has no '_id'"),
        (lambda f: (f / "qrels" / "test.tsv").write_text("q1\td1\n"), r"test.tsv:1 should be"),
        (lambda f: (f / "qrels" / "test.tsv").write_text("q9\td1\t1\n"), r"judges query 'q9'"),
    ],
)
def test_broken_folders_are_named_precisely(tmp_path: Path, breakage, message: str) -> None:  # type: ignore[no-untyped-def]
    folder = write_beir(tmp_path / "ds", CORPUS, QUERIES, [("q1", "d1", 1)])
    breakage(folder)
    with pytest.raises(InputPathError, match=message):
        load_beir(folder)


def test_a_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputPathError, match="does not exist"):
        load_beir(tmp_path / "nope")
