"""Lexical retrieval with BM25 (Okapi), kept up to date incrementally."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from pathlib import Path

from rag.core.errors import ConfigError, IndexStoreError
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
        index, _ = self._loaded()
        fresh: dict[str, str] = {}
        for chunk in chunks:
            if chunk.id not in index:
                fresh.setdefault(chunk.id, chunk.text)
        if len(fresh) < len(chunks):
            logger.debug("BM25Retriever.add: skipped %d already indexed chunks", len(chunks) - len(fresh))
        index.add(list(fresh), self._tokenize().tokenize(fresh.values()))

    def remove(self, ids: Collection[str]) -> None:
        """Drop these chunks from the index (unknown ids are ignored)."""
        self._loaded()[0].remove(ids)

    def save(self, directory: Path) -> None:
        """Write the index into `directory`, as new files."""
        self._loaded()[0].save(directory)

    def __len__(self) -> int:
        return len(self._loaded()[0])

    def run(self, query: str, top_k: int | None = None) -> dict[str, list[Hit]]:
        """The `top_k` chunks with the best BM25 score for `query`, best first (ties by id)."""
        index, lookup = self._loaded()
        ranked = index.search(self._tokenize()(query), top_k or self.top_k)
        if not ranked:
            return {"hits": []}
        found = lookup.get([doc_id for doc_id, _ in ranked])
        return {"hits": [Hit(chunk, score) for chunk, (_, score) in zip(found, ranked, strict=True)]}

    def _tokenize(self) -> BM25Tokenizer:
        if self._tokenizer is None:
            self._tokenizer = BM25Tokenizer(lowercase=self.lowercase, stopwords=self.stopwords, stemmer=self.stemmer)
        return self._tokenizer

    def _loaded(self) -> tuple[BM25Index, ChunkLookup]:
        if self._index is None or self._chunks is None:
            raise IndexStoreError("BM25Retriever has no index; call load(directory or None, chunks) first")
        return self._index, self._chunks
