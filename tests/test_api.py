"""The Python API's answering paths: decoding overrides, streaming callbacks and `ask_stream`."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from rag import RAG
from rag.answer.builder import AnswerBuilder
from rag.core.errors import PipelineError
from rag.core.pipeline import IndexingSettings, Pipeline
from rag.core.types import Answer
from rag.generate.prompt import PromptBuilder
from rag.ingest.chunkers.recursive import RecursiveChunker
from tests.fakes import EchoGenerator, HashRetriever
from tests.indexing_helpers import make_corpus


def answering_pipeline(streaming: bool = True) -> Pipeline:
    inputs = {"query": ["vec.query", "prompt.query"], "top_k": ["vec.top_k"]}
    if streaming:
        inputs |= {"decoding": ["generator.decoding"], "on_token": ["generator.on_token"]}
    return Pipeline(
        {
            "vec": HashRetriever(),
            "prompt": PromptBuilder(),
            "generator": EchoGenerator(),
            "answer": AnswerBuilder(min_support=None),
        },
        connections=[
            ("vec.hits", "prompt.hits"),
            ("prompt.messages", "generator.messages"),
            ("generator.reply", "answer.reply"),
            ("prompt.hits", "answer.hits"),
            ("generator.usage", "answer.usage"),
        ],
        inputs=inputs,
        outputs={"hits": "vec.hits", "answer": "answer.answer"},
        indexing=IndexingSettings(chunker=RecursiveChunker(chunk_size=120, chunk_overlap=20, unit="chars")),
        name="echo",
    )


@pytest.fixture
def rag(tmp_path: Path) -> RAG:
    make_corpus(tmp_path / "docs")
    rag = RAG(tmp_path / "idx", answering_pipeline())
    rag.index(tmp_path / "docs")
    return rag


def test_decoding_overrides_reach_the_generator(rag: RAG) -> None:
    answer = rag.ask("topic2 facts", decoding={"max_tokens": 3})
    assert rag.pipeline.components["generator"].last_decoding == {"max_tokens": 3}
    assert answer.usage["completion_tokens"] == 3


def test_on_token_sees_the_reply_piece_by_piece(rag: RAG) -> None:
    pieces: list[str] = []
    answer = rag.ask("topic2 facts", on_token=pieces.append)
    assert len(pieces) == 8
    assert "".join(pieces).strip() == answer.text


def test_ask_stream_yields_pieces_then_the_answer(rag: RAG) -> None:
    items = list(rag.ask_stream("topic1 facts", decoding={"max_tokens": 5}))
    assert all(isinstance(item, str) for item in items[:-1]) and len(items) == 6
    assert isinstance(items[-1], Answer)
    assert "".join(items[:-1]).strip() == items[-1].text


def test_closing_the_stream_early_cancels_generation(rag: RAG) -> None:
    stream = rag.ask_stream("topic1 facts")
    assert isinstance(next(stream), str)
    stream.close()  # the generator thread's next on_token raises GenerationCancelled and stops
    for thread in threading.enumerate():
        if thread.name == "rag-ask-stream":
            thread.join(timeout=5)
            assert not thread.is_alive()


def test_errors_of_the_generation_thread_reach_the_reader(tmp_path: Path) -> None:
    rag = RAG(tmp_path / "missing", answering_pipeline())
    with pytest.raises(Exception, match="no index"):
        list(rag.ask_stream("anything"))


def test_a_pipeline_without_the_inputs_refuses_streaming(tmp_path: Path) -> None:
    make_corpus(tmp_path / "docs")
    rag = RAG(tmp_path / "idx", answering_pipeline(streaming=False))
    rag.index(tmp_path / "docs")
    assert rag.ask("topic1 facts").text
    with pytest.raises(PipelineError, match=r"takes no 'on_token' input.*on_token: \[generator.on_token\]"):
        rag.ask("topic1 facts", on_token=print)


def test_a_pipeline_top_k_reaches_every_leg_of_a_fusion(tmp_path: Path) -> None:
    """Legs keeping 3 hits each would cap a fusion asked for 8 at 6: every leg is asked for at least 8."""
    from rag.core.pipeline import IndexingSettings, Pipeline
    from rag.fuse.rrf import ReciprocalRankFusion
    from rag.ingest.chunkers.recursive import RecursiveChunker
    from tests.fakes import HashRetriever
    from tests.indexing_helpers import make_corpus

    pipeline = Pipeline(
        {"a": HashRetriever(top_k=3), "b": HashRetriever(dim=32, top_k=3), "fusion": ReciprocalRankFusion(top_k=5)},
        [("a.hits", "fusion.hits"), ("b.hits", "fusion.hits")],
        inputs={"query": ["a.query", "b.query"], "top_k": ["fusion.top_k"]},
        outputs={"hits": "fusion.hits"},
        indexing=IndexingSettings(chunker=RecursiveChunker(chunk_size=120, chunk_overlap=20, unit="chars")),
    )
    make_corpus(tmp_path / "docs", 6)
    rag = RAG(tmp_path / "idx", pipeline)
    rag.index(tmp_path / "docs")
    assert len(rag.query("topic1 facts", top_k=8)) == 8
    assert len(rag.query("topic1 facts")) <= 5  # no top_k asked: the fusion's own 5 and the legs' own 3
    assert len(rag.query("topic1 facts", top_k=2)) == 2
    assert pipeline.components["a"].top_k == 3  # asked per run, never changed
