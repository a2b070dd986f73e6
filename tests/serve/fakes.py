"""A generator honouring the generator contract without a model, and pipelines built around it."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

from rag.answer.builder import AnswerBuilder
from rag.core.component import Component
from rag.core.errors import GenerationCancelled
from rag.core.pipeline import IndexingSettings, Pipeline
from rag.generate.decoding import DecodingConfig
from rag.generate.prompt import PromptBuilder
from rag.ingest.chunkers.recursive import RecursiveChunker
from rag.retrieve.base import Retriever
from rag.retrieve.bm25 import BM25Retriever

ECHO = "tests.serve.fakes.EchoGenerator"
_PASSAGE = re.compile(r"\[1\] \([^)]*\) (.*?) \[1\]", re.S)


class EchoGenerator(Component):
    """Replies with the first `words` words of passage [1] and cites it: one word per token.

    Honours `max_tokens` and validates `decoding` against its own settings, like a real backend.
    `delay` seconds pass before each token. Records the decoding options and cancellations it saw.
    """

    outputs: ClassVar[dict[str, Any]] = {"reply": str, "usage": dict[str, int], "candidates": list[str]}

    def __init__(self, words: int = 8, delay: float = 0.0, decoding: dict[str, Any] | None = None) -> None:
        self.words = words
        self.delay = delay
        self.decoding = dict(decoding or {})
        self.seen: list[dict[str, Any]] = []
        self.cancelled = 0
        self.emitted = 0
        self._lock = threading.Lock()

    def run(
        self,
        messages: list[dict[str, str]],
        decoding: dict[str, Any] | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        config = DecodingConfig.from_dict(self.decoding).merged(**(decoding or {}))
        with self._lock:
            self.seen.append(dict(decoding or {}))
        if not messages:  # nothing retrieved: the contract is an empty reply
            return {"reply": "", "usage": {"prompt_tokens": 0, "completion_tokens": 0}, "candidates": []}
        found = _PASSAGE.search(messages[-1]["content"])
        words = found.group(1).split()[: self.words] if found else ["I", "do", "not", "know."]
        tokens = [*words[: config.max_tokens - 1], "[1]." if found else ""]
        pieces = []
        try:
            for i, token in enumerate(t for t in tokens if t):
                if self.delay:
                    time.sleep(self.delay)
                piece = token if i == 0 else " " + token
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
        return {
            "reply": reply,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(pieces)},
            "candidates": [reply],
        }


class FailingGenerator(EchoGenerator):
    """Breaks with an unexpected (non-rag) exception, after `words` tokens."""

    def run(self, messages: list[dict[str, str]], decoding: Any = None, on_token: Any = None) -> dict[str, Any]:
        for _ in range(self.words):
            if on_token is not None:
                on_token("word ")
        raise RuntimeError("secret internal detail /etc/passwd")


def chunker() -> RecursiveChunker:
    return RecursiveChunker(chunk_size=300, chunk_overlap=0, unit="chars")


def retrieval_pipeline(retriever: Retriever | None = None, name: str = "bm25") -> Pipeline:
    return Pipeline(
        {"bm25": retriever if retriever is not None else BM25Retriever(top_k=5)},
        inputs={"query": ["bm25.query"], "top_k": ["bm25.top_k"]},
        outputs={"hits": "bm25.hits"},
        indexing=IndexingSettings(chunker=chunker()),
        name=name,
    )


def answer_pipeline(
    generator: Component | None = None, retriever: Retriever | None = None, name: str = "echo"
) -> Pipeline:
    return Pipeline(
        {
            "bm25": retriever if retriever is not None else BM25Retriever(top_k=5),
            "prompt": PromptBuilder(),
            "generator": generator if generator is not None else EchoGenerator(),
            "answer": AnswerBuilder(),
        },
        [
            ("bm25.hits", "prompt.hits"),
            ("prompt.messages", "generator.messages"),
            ("generator.reply", "answer.reply"),
            ("prompt.hits", "answer.hits"),
            ("generator.usage", "answer.usage"),
        ],
        inputs={
            "query": ["bm25.query", "prompt.query"],
            "top_k": ["bm25.top_k"],
            "decoding": ["generator.decoding"],
            "on_token": ["generator.on_token"],
        },
        outputs={"hits": "bm25.hits", "answer": "answer.answer"},
        indexing=IndexingSettings(chunker=chunker()),
        name=name,
    )
