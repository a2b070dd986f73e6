"""The LangChain integration without models: conversions, the "out" direction, LangChain's standard tests.

Indexes use `tests.fakes.HashRetriever` and answers `tests.fakes.EchoGenerator`, real objects honouring
our contracts. The "in" direction is in `test_langchain_in.py`, the real models in `test_langchain_models.py`.
"""

from __future__ import annotations

import asyncio
import datetime
import importlib
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag.core.errors import ConfigError, IndexNotFoundError, MissingDependencyError


def test_missing_langchain_core_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from rag.core.registry import resolve_type

    for name in [m for m in sys.modules if m.split(".")[0] == "langchain_core"] or ["langchain_core"]:
        monkeypatch.setitem(sys.modules, name, None)  # what `import langchain_core...` sees when it is absent
    for name in [m for m in sys.modules if m.startswith("rag.integrations.langchain")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(MissingDependencyError, match=r"pip install 'rag\[langchain\]'") as info:
        importlib.import_module("rag.integrations.langchain")
    assert info.value.package == "langchain-core" and info.value.extra == "langchain"
    with pytest.raises(ConfigError, match=r"pip install 'rag\[langchain\]'"):
        resolve_type("LangChainRetriever")  # a pipeline file naming it says what to install


pytest.importorskip("langchain_core")
langchain_tests = pytest.importorskip("langchain_tests")

from langchain_core.documents import Document as LCDocument  # noqa: E402
from langchain_core.messages import AIMessageChunk, HumanMessage, SystemMessage, ToolMessage  # noqa: E402
from langchain_core.output_parsers import StrOutputParser  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate  # noqa: E402
from langchain_core.runnables import RunnableLambda, RunnablePassthrough  # noqa: E402
from langchain_tests.integration_tests import ChatModelIntegrationTests, RetrieversIntegrationTests  # noqa: E402
from langchain_tests.unit_tests import ChatModelUnitTests, EmbeddingsUnitTests  # noqa: E402

from rag.answer.builder import AnswerBuilder  # noqa: E402
from rag.api import RAG  # noqa: E402
from rag.core.pipeline import IndexingSettings, Pipeline  # noqa: E402
from rag.core.types import Chunk, Hit  # noqa: E402
from rag.generate.prompt import PromptBuilder  # noqa: E402
from rag.ingest.chunkers.recursive import RecursiveChunker  # noqa: E402
from rag.integrations.langchain import (  # noqa: E402
    RagChatModel,
    RagEmbeddings,
    RagRetriever,
    as_chat_model,
    as_embeddings,
    as_retriever,
    chunk_to_document,
    document_to_chunk,
    hit_to_document,
)
from rag.retrieve.dense import DenseRetriever  # noqa: E402
from tests.fakes import EchoGenerator, HashRetriever  # noqa: E402
from tests.indexing_helpers import fake_pipeline, make_corpus  # noqa: E402

ALLOWED = ["tests.fakes.HashRetriever"]
CHUNKER = RecursiveChunker(chunk_size=120, chunk_overlap=20, unit="chars")


@pytest.fixture(scope="module")
def fake_rag(tmp_path_factory: pytest.TempPathFactory) -> RAG:
    """A model-free index of five Markdown files, three paragraphs each (`make_corpus`)."""
    root = tmp_path_factory.mktemp("fake")
    make_corpus(root / "docs")
    rag = RAG(root / "index", fake_pipeline())
    rag.index(root / "docs")
    return rag


def echo_pipeline() -> Pipeline:
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
        inputs={"query": ["vec.query", "prompt.query"], "top_k": ["vec.top_k"]},
        outputs={"hits": "vec.hits", "answer": "answer.answer"},
        indexing=IndexingSettings(chunker=CHUNKER),
        name="echo",
    )


# --- conversions ---------------------------------------------------------------------------------------


def test_chunk_round_trip_keeps_id_offsets_and_metadata() -> None:
    chunk = Chunk("c1", "notes/a.md", "some text", 10, 19, {"title": "A", "pages": [1, 2], "section": "Intro"})
    document = chunk_to_document(chunk)
    assert document.page_content == "some text" and document.id == "c1"
    assert document.metadata == {
        "title": "A",
        "pages": [1, 2],
        "section": "Intro",
        "source": "notes/a.md",
        "start_index": 10,
        "end_index": 19,
    }
    assert document_to_chunk(document) == chunk
    hit = Hit(chunk, 0.25)
    as_document = hit_to_document(hit)
    assert as_document.metadata["score"] == 0.25
    assert document_to_chunk(as_document) == chunk  # the score is the hit's, not the chunk's


def test_a_foreign_document_becomes_a_chunk_with_a_stable_id() -> None:
    when = datetime.date(2024, 5, 1)
    document = LCDocument(page_content="abc", metadata={"source": "https://x.org/a", "when": when, "n": np.int64(3)})
    chunk = document_to_chunk(document)
    assert (chunk.path, chunk.start, chunk.end) == ("https://x.org/a", 0, 3)
    assert chunk.metadata == {"when": "2024-05-01", "n": 3}  # JSON-safe: chunks are stored as JSON
    assert chunk.id == document_to_chunk(LCDocument(page_content="abc", metadata={"source": "https://x.org/a"})).id
    assert chunk.id != document_to_chunk(LCDocument(page_content="abd", metadata={"source": "https://x.org/a"})).id


# --- out: our retrieval as a BaseRetriever ------------------------------------------------------------


def test_retriever_returns_the_pipelines_hits_as_documents(fake_rag: RAG) -> None:
    retriever = as_retriever(rag=fake_rag, top_k=3)
    assert isinstance(retriever, RagRetriever)
    documents = retriever.invoke("topic3 facts")
    hits = fake_rag.query("topic3 facts", top_k=3)
    assert [d.id for d in documents] == [h.id for h in hits] and len(documents) == 3
    assert [document_to_chunk(d) for d in documents] == [h.chunk for h in hits]
    assert [d.metadata["score"] for d in documents] == pytest.approx([h.score for h in hits])
    assert documents[0].metadata["source"] == "doc3.md"
    assert len(retriever.invoke("topic3 facts", top_k=1)) == 1
    assert asyncio.run(retriever.ainvoke("topic3 facts")) == documents


def test_retriever_opens_an_index_folder_with_its_stored_pipeline(fake_rag: RAG) -> None:
    retriever = as_retriever(index=fake_rag.folder.root, top_k=2, allowed=ALLOWED)
    assert retriever.rag is not None and retriever.rag.pipeline.name == "fake"
    assert [d.metadata["source"] for d in retriever.invoke("topic3 facts")] == ["doc3.md", "doc3.md"]
    batch = retriever.batch(["topic0 facts", "topic2 facts"])  # threads: queries are serialised per retriever
    assert [docs[0].metadata["source"] for docs in batch] == ["doc0.md", "doc2.md"]


def test_retriever_settings_are_checked_when_built(fake_rag: RAG, tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="no index at"):
        as_retriever(index=tmp_path / "missing")
    with pytest.raises(ConfigError, match="either index "):
        as_retriever(index=fake_rag.folder.root, rag=fake_rag)
    with pytest.raises(ConfigError, match="either index "):
        as_retriever()
    with pytest.raises(ConfigError, match="pipeline and allowed go with index;"):
        as_retriever(rag=fake_rag, pipeline="default")
    with pytest.warns(DeprecationWarning, match="now as_retriever"):
        old = as_retriever(index_dir=fake_rag.folder.root, allowed=ALLOWED)
    assert old.index == str(fake_rag.folder.root)
    with pytest.raises(ConfigError, match="top_k must be None or an integer >= 1, got 0"):
        as_retriever(rag=fake_rag, top_k=0)
    with pytest.raises(ConfigError, match="top_k"):
        as_retriever(rag=fake_rag).invoke("topic1", top_k=-1)


# --- out: embeddings ------------------------------------------------------------------------------------


class _TableEmbedder:
    """A dense embedder honouring `encode_queries` / `encode_documents`: hashed bag of words."""

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return np.array([[len(t), 1.0, 0.0] for t in texts], dtype=np.float32)

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        return np.array([[len(t), 0.0, 1.0] for t in texts], dtype=np.float32)


def test_embeddings_use_query_and_document_encoders() -> None:
    embeddings = RagEmbeddings(embedder=_TableEmbedder())
    assert embeddings.embed_query("abc") == [3.0, 1.0, 0.0]
    assert embeddings.embed_documents(["a", "bb"]) == [[1.0, 0.0, 1.0], [2.0, 0.0, 1.0]]
    assert asyncio.run(embeddings.aembed_query("abcd")) == [4.0, 1.0, 0.0]
    with pytest.raises(ConfigError, match="not both"):
        RagEmbeddings("other/model", embedder=_TableEmbedder())
    with pytest.raises(ConfigError, match="has no encode_queries"):
        RagEmbeddings(embedder=object())  # type: ignore[arg-type]


def test_embeddings_of_a_pipeline_are_its_dense_retrievers() -> None:
    dense = DenseRetriever(device="cpu")  # nothing loads until the first embedding
    pipeline = Pipeline({"dense": dense, "vec": HashRetriever()}, inputs={"query": ["dense.query", "vec.query"]})
    assert as_embeddings(pipeline=pipeline).embedder is dense.embedder
    two = Pipeline(
        {"a": DenseRetriever(device="cpu"), "b": DenseRetriever(device="cpu", top_k=3)},
        inputs={"query": ["a.query", "b.query"]},
        outputs={"a": "a.hits", "b": "b.hits"},
    )
    with pytest.raises(ConfigError, match="has 2 dense retrievers"):
        as_embeddings(pipeline=two)
    assert as_embeddings(pipeline=two, component="b").embedder is two.components["b"].embedder
    with pytest.raises(ConfigError, match="no dense retriever named 'c'"):
        as_embeddings(pipeline=two, component="c")


# --- out: the generator as a chat model -----------------------------------------------------------------


def test_chat_model_replies_with_usage_and_maps_standard_parameters() -> None:
    echo = EchoGenerator()
    model = RagChatModel(generator=echo, max_tokens=3, stop=["."])
    reply = model.invoke([SystemMessage("be brief"), HumanMessage("one two three four")])
    assert reply.content == "one two three"
    assert reply.usage_metadata == {"input_tokens": 6, "output_tokens": 3, "total_tokens": 9}
    assert reply.response_metadata["model_name"] == "EchoGenerator"
    assert echo.last_decoding == {"max_tokens": 3, "stop": ["."]}
    model.invoke("hi", temperature=0, stop=["x"])
    assert echo.last_decoding == {"max_tokens": 3, "strategy": "greedy", "temperature": None, "stop": ["x"]}
    model.invoke("hi", temperature=0.7, decoding={"seed": 1, "max_tokens": 9})
    assert echo.last_decoding == {"seed": 1, "max_tokens": 3, "strategy": "sample", "temperature": 0.7, "stop": ["."]}
    RagChatModel(generator=echo, decoding={"strategy": "best_of_n"}, temperature=0.5).invoke("hi")
    assert echo.last_decoding == {"strategy": "best_of_n", "temperature": 0.5}


def test_chat_model_streams_the_generators_pieces() -> None:
    model = RagChatModel(generator=EchoGenerator())
    chunks = list(model.stream("alpha beta gamma"))
    assert [c.content for c in chunks] == ["alpha", " beta", " gamma", ""]
    assert chunks[-1].chunk_position == "last" and chunks[-1].usage_metadata["output_tokens"] == 3
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    assert isinstance(full, AIMessageChunk) and full.content == "alpha beta gamma"
    stream = model.stream("one two three four five")
    assert next(stream).content == "one"
    stream.close()  # the worker's next on_token raises GenerationCancelled and it ends


def test_chat_model_refuses_what_a_generator_cannot_take() -> None:
    model = RagChatModel(generator=EchoGenerator())
    with pytest.raises(ConfigError, match="cannot send a ToolMessage"):
        model.invoke([HumanMessage("hi"), ToolMessage("42", tool_call_id="t1")])
    with pytest.raises(ConfigError, match="unsupported call option"):
        model.invoke("hi", tools=[])
    with pytest.raises(ConfigError, match="only text content"):
        model.invoke([HumanMessage([{"type": "image", "url": "https://x.org/a.png"}])])
    with pytest.raises(ConfigError, match="must be a rag generator component"):
        RagChatModel(generator=HashRetriever())


def test_chat_model_from_a_pipeline_takes_its_generator() -> None:
    pipeline = echo_pipeline()
    model = as_chat_model(pipeline, max_tokens=2)
    assert model.generator is pipeline.components["generator"]
    assert model.invoke("red green blue").content == "red green"
    with pytest.raises(ConfigError, match="no generator named 'vec'"):
        as_chat_model(pipeline, component="vec")
    with pytest.raises(ConfigError, match="has 0 generators"):
        as_chat_model(fake_pipeline())


def test_an_lcel_chain_runs_over_our_retriever_and_generator(fake_rag: RAG) -> None:
    seen: list[list[LCDocument]] = []

    def passages(documents: list[LCDocument]) -> str:
        seen.append(documents)
        return " ".join(d.page_content for d in documents)

    prompt = ChatPromptTemplate.from_messages([("human", "{context} || {question}")])
    retriever = as_retriever(rag=fake_rag, top_k=2)
    chain = (
        {"context": retriever | RunnableLambda(passages), "question": RunnablePassthrough()}
        | prompt
        | RagChatModel(generator=EchoGenerator(words=4))
        | StrOutputParser()
    )
    answer = chain.invoke("topic2 facts")
    assert [d.metadata["source"] for d in seen[-1]] == ["doc2.md", "doc2.md"]
    assert answer == " ".join(seen[-1][0].page_content.split()[:4])  # the echo of the top passage
    assert "".join(chain.stream("topic3 facts")) == " ".join(seen[-1][0].page_content.split()[:4])
    assert seen[-1][0].metadata["source"] == "doc3.md"
    assert asyncio.run(chain.ainvoke("topic0 facts")) == " ".join(seen[-1][0].page_content.split()[:4])


# --- LangChain's standard tests --------------------------------------------------------------------------


def async_standard_tests(cls: type) -> type:
    """Run a standard suite's `async def` tests with pytest-asyncio (which langchain-tests installs).

    The mark reaches the suite's sync tests too, which pytest-asyncio warns about; that warning is silenced.
    """
    cls = pytest.mark.asyncio(cls)
    return pytest.mark.filterwarnings("ignore:The test <Function .* is marked with '@pytest.mark.asyncio'")(cls)


@async_standard_tests
class TestRagRetrieverStandard(RetrieversIntegrationTests):
    """langchain-tests' retriever suite over the model-free index."""

    @pytest.fixture(autouse=True)
    def _index(self, fake_rag: RAG) -> None:
        self.rag = fake_rag

    @property
    def retriever_constructor(self) -> type[RagRetriever]:
        return RagRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"rag": self.rag, "top_k": 4}

    @property
    def retriever_query_example(self) -> str:
        return "topic1 facts"

    @property
    def num_results_arg_name(self) -> str:
        return "top_k"


class TestRagEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[RagEmbeddings]:
        return RagEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": "sentence-transformers/all-MiniLM-L6-v2", "device": "cpu"}


class TestRagChatModelUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[RagChatModel]:
        return RagChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"generator": EchoGenerator()}


@async_standard_tests
class TestRagChatModelStandard(ChatModelIntegrationTests):
    """langchain-tests' chat model suite, with the echoing generator in place of a model."""

    @property
    def chat_model_class(self) -> type[RagChatModel]:
        return RagChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"generator": EchoGenerator()}


def test_retriever_takes_filters_per_retriever_and_per_call(tmp_path: Path) -> None:
    from rag.retrieve.bm25 import BM25Retriever

    make_corpus(tmp_path / "docs", 6)
    pipeline = Pipeline(
        {"bm25": BM25Retriever(top_k=5)},
        inputs={"query": ["bm25.query"], "top_k": ["bm25.top_k"]},
        outputs={"hits": "bm25.hits"},
        indexing=IndexingSettings(chunker=CHUNKER),
    )
    rag = RAG(tmp_path / "index", pipeline)
    rag.index(tmp_path / "docs")
    only_two = as_retriever(rag=rag, filters="path in [doc2.md, doc4.md]")
    assert {d.metadata["source"] for d in only_two.invoke("topic facts")} == {"doc2.md", "doc4.md"}
    per_call = as_retriever(rag=rag).invoke("topic facts", filters={"path": "doc1.md"})
    assert {d.metadata["source"] for d in per_call} == {"doc1.md"}
