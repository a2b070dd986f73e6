"""Pipelines around the shared fake generator (`tests.fakes.EchoGenerator`), a generator that breaks, and a
stand-in embedding model."""

from __future__ import annotations

from typing import Any

import numpy as np

from rag.answer.builder import AnswerBuilder
from rag.core.component import Component
from rag.core.pipeline import IndexingSettings, Pipeline
from rag.generate.prompt import PromptBuilder
from rag.ingest.chunkers.recursive import RecursiveChunker
from rag.retrieve.base import Retriever
from rag.retrieve.bm25 import BM25Retriever
from tests.fakes import EchoGenerator

ECHO = "tests.fakes.EchoGenerator"


class FailingGenerator(EchoGenerator):
    """Breaks with an unexpected (non-rag) exception, after `words` tokens."""

    def run(self, messages: list[dict[str, str]], decoding: Any = None, on_token: Any = None) -> dict[str, Any]:
        for _ in range(self.words):
            if on_token is not None:
                on_token("word ")
        raise RuntimeError("secret internal detail /etc/passwd")


class FakeEmbedder:
    """Stands in for a DenseRetriever's sentence-transformers model (the real one is in the integration test)."""

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        return np.array([[len(t), t.count(" "), 1.0] for t in texts], dtype=np.float32)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return -self.encode_documents(texts)


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
            "generator": generator if generator is not None else EchoGenerator(source="passage"),
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
