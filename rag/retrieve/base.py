"""The contract of retrievers: components whose state lives in the index folder.

The indexer finds every `Retriever` in a pipeline and keeps its state in step with the chunk
store. For each update it calls, in order:

    load(previous_dir or None, chunks)   # state of the last good index (None: start empty)
    remove(ids)                          # chunks of changed, renamed and deleted files
    add(chunks)                          # new chunks only: the expensive embedding happens here
    save(new_dir)                        # write fresh files into an empty folder

and at query time `load(current_dir, chunks)` then `run(query=..., top_k=...)`. `save` must
only create new files (never modify files in place): unchanged state may be hard-linked from one
index generation to the next. `index_settings()` names the settings that shape the stored state
(the embedding model, say); an index built with other values is refused rather than mixed.
"""

from __future__ import annotations

import weakref
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rag.core.component import Component
from rag.core.errors import IndexStoreError, InvalidArgumentError
from rag.core.filters import Filter
from rag.core.types import Chunk, ChunkLookup, Hit

__all__ = ["BatchRetriever", "Retriever"]

_REMEMBERED_FILTERS = 16
"""Filters whose allowed rows a retriever keeps (see `Retriever._allowed_rows`)."""


class Retriever(Component):
    """A component that is indexed from chunks and answers `run(query, top_k)` with hits.

    Subclasses that keep an index object (with `remove`, `save`, `__len__` and `in`) in `_index` and
    the lookup in `_chunks` inherit `remove`, `save` and `__len__`; `_new_texts` and `_hits` do the
    bookkeeping around their own embedding and search.
    """

    id_space: str | None = "chunks"
    filterable: ClassVar[bool] = False
    """Whether `run` takes `filters` and applies them exactly, inside the search (see `rag.core.filters`)."""

    outputs: ClassVar[dict[str, Any]] = {"hits": list[Hit]}
    query_settings: ClassVar[frozenset[str]] = frozenset({"top_k", "batch_size", "device"})
    """Settings that only change query-time behaviour, not the stored state."""

    def index_settings(self) -> dict[str, Any]:
        """The settings that shape the stored state; they must match to reuse an index."""
        return {k: v for k, v in self.settings.items() if k not in self.query_settings}

    def load(self, directory: Path | None, chunks: ChunkLookup) -> None:
        raise NotImplementedError

    def add(self, chunks: Sequence[Chunk]) -> None:
        raise NotImplementedError

    _index: Any = None
    _chunks: ChunkLookup | None = None

    def remove(self, ids: Collection[str]) -> None:
        """Drop these chunks (unknown ids are ignored); nothing is re-embedded."""
        self._loaded()[0].remove(ids)

    def save(self, directory: Path) -> None:
        """Write the index into `directory`, as new files."""
        self._loaded()[0].save(directory)

    def __len__(self) -> int:
        return len(self._loaded()[0])

    def indexed_ids(self) -> list[str]:
        """The ids of the chunks indexed, in row order (what `rag check` compares with the chunk store)."""
        return list(self._loaded()[0].ids)

    def _loaded(self) -> tuple[Any, ChunkLookup]:
        if self._index is None or self._chunks is None:
            raise IndexStoreError(f"{type(self).__name__} has no index; call load(directory or None, chunks) first")
        return self._index, self._chunks

    def _allowed_rows(self, filters: Filter | None) -> np.ndarray | None:
        """The rows (positions in the index's `ids`, ascending) of the chunks that pass `filters`; None without a
        filter. The chunk lookup must be a store that can match filters (`ChunkStore.matching`). The rows of the last
        `_REMEMBERED_FILTERS` filters are kept while the store gives the same chunks for them (requests of different
        tenants take turns)."""
        if filters is None:
            return None
        index, lookup = self._loaded()
        matching = getattr(lookup, "matching", None)
        if matching is None:
            raise InvalidArgumentError(
                f"{type(self).__name__}: its chunk lookup ({type(lookup).__name__}) cannot match filters; load the "
                "retriever with the index's ChunkStore"
            )
        allowed = matching(filters)
        key = repr(filters)
        remembered = self.__dict__.setdefault("_rows_of_filters", {})
        kept = remembered.get(key)
        if kept is not None and kept[0] is allowed and kept[1]() is index and kept[2] == len(index):
            return kept[3]  # the same chunks pass in the same index: the rows worked out before
        found = (chunk_id in allowed for chunk_id in index.ids)
        rows = np.flatnonzero(np.fromiter(found, dtype=bool, count=len(index.ids))).astype(np.int64)
        if len(remembered) >= _REMEMBERED_FILTERS:
            remembered.pop(next(iter(remembered)))
        remembered[key] = (allowed, weakref.ref(index), len(index), rows)
        return rows

    def _new_texts(self, chunks: Sequence[Chunk]) -> dict[str, str]:
        """id -> text of the chunks not indexed yet, each id once (nothing is embedded twice)."""
        index = self._loaded()[0]
        fresh: dict[str, str] = {}
        for chunk in chunks:
            if chunk.id not in index:
                fresh.setdefault(chunk.id, chunk.text)
        return fresh

    def _hits(self, ranked: Sequence[tuple[str, float]]) -> list[Hit]:
        """Hits for (id, score) pairs, in their order, with chunks from the lookup."""
        ids, scores = zip(*ranked, strict=True) if ranked else ((), ())
        return list(map(Hit, self._loaded()[1].get(ids), scores))

    def _ranked_hits(self, scores: Any, ids: Sequence[Sequence[str]]) -> list[list[Hit]]:
        """Hits for each query's row of a vector index's `search` (scores, ids): best first, ties by id."""
        return [
            self._hits(sorted(zip(row_ids, row_scores.tolist(), strict=False), key=lambda p: (-p[1], p[0])))
            for row_ids, row_scores in zip(ids, scores, strict=True)
        ]

    def run(self, query: str, top_k: int | None = None) -> dict[str, list[Hit]]:
        raise NotImplementedError

    def run_batch(self, queries: Sequence[str], top_k: int | None = None) -> list[list[Hit]]:
        """The hits of each query, in order; retrievers that can batch the work override this."""
        return [self.run(query, top_k)["hits"] for query in queries]


class BatchRetriever(Retriever):
    """A retriever that searches in batches and applies filters exactly: `run` is one query of `run_batch`, which
    subclasses implement (the `top_k` best chunks for each query, among those passing `filters`, best first, ties
    by id)."""

    filterable = True

    def run(self, query: str, top_k: int | None = None, filters: Filter | None = None) -> dict[str, list[Hit]]:
        return {"hits": self.run_batch([query], top_k, filters)[0]}

    def run_batch(
        self, queries: Sequence[str], top_k: int | None = None, filters: Filter | None = None
    ) -> list[list[Hit]]:
        raise NotImplementedError
