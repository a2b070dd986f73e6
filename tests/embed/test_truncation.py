"""Over-long queries are reported, for any sentence-transformers-like model."""

from __future__ import annotations

import logging

from rag.embed.truncation import warn_long_queries


class WordModel:
    max_seq_length = 4

    @staticmethod
    def tokenizer(texts: list[str], add_special_tokens: bool, verbose: bool) -> dict[str, list[list[int]]]:
        return {"input_ids": [[0, *range(len(t.split())), 0] for t in texts]}


def test_only_queries_over_the_limit_are_reported(caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.WARNING, logger="rag.embed.truncation"):
        warn_long_queries(WordModel(), ["two words", "three words here"], "word-model")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and messages[0].startswith("query of 5 tokens is longer than the 4 that model word-model")


def test_models_without_a_limit_or_a_callable_tokenizer_are_not_checked(caplog) -> None:  # type: ignore[no-untyped-def]
    static = WordModel()
    static.max_seq_length = None  # type: ignore[assignment]
    no_tokenizer = type("M", (), {"max_seq_length": 2, "tokenizer": object()})()
    with caplog.at_level(logging.WARNING, logger="rag.embed.truncation"):
        warn_long_queries(static, ["a b c d e f"], "static")
        warn_long_queries(no_tokenizer, ["a b c d e f"], "other")
    assert caplog.records == []
