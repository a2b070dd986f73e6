"""Real objects honouring the contracts, cheap enough for unit tests (no models)."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rag.core.errors import GenerationCancelled
from rag.core.types import Chunk, ChunkLookup, Hit
from rag.generate.base import Generator
from rag.rerank.base import Reranker
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

    def indexed_ids(self) -> list[str]:
        return list(self.ids)

    def run(self, query: str, top_k: int | None = None) -> dict[str, list[Hit]]:
        assert self.chunks is not None
        if not self.ids:
            return {"hits": []}
        scores = self.vectors @ hashed_vector(query, self.dim)
        order = np.argsort(-scores, kind="stable")[: top_k or self.top_k]
        chunks = self.chunks.get([self.ids[i] for i in order])
        return {"hits": [Hit(c, float(scores[i])) for c, i in zip(chunks, order, strict=True)]}


class OverlapReranker(Reranker):
    """Scores a passage by the share of the query's words of four letters or more that it contains."""

    def __init__(self, top_k: int | None = None, score_threshold: float | None = None) -> None:
        self.check_settings(top_k, score_threshold)
        self.top_k = top_k
        self.score_threshold = score_threshold

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        words = set(re.findall(r"\w{4,}", query.lower()))
        return [len(words & set(re.findall(r"\w{4,}", text.lower()))) / max(1, len(words)) for text in texts]


_PASSAGE = re.compile(r"\[1\] \([^)]*\) (.*?) \[1\]", re.S)


class EchoGenerator(Generator):
    """The one fake generator of the tests: a real object honouring the generator contract (`Generator`), no model.

    It replies, one word per streamed piece, with the first words of the last message (`source="message"`), or
    of passage [1] of a `PromptBuilder` prompt followed by ``[1].`` (`source="passage"`; "I do not know." when the
    prompt shows no passage), or with the first of `replies` whose key is in the question (`source="script"`).
    `words` is the longest reply (`decoding` may lower it with ``max_tokens``); `delay` seconds pass before each
    word. It records the decoding options it saw (`seen`, `last_decoding`), the words it
    sent (`emitted`) and the replies the reader cancelled (`cancelled`). Decoding options are validated against its
    own settings, like a real backend.
    """

    outputs: ClassVar[dict[str, Any]] = {"reply": str, "usage": dict[str, int], "candidates": list[dict[str, Any]]}

    def __init__(
        self,
        words: int = 8,
        source: str = "message",
        delay: float = 0.0,
        decoding: dict[str, Any] | None = None,
        replies: dict[str, str] | None = None,
    ) -> None:
        self.words = words
        self.source = source
        self.replies = replies or {}
        self.delay = delay
        self.decoding = self._decoding_settings(decoding)
        self.seen: list[dict[str, Any]] = []
        self.last_decoding: dict[str, Any] | None = None
        self.cancelled = 0
        self.emitted = 0
        self._lock = threading.Lock()

    def run(
        self,
        messages: list[dict[str, str]],
        decoding: dict[str, Any] | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        config = self._config(decoding)
        with self._lock:
            self.seen.append(dict(decoding or {}))
            self.last_decoding = decoding
        if not messages:  # nothing retrieved: the contract is an empty reply
            return self.empty_reply()
        tokens = self._tokens(messages[-1]["content"], config.max_tokens, (decoding or {}).get("max_tokens"))
        pieces = []
        try:
            for token in tokens:
                if self.delay:
                    time.sleep(self.delay)
                piece = token if not pieces else " " + token
                if on_token is not None:
                    on_token(piece)
                with self._lock:
                    self.emitted += 1
                pieces.append(piece)
        except GenerationCancelled:
            with self._lock:
                self.cancelled += 1
            raise
        reply = "".join(pieces)
        prompt_tokens = sum(len(m["content"].split()) for m in messages)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(pieces)}
        return {"reply": reply, "usage": usage, "candidates": []}

    def _tokens(self, content: str, max_tokens: int, asked: int | None) -> list[str]:
        if self.source == "script":
            question = content.rsplit("Question:", 1)[-1]
            return next(text for key, text in self.replies.items() if key in question).split(" ")
        if self.source == "message":
            return content.split()[: asked if asked is not None else self.words]
        found = _PASSAGE.search(content)
        if not found:
            return ["I", "do", "not", "know."]
        return [*found.group(1).split()[: self.words][: max_tokens - 1], "[1]."]
