"""Lexical retrieval with BM25 (Okapi), kept up to date incrementally."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from rag.core.errors import ConfigError
from rag.core.filters import Filter
from rag.core.types import Chunk, ChunkLookup, Hit
from rag.embed.bm25 import STEMMERS, BM25Tokenizer
from rag.index.bm25_index import BM25Index
from rag.retrieve.base import Retriever

__all__ = ["BM25Retriever"]

logger = logging.getLogger(__name__)


class BM25Retriever(Retriever):
    """Ranks chunks by BM25 over their tokenized text.

    `k1`, `b` and `epsilon` are the BM25 Okapi parameters (`epsilon` scales the floor applied to
    negative idfs); `lowercase`, `stopwords` (None or "english") and `stemmer` (None or
    "snowball") control tokenization. Chunks that share no term with the query are not returned.
    """

    def __init__(
        self,
        top_k: int = 20,
        k1: float = 1.5,
        b: float = 0.75,
        epsilon: float = 0.25,
        lowercase: bool = True,
        stopwords: str | None = None,
        stemmer: str | None = None,
    ) -> None:
        if top_k < 1:
            raise ConfigError(f"BM25Retriever top_k must be at least 1, got {top_k}")
        if stopwords not in (None, "english"):
            raise ConfigError(f"BM25Retriever stopwords must be None or 'english', got {stopwords!r}")
        if stemmer not in STEMMERS:
            raise ConfigError(f"BM25Retriever stemmer must be one of {STEMMERS}, got {stemmer!r}")
        self.top_k = top_k
        self.k1 = k1
        self.b = b
        self.epsilon = epsilon
        self.lowercase = lowercase
        self.stopwords = stopwords
        self.stemmer = stemmer
        self._tokenizer: BM25Tokenizer | None = None
        self._index: BM25Index | None = None
        self._chunks: ChunkLookup | None = None

    def warm_up(self) -> None:
        """Build the tokenizer (this is where a missing stemmer package is reported)."""
        self._tokenize()

    def load(self, directory: Path | None, chunks: ChunkLookup) -> None:
        """Open the index saved in `directory`, or start an empty one when it is None."""
        self.warm_up()
        params = {"k1": self.k1, "b": self.b, "epsilon": self.epsilon}
        self._index = BM25Index(**params) if directory is None else BM25Index.load(directory, **params)
        self._chunks = chunks

    def add(self, chunks: Sequence[Chunk]) -> None:
        """Index new chunks; ids already indexed (or repeated) are skipped, not indexed twice."""
        fresh = self._new_texts(chunks)
        self._loaded()[0].add(list(fresh), self._tokenize().tokenize(fresh.values()))

    filterable = True

    def run(self, query: str, top_k: int | None = None, filters: Filter | None = None) -> dict[str, list[Hit]]:
        """The `top_k` chunks with the best BM25 score for `query` (among those passing `filters`), best first
        (ties by id)."""
        rows = self._allowed_rows(filters)
        ranked = self._loaded()[0].search(self._tokenize()(query), top_k or self.top_k, rows)
        return {"hits": self._hits(ranked)}

    def _tokenize(self) -> BM25Tokenizer:
        if self._tokenizer is None:
            self._tokenizer = BM25Tokenizer(lowercase=self.lowercase, stopwords=self.stopwords, stemmer=self.stemmer)
        return self._tokenizer
