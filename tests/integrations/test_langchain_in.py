"""The "in" direction without models: LangChain retrievers, embeddings and loaders inside our pipelines.

The LangChain side is langchain-core's own in-memory vector store and deterministic fake embeddings and a
`BaseLoader` over a list; our side the model-free `tests.fakes.HashRetriever` index.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rag.core.errors import ConfigError, IncompatibleIndexError, LoaderError

pytest.importorskip("langchain_core")

from langchain_core.document_loaders import BaseLoader
from langchain_core.documents import Document as LCDocument
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_core.vectorstores import InMemoryVectorStore

from rag.api import RAG
from rag.core.pipeline import IndexingSettings, Pipeline
from rag.core.serialization import dump_pipeline, loads_pipeline
from rag.fuse.rrf import ReciprocalRankFusion
from rag.indexer import IndexReport
from rag.ingest.chunkers.recursive import RecursiveChunker
from rag.integrations.langchain import (
    LangChainDenseRetriever,
    LangChainRetriever,
    as_retriever,
    index_documents,
    load_documents,
    register,
    unregister,
)
from tests.fakes import HashRetriever
from tests.indexing_helpers import fake_pipeline, make_corpus
from tests.retrieve.contract import round_trip

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


@pytest.fixture
def names() -> Iterator[list[str]]:
    """Names registered by a test, unregistered after it."""
    registered: list[str] = []
    yield registered
    for name in registered:
        unregister(name)


class ListLoader(BaseLoader):
    """A LangChain document loader over a list (a real `BaseLoader`, without files)."""

    def __init__(self, documents: list[LCDocument]) -> None:
        self.documents = documents

    def lazy_load(self) -> Iterator[LCDocument]:
        yield from self.documents


# --- loaders: documents ------------------------------------------------------------------------------


def test_loader_documents_get_unique_paths_and_titles() -> None:
    pages = [LCDocument(page_content=f"page {i}", metadata={"source": "dir/report.pdf", "page": i}) for i in range(3)]
    loose = LCDocument(page_content="no source", id="doc-7")
    anonymous = LCDocument(page_content="nothing at all")
    documents = load_documents(ListLoader([*pages, loose, anonymous]))
    assert [d.path for d in documents[:4]] == ["dir/report.pdf", "dir/report.pdf#2", "dir/report.pdf#3", "doc-7"]
    assert documents[4].path.startswith("document-") and len(documents[4].path) == len("document-") + 12
    assert documents[1].metadata == {"source": "dir/report.pdf", "page": 1, "title": "report.pdf"}
    with pytest.raises(ConfigError, match="expected LangChain Documents"):
        load_documents(["plain text"])  # type: ignore[list-item]


# --- in: LangChain retrievers, embeddings and loaders in our pipelines ----------------------------------


def _vector_store_retriever(texts: dict[str, str], k: int = 4) -> Any:
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents([LCDocument(page_content=text, metadata={"source": path}) for path, text in texts.items()])
    return store.as_retriever(search_kwargs={"k": k})


def test_a_langchain_retriever_fuses_with_ours_and_the_pipeline_round_trips(fake_rag: RAG, names: list[str]) -> None:
    names.append(register("memory", _vector_store_retriever({"web/a": "alpha", "web/b": "beta", "web/c": "gamma"})))
    pipeline = Pipeline(
        {"vec": HashRetriever(), "lc": LangChainRetriever(retriever="memory", top_k=2), "rrf": ReciprocalRankFusion()},
        connections=[("vec.hits", "rrf.hits"), ("lc.hits", "rrf.hits")],
        inputs={"query": ["vec.query", "lc.query"]},
        outputs={"hits": "rrf.hits", "lc": "lc.hits"},
        indexing=IndexingSettings(chunker=fake_pipeline().indexing.chunker),
        name="mixed",
    )
    assert loads_pipeline(dump_pipeline(pipeline), ALLOWED) == pipeline  # plain settings: YAML round-trips
    assert "type: LangChainRetriever" in dump_pipeline(pipeline)
    RAG(fake_rag.folder.root, pipeline).refresh()  # same chunker and HashRetriever as the index: attach it
    result = pipeline.run({"query": "topic2 facts"}, outputs=["hits", "lc"])
    lc_hits = result["lc"]
    assert len(lc_hits) == 2 and [h.score for h in lc_hits] == [1.0, 0.5]
    assert {h.chunk.path for h in lc_hits} <= {"web/a", "web/b", "web/c"}
    fused = result["hits"]
    assert {h.id for h in lc_hits} <= {h.id for h in fused}
    assert any(h.chunk.path == "doc2.md" for h in fused)


def test_our_retriever_through_langchain_and_back_keeps_every_chunk(fake_rag: RAG, names: list[str]) -> None:
    names.append(register("ours", lambda: as_retriever(rag=fake_rag, top_k=4)))  # a factory, built on first use
    component = LangChainRetriever(retriever="ours", score_key="score")
    hits = component.run("topic0 facts")["hits"]
    assert hits == fake_rag.query("topic0 facts", top_k=4)  # ids, text, path, offsets, metadata and scores


def test_a_langchain_retriever_component_says_what_is_missing(names: list[str]) -> None:
    with pytest.raises(ConfigError, match=r"no LangChain object is registered as 'nope'.*register\('nope', obj\)"):
        LangChainRetriever(retriever="nope")
    names.append(register("embedder", DeterministicFakeEmbedding(size=4)))
    component = LangChainRetriever(retriever="embedder")
    with pytest.raises(
        ConfigError, match="is registered as a DeterministicFakeEmbedding, not a LangChain BaseRetriever"
    ):
        component.run("q")
    names.append(register("unscored", _vector_store_retriever({"a": "alpha"})))
    with pytest.raises(ConfigError, match="no number under metadata key 'relevance'"):
        LangChainRetriever(retriever="unscored", score_key="relevance").run("alpha")
    with pytest.raises(ConfigError, match="must be a LangChain retriever or embeddings object"):
        register("text", "not an object")


class KeywordRetriever(LangChainRetriever):
    """A subclass that builds its LangChain retriever itself: usable from files with --allow, no register()."""

    def __init__(self, words: list[str], top_k: int | None = None) -> None:
        super().__init__(top_k=top_k)
        self.words = words

    def build(self) -> Any:
        return _vector_store_retriever({f"words/{w}": w for w in self.words}, k=len(self.words))


def test_a_subclass_builds_its_own_retriever_and_loads_from_yaml() -> None:
    component = KeywordRetriever(words=["red", "green", "blue"], top_k=3)
    assert component.run("green")["hits"][0].chunk.text == "green"  # same text, same fake vector
    pipeline = Pipeline({"kw": component}, inputs={"query": ["kw.query"]}, name="kw")
    name = f"{__name__}.KeywordRetriever"
    assert loads_pipeline(dump_pipeline(pipeline), [name]) == pipeline


def test_langchain_embeddings_drive_our_dense_retriever(tmp_path: Path, names: list[str]) -> None:
    pytest.importorskip("faiss")
    names.append(register("fake-16", DeterministicFakeEmbedding(size=16)))
    make_corpus(tmp_path / "docs", count=3)
    pipeline = Pipeline(
        {"dense": LangChainDenseRetriever(embeddings="fake-16", top_k=3)},
        inputs={"query": ["dense.query"], "top_k": ["dense.top_k"]},
        indexing=IndexingSettings(chunker=CHUNKER),
        name="lc-dense",
    )
    assert loads_pipeline(dump_pipeline(pipeline)) == pipeline
    assert pipeline.components["dense"].index_settings() == {
        "embeddings": "fake-16",
        "normalize": True,
        "precision": "float32",
        "factory": "Flat",
    }
    rag = RAG(tmp_path / "index", pipeline)
    assert rag.index(tmp_path / "docs").added == 3
    chunk = next(iter(rag.query("anything", top_k=1))).chunk
    top = rag.query(chunk.text, top_k=3)  # the fake embedding of a text is a fixed random vector
    assert top[0].chunk == chunk and top[0].score == pytest.approx(1.0, abs=1e-5)
    names.append(register("fake-8", DeterministicFakeEmbedding(size=8)))
    other = loads_pipeline(dump_pipeline(pipeline).replace("fake-16", "fake-8"))
    with pytest.raises(IncompatibleIndexError, match="embeddings='fake-16'"):
        RAG(tmp_path / "index", other).index(tmp_path / "docs")


class FakeDenseRetriever(LangChainDenseRetriever):
    """A subclass that builds its LangChain embeddings itself; its own settings identify the index."""

    def __init__(self, size: int = 16, top_k: int = 3) -> None:
        super().__init__(embeddings=f"fake-{size}", top_k=top_k)
        self.size = size

    def build(self) -> Any:
        return DeterministicFakeEmbedding(size=self.size)


def test_a_dense_subclass_builds_its_own_embeddings(tmp_path: Path) -> None:
    pytest.importorskip("faiss")
    make_corpus(tmp_path / "docs", count=2)
    component = FakeDenseRetriever(size=8)
    assert component.index_settings() == {"size": 8}
    pipeline = Pipeline(
        {"dense": component}, inputs={"query": ["dense.query"]}, indexing=IndexingSettings(chunker=CHUNKER)
    )
    assert loads_pipeline(dump_pipeline(pipeline), [f"{__name__}.FakeDenseRetriever"]) == pipeline
    rag = RAG(tmp_path / "index", pipeline)
    rag.index(tmp_path / "docs")
    chunk = rag.query("x")[0].chunk
    assert rag.query(chunk.text)[0].chunk == chunk


def test_a_loader_feeds_an_index_incrementally_with_metadata(tmp_path: Path) -> None:
    def doc(source: str, text: str, **metadata: Any) -> LCDocument:
        return LCDocument(page_content=text, metadata={"source": source, **metadata})

    pipeline = fake_pipeline()
    vec = pipeline.components["vec"]
    first = [
        doc("kb/otters", "Sea otters eat urchins. " * 8, author="Ada"),
        doc("kb/etna", "Etna is a volcano in Sicily. " * 8, author="Bo"),
        doc("kb/bread", "Yeast makes bread dough rise. " * 8, author="Cy"),
    ]
    report = index_documents(ListLoader(first), tmp_path / "index", pipeline)
    assert isinstance(report, IndexReport) and (report.added, report.failed, report.committed) == (3, 0, True)
    embedded = vec.embedded
    rag = RAG(tmp_path / "index", pipeline)
    hit = rag.query("otters urchins", top_k=1)[0]
    assert hit.chunk.path == "kb/otters" and hit.chunk.metadata["author"] == "Ada"
    assert hit.chunk.metadata["title"] == "otters"
    second = [
        doc("kb/otters", "Sea otters eat urchins. " * 8, author="Ann"),  # metadata only: nothing re-embedded
        doc("kb/etna", "Etna erupts often. " * 8, author="Bo"),  # changed text
    ]  # kb/bread is gone
    report = index_documents(ListLoader(second), tmp_path / "index", pipeline)
    assert (report.added, report.changed, report.removed, report.unchanged) == (0, 2, 1, 0)
    assert vec.embedded - embedded == report.chunks_embedded > 0  # only the new Etna chunks
    assert rag.query("otters urchins", top_k=1)[0].chunk.metadata["author"] == "Ann"
    assert all(h.chunk.path != "kb/bread" for h in rag.query("bread yeast", top_k=10))
    report = index_documents(ListLoader(second), tmp_path / "index", pipeline)
    assert (report.unchanged, report.committed) == (2, False)


def test_index_documents_refuses_other_sources_and_empty_documents(tmp_path: Path) -> None:
    make_corpus(tmp_path / "docs", count=1)
    RAG(tmp_path / "folder-index", fake_pipeline()).index(tmp_path / "docs")
    documents = [LCDocument(page_content="text", metadata={"source": "a"})]
    with pytest.raises(IncompatibleIndexError, match=r"mirrors .*docs, not langchain:documents"):
        index_documents(documents, tmp_path / "folder-index", allowed=ALLOWED)
    empty = [*documents, LCDocument(page_content="  ", metadata={"source": "b"})]
    with pytest.raises(LoaderError, match="1 document"):
        index_documents(empty, tmp_path / "new", fake_pipeline(), strict=True)
    assert RAG(tmp_path / "new").folder.current() is None  # nothing was written
    report = index_documents(empty, tmp_path / "new", fake_pipeline(), source="kb")
    assert report.failures == [{"path": "b", "reason": "the document has no text"}] and report.added == 1


class WordEmbeddings(Embeddings):
    """LangChain embeddings that count each word in one of 64 dimensions: texts sharing words are close."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        vector = [0.0] * 64
        for word in text.lower().replace(".", " ").split():
            vector[sum(map(ord, word)) % 64] += 1.0
        return vector


def test_the_langchain_dense_retriever_keeps_the_retriever_contract(tmp_path: Path, names: list[str]) -> None:
    pytest.importorskip("faiss")
    names.append(register("words-64", WordEmbeddings()))
    round_trip(lambda: LangChainDenseRetriever(embeddings="words-64", top_k=3), tmp_path)


def test_documents_metadata_from_python_filters_like_any_field(tmp_path: Path) -> None:
    from rag.core.pipeline import IndexingSettings, Pipeline
    from rag.ingest.chunkers.recursive import RecursiveChunker
    from rag.retrieve.bm25 import BM25Retriever

    bm25 = Pipeline(
        {"bm25": BM25Retriever()},
        inputs={"query": ["bm25.query"], "top_k": ["bm25.top_k"]},
        outputs={"hits": "bm25.hits"},
        indexing=IndexingSettings(chunker=RecursiveChunker(chunk_size=200, chunk_overlap=0, unit="chars")),
    )
    documents = [
        LCDocument(page_content="Sea otters eat urchins.", metadata={"source": "a", "customer": "acme", "year": 2026}),
        LCDocument(page_content="River otters eat fish.", metadata={"source": "b", "customer": "beta", "year": 2025}),
    ]
    index_documents(documents, tmp_path / "index", bm25)
    rag = RAG(tmp_path / "index", bm25)
    assert [h.chunk.path for h in rag.query("otters eat", filters="customer == acme")] == ["a"]
    assert [h.chunk.path for h in rag.query("otters eat", filters={"year": {"$lt": 2026}})] == ["b"]
