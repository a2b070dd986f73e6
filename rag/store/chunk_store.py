"""The chunk store: every chunk and every indexed file of an index, kept as Parquet.

`chunks.parquet` holds id, path, text, start, end and metadata (JSON); `files.parquet` holds,
per indexed file, its path, size, modification time (ns), SHA-256, chunk ids and the hash of the metadata it gets
from outside itself (`metadata_sha256`: sidecar and path rules; a store written before that column existed loads
with it empty). The indexer compares the folder against `files` to find what was added, changed, renamed or deleted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from rag.core.errors import IndexStoreError
from rag.core.filters import Filter, chunk_fields, field_types
from rag.core.types import Chunk

__all__ = ["CHUNK_SCHEMA", "ChunkStore", "FileRecord"]

_REMEMBERED = 64
"""How many filters' matching chunk ids a store remembers."""

CHUNK_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("path", pa.string()),
        ("text", pa.string()),
        ("start", pa.int64()),
        ("end", pa.int64()),
        ("metadata", pa.string()),
    ]
)
_FILES = pa.schema(
    [
        ("path", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("sha256", pa.string()),
        ("chunk_ids", pa.list_(pa.string())),
        ("metadata_sha256", pa.string()),
    ]
)


@dataclass(frozen=True, slots=True)
class FileRecord:
    """What the index knows of one file: enough to tell whether it changed. `metadata_sha256` stands for the
    metadata it got from outside itself (`rag.ingest.metadata.ExtraMetadata.key`; empty: none)."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    chunk_ids: tuple[str, ...]
    metadata_sha256: str = ""


class ChunkStore:
    """Chunks by id and files by path, in memory, saved to and loaded from Parquet."""

    def __init__(self) -> None:
        self.chunks: dict[str, Chunk] = {}
        self.files: dict[str, FileRecord] = {}
        self._fields: dict[str, dict[str, Any]] | None = None
        self._types: dict[str, dict[str, str]] = {}
        self._matching: dict[str, frozenset[str]] = {}

    @classmethod
    def load(cls, folder: Path) -> ChunkStore:
        store = cls()
        try:
            chunks = pq.read_table(folder / "chunks.parquet").to_pydict()
            files = pq.read_table(folder / "files.parquet").to_pydict()
        except (OSError, pa.ArrowException) as exc:
            raise IndexStoreError(f"cannot read the chunk store in {folder}: {exc}") from None
        for i, chunk_id in enumerate(chunks["id"]):
            store.chunks[chunk_id] = Chunk(
                chunk_id,
                chunks["path"][i],
                chunks["text"][i],
                chunks["start"][i],
                chunks["end"][i],
                json.loads(chunks["metadata"][i]),
            )
        extra = files.get("metadata_sha256") or [""] * len(files["path"])  # absent in stores written before it
        for i, path in enumerate(files["path"]):
            store.files[path] = FileRecord(
                path,
                files["size"][i],
                files["mtime_ns"][i],
                files["sha256"][i],
                tuple(files["chunk_ids"][i]),
                extra[i] or "",
            )
        return store

    def save(self, folder: Path) -> None:
        chunks = list(self.chunks.values())
        pq.write_table(
            pa.Table.from_pydict(
                {
                    "id": [c.id for c in chunks],
                    "path": [c.path for c in chunks],
                    "text": [c.text for c in chunks],
                    "start": [c.start for c in chunks],
                    "end": [c.end for c in chunks],
                    "metadata": [json.dumps(c.metadata, ensure_ascii=False) for c in chunks],
                },
                schema=CHUNK_SCHEMA,
            ),
            folder / "chunks.parquet",
        )
        files = list(self.files.values())
        pq.write_table(
            pa.Table.from_pydict(
                {
                    "path": [f.path for f in files],
                    "size": [f.size for f in files],
                    "mtime_ns": [f.mtime_ns for f in files],
                    "sha256": [f.sha256 for f in files],
                    "chunk_ids": [list(f.chunk_ids) for f in files],
                    "metadata_sha256": [f.metadata_sha256 for f in files],
                },
                schema=_FILES,
            ),
            folder / "files.parquet",
        )

    def get(self, ids: Sequence[str]) -> list[Chunk]:
        """The chunks with these ids, in order (ChunkLookup)."""
        try:
            return list(map(self.chunks.__getitem__, ids))
        except KeyError as exc:
            raise IndexStoreError(
                f"chunk {exc.args[0]} is in a retriever's index but not in the chunk store; the index "
                "is inconsistent: rebuild it with `rag index FOLDER --rebuild`"
            ) from None

    def filter_fields(self, within: Filter | None = None) -> dict[str, str]:
        """Field name -> type ("string", "number", "date", "bool") over every chunk (or those passing the checked
        filter `within`): what filters may test (worked out once while the store is unchanged)."""
        key = repr(within)
        if key not in self._types:
            fields = self._chunk_fields()
            chosen = fields.values() if within is None else (fields[i] for i in self.matching(within))
            if len(self._types) >= _REMEMBERED:
                self._types.pop(next(iter(self._types)))
            self._types[key] = field_types(chosen)
        return self._types[key]

    def matching(self, flt: Filter) -> frozenset[str]:
        """The ids of the chunks that pass `flt` (a checked filter; see `rag.core.filters`), remembered for the
        last few filters while the store is unchanged."""
        key = repr(flt)
        found = self._matching.get(key)
        if found is None:
            found = frozenset(i for i, fields in self._chunk_fields().items() if flt.matches(fields))
            if len(self._matching) >= _REMEMBERED:
                self._matching.pop(next(iter(self._matching)))
            self._matching[key] = found
        return found

    def _chunk_fields(self) -> dict[str, dict[str, Any]]:
        """Each chunk's fields: its own (`chunk_fields`), and its file's `size` and `modified` time."""
        if self._fields is None:
            files: dict[str, dict[str, Any]] = {}
            for path, record in self.files.items():
                files[path] = {"size": record.size}
                if record.mtime_ns > 0:  # 0: a document that came from no file
                    files[path]["modified"] = datetime.fromtimestamp(record.mtime_ns / 1e9, UTC)
            self._fields = {
                i: {**chunk_fields(c.path, c.metadata), **files.get(c.path, {})} for i, c in self.chunks.items()
            }
        return self._fields

    def remove_file(self, path: str) -> list[str]:
        """Forget a file and its chunks; returns the removed chunk ids."""
        self._fields, self._types, self._matching = None, {}, {}
        record = self.files.pop(path, None)
        if record is None:
            return []
        for chunk_id in record.chunk_ids:
            self.chunks.pop(chunk_id, None)
        return list(record.chunk_ids)

    def put_file(self, record: FileRecord, chunks: Iterable[Chunk]) -> None:
        """Record a file and its chunks (replacing what was there for that path)."""
        self.remove_file(record.path)  # also forgets the fields and matches worked out for filters
        self.files[record.path] = record
        for chunk in chunks:
            self.chunks[chunk.id] = chunk

    def __len__(self) -> int:
        return len(self.chunks)
