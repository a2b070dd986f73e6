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

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, ClassVar

from rag.core.component import Component
from rag.core.types import Chunk, ChunkLookup, Hit

__all__ = ["Retriever"]


class Retriever(Component):
    """A component that is indexed from chunks and answers `run(query, top_k)` with hits."""

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

    def remove(self, ids: Collection[str]) -> None:
        raise NotImplementedError

    def save(self, directory: Path) -> None:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def run(self, query: str, top_k: int | None = None) -> dict[str, list[Hit]]:
        raise NotImplementedError
