"""Real objects honouring the contracts, cheap enough for unit tests (no models)."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rag.core.component import Component
from rag.core.types import Chunk, ChunkLookup, Hit
from rag.retrieve.base import Retriever


def hashed_vector(text: str, dim: int) -> np.ndarray:
    vec = np.zeros(dim, dtype=np.float32)
    for token in re.findall(r"\w+", text.lower()):
        vec[int(hashlib.md5(token.encode()).hexdigest(), 16) % dim] += 1.0
    norm = np.linalg.norm(vec)
    return vec / norm if norm else vec


class HashRetriever(Retriever):
    """Bag-of-words vectors hashed into `dim` buckets; counts what it embeds.

    `delay` sleeps per embedded chunk so crash tests can kill a run mid-embedding.
    """

    def __init__(self, dim: int = 64, top_k: int = 10, delay: float = 0.0) -> None:
        self.dim = dim
        self.top_k = top_k
        self.delay = delay
        self.embedded = 0
        self.ids: list[str] = []
        self.vectors = np.zeros((0, dim), dtype=np.float32)
        self.chunks: ChunkLookup | None = None

    query_settings = frozenset({"top_k", "delay"})

    def load(self, directory: Path | None, chunks: ChunkLookup) -> None:
        self.chunks = chunks
        if directory is None:
            self.ids, self.vectors = [], np.zeros((0, self.dim), dtype=np.float32)
            return
        self.ids = json.loads((directory / "ids.json").read_text())
        self.vectors = np.load(directory / "vectors.npy")

    def add(self, chunks: Sequence[Chunk]) -> None:
        for chunk in chunks:
            if self.delay:
                time.sleep(self.delay)
            self.embedded += 1
            self.ids.append(chunk.id)
            self.vectors = np.vstack([self.vectors, hashed_vector(chunk.text, self.dim)])

    def remove(self, ids: Collection[str]) -> None:
        keep = [i for i, chunk_id in enumerate(self.ids) if chunk_id not in ids]
        self.ids = [self.ids[i] for i in keep]
        self.vectors = self.vectors[keep]

    def save(self, directory: Path) -> None:
        (directory / "ids.json").write_text(json.dumps(self.ids))
        np.save(directory / "vectors.npy", self.vectors)

    def __len__(self) -> int:
        return len(self.ids)

    def run(self, query: str, top_k: int | None = None) -> dict[str, list[Hit]]:
        assert self.chunks is not None
        if not self.ids:
            return {"hits": []}
        scores = self.vectors @ hashed_vector(query, self.dim)
        order = np.argsort(-scores, kind="stable")[: top_k or self.top_k]
        chunks = self.chunks.get([self.ids[i] for i in order])
        return {"hits": [Hit(c, float(scores[i])) for c, i in zip(chunks, order, strict=True)]}


class EchoGenerator(Component):
    """Replies with the first words of the last message, one word per streamed piece.

    Honours the generator contract: `run(messages, decoding=None, on_token=None)`; `decoding`
    may set `max_tokens` (words here). Records the decoding options of its last call.
    """

    outputs: ClassVar[dict[str, Any]] = {"reply": str, "usage": dict[str, int], "candidates": list[dict[str, Any]]}

    def __init__(self, max_tokens: int = 8) -> None:
        self.max_tokens = max_tokens
        self.last_decoding: dict[str, Any] | None = None

    def run(
        self,
        messages: list[dict[str, str]],
        decoding: dict[str, Any] | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        self.last_decoding = decoding
        limit = (decoding or {}).get("max_tokens", self.max_tokens)
        words = messages[-1]["content"].split()[:limit]
        pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
        for piece in pieces:
            if on_token is not None:
                on_token(piece)
        usage = {"prompt_tokens": sum(len(m["content"].split()) for m in messages), "completion_tokens": len(words)}
        return {"reply": "".join(pieces), "usage": usage, "candidates": []}
