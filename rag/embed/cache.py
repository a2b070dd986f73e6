"""An on-disk cache of document embeddings, so a corpus is encoded once per model.

Opt-in: set `RAG_EMBEDDING_CACHE` to a folder (`rag eval` turns it on by default). Entries are
keyed by the model's identity (name, resolved path, normalisation, which side it encodes) and
the SHA-1 of the text, and hold float32 vectors, in one SQLite file. Indexes built from a
cached vector are identical to ones built by encoding again: the cache stores the embedder's
output before any truncation or quantisation, so `dense`, `dense-int8` and `dense-binary`
share the entries of the same model.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path

import numpy as np

__all__ = ["ENV_VAR", "EmbeddingCache", "cached_encode"]

ENV_VAR = "RAG_EMBEDDING_CACHE"
_LOOKUP_BATCH = 500


class EmbeddingCache:
    """Vectors by (model key, text) in `folder/embeddings.sqlite`."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder).expanduser() / "embeddings.sqlite"

    @classmethod
    def from_env(cls) -> EmbeddingCache | None:
        """The cache named by $RAG_EMBEDDING_CACHE, or None when it is not set."""
        folder = os.environ.get(ENV_VAR)
        return cls(folder) if folder else None

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=60)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(
            "CREATE TABLE IF NOT EXISTS vectors (model TEXT, text_sha BLOB, vector BLOB, PRIMARY KEY (model, text_sha))"
        )
        return connection

    def get(self, model: str, texts: Sequence[str]) -> list[np.ndarray | None]:
        """The cached vector of each text, or None where there is none."""
        keys = [_sha(text) for text in texts]
        found: dict[bytes, np.ndarray] = {}
        with closing(self._connect()) as connection:
            for start in range(0, len(keys), _LOOKUP_BATCH):
                batch = keys[start : start + _LOOKUP_BATCH]
                marks = ",".join("?" * len(batch))
                rows = connection.execute(
                    f"SELECT text_sha, vector FROM vectors WHERE model = ? AND text_sha IN ({marks})", [model, *batch]
                )
                found.update((sha, np.frombuffer(blob, dtype=np.float32)) for sha, blob in rows)
        return [found.get(key) for key in keys]

    def put(self, model: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store one float32 row per text (existing entries are replaced)."""
        rows = [
            (model, _sha(text), np.asarray(vector, dtype=np.float32).tobytes())
            for text, vector in zip(texts, vectors, strict=True)
        ]
        with closing(self._connect()) as connection, connection:
            connection.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)", rows)


def cached_encode(
    cache: EmbeddingCache | None, model: str, texts: Sequence[str], encode: Callable[[list[str]], np.ndarray]
) -> np.ndarray:
    """`encode(texts)`, reading what the cache has and encoding (then storing) only the rest."""
    if cache is None or not texts:
        return encode(list(texts))
    cached = cache.get(model, texts)
    missing = [i for i, vector in enumerate(cached) if vector is None]
    if missing:
        fresh = encode([texts[i] for i in missing])
        cache.put(model, [texts[i] for i in missing], fresh)
        for i, vector in zip(missing, fresh, strict=True):
            cached[i] = vector
    return np.stack(cached).astype(np.float32, copy=False)  # type: ignore[arg-type]


def _sha(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8")).digest()
