"""LangChain objects inside our pipelines: retrievers, embeddings and document loaders.

A LangChain object is not plain data, so a pipeline names it instead: `register(name, obj)` makes a
retriever or embeddings object (or a function of no arguments that builds one, called once, on first
use) known under `name`, and the components take that name as a setting:

    LangChainRetriever(retriever="wiki", top_k=5)      # its documents become hits (fusable with RRF)
    LangChainDenseRetriever(embeddings="openai-small")  # our FAISS dense retriever, LangChain's vectors

so a pipeline with them still dumps to YAML and loads back (``type: LangChainRetriever``), and loading
a pipeline file still imports nothing it names. Register before the pipeline is built. Where nobody can
call `register` first (``rag serve``, ``rag index``), subclass the component, build the object in
`build()`, and allow the subclass by its dotted name (``--allow mypkg.retrievers.WikiRetriever``).

Document loaders feed an index through `index_documents(loader, index, pipeline)`: the same
incremental update as ``rag index`` (unchanged documents are not re-embedded, documents the loader
no longer returns leave the index), with each document keyed by its ``source`` metadata and its
metadata copied onto its chunks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import threading
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from rag.core.errors import MissingDependencyError

try:
    from langchain_core.document_loaders import BaseLoader
    from langchain_core.documents import Document as LCDocument
    from langchain_core.embeddings import Embeddings
    from langchain_core.retrievers import BaseRetriever
except ImportError as exc:  # pragma: no cover - exercised with langchain-core hidden
    raise MissingDependencyError("langchain-core", "langchain", "the LangChain integration") from exc

from rag.api import RAG
from rag.core.component import Component
from rag.core.errors import ConfigError
from rag.core.pipeline import Pipeline
from rag.core.types import Chunk, Document, Hit
from rag.indexer import IndexReport, Progress
from rag.integrations.langchain_documents import document_to_hit, plain_metadata, to_rag_documents
from rag.retrieve.dense import DenseRetriever
from rag.store.chunk_store import ChunkStore, FileRecord

__all__ = [
    "LangChainDenseRetriever",
    "LangChainRetriever",
    "index_documents",
    "load_documents",
    "register",
    "registered",
    "unregister",
]

logger = logging.getLogger(__name__)

_REGISTRY: dict[str, Any] = {}
_BUILT: dict[str, Any] = {}
_LOCK = threading.RLock()  # a registered function may itself look names up


def register(name: str, obj: Any) -> str:
    """Make a LangChain object (or a no-argument function building one) usable by `name`; returns `name`.

    Registering a name again replaces the object for components built afterwards.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"register: the name must be a non-empty string, got {name!r}")
    if not (isinstance(obj, (BaseRetriever, Embeddings)) or callable(obj)):
        raise ConfigError(
            f"register: {name!r} must be a LangChain retriever or embeddings object, or a function of no "
            f"arguments that builds one; got {type(obj).__name__}"
        )
    with _LOCK:
        _REGISTRY[name] = obj
        _BUILT.pop(name, None)
    return name


def unregister(name: str) -> None:
    """Forget `name` (unknown names are ignored)."""
    with _LOCK:
        _REGISTRY.pop(name, None)
        _BUILT.pop(name, None)


def registered(name: str, kind: type, owner: str) -> Any:
    """The object registered as `name` (built on first use when a function was registered), checked to be a `kind`."""
    with _LOCK:
        if name not in _REGISTRY:
            raise ConfigError(_unregistered(name, owner))
        if name not in _BUILT:
            obj = _REGISTRY[name]
            _BUILT[name] = obj if isinstance(obj, (BaseRetriever, Embeddings)) else obj()
        built = _BUILT[name]
    if not isinstance(built, kind):
        raise ConfigError(
            f"{owner}: {name!r} is registered as a {type(built).__name__}, not a LangChain {kind.__name__}"
        )
    return built


def _unregistered(name: str, owner: str) -> str:
    known = ", ".join(sorted(_REGISTRY)) or "none"
    return (
        f"{owner}: no LangChain object is registered as {name!r} (registered: {known}); call "
        f"rag.integrations.langchain.register({name!r}, obj) before building the pipeline, or subclass "
        f"{owner} and override build()"
    )


class LangChainRetriever(Component):
    """A LangChain retriever as a pipeline component: `run(query, top_k)` -> hits.

    `retriever` is a name given to `register` (or None in a subclass that overrides `build()`). Each
    returned document becomes a hit (`document_to_hit`: its ``source`` is the chunk's path, its id the
    chunk id). The score is the document's metadata value under `score_key` when given, else 1 / rank,
    so the order is kept and the hits can be fused with `ReciprocalRankFusion`. `top_k` cuts the list
    (None: keep what the retriever returns); the LangChain retriever's own ``k`` decides how many it returns.
    `id_space` (see `Component.id_space`) optionally names where the documents' ids come from, so that a
    pipeline refuses to fuse them with hits of another id space: ``"chunks"`` for a LangChain retriever over
    this index's own chunks (one made by `as_retriever`); None (the default) leaves it unchecked, as for
    documents from another source, whose ids never meet the index's.
    """

    outputs: ClassVar[dict[str, Any]] = {"hits": list[Hit]}

    def __init__(
        self,
        retriever: str | None = None,
        top_k: int | None = None,
        score_key: str | None = None,
        id_space: str | None = None,
    ) -> None:
        owner = type(self).__name__
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ConfigError(f"{owner}: top_k must be None or an integer >= 1, got {top_k!r}")
        if type(self).build is LangChainRetriever.build:
            if not isinstance(retriever, str) or not retriever:
                raise ConfigError(f"{owner}: retriever must be a name given to register(), got {retriever!r}")
            if retriever not in _REGISTRY:
                raise ConfigError(_unregistered(retriever, owner))
        self.retriever = retriever
        self.top_k = top_k
        self.score_key = score_key
        self.id_space = id_space
        self._retriever: BaseRetriever | None = None

    def build(self) -> BaseRetriever:
        """The LangChain retriever; subclasses may build it here from their own settings."""
        return registered(str(self.retriever), BaseRetriever, type(self).__name__)

    def warm_up(self) -> None:
        if self._retriever is None:
            retriever = self.build()
            if not isinstance(retriever, BaseRetriever):
                raise ConfigError(
                    f"{type(self).__name__}.build() must return a LangChain BaseRetriever, got {retriever!r}"
                )
            self._retriever = retriever

    def run(self, query: str, top_k: int | None = None) -> dict[str, list[Hit]]:
        """The retriever's documents for `query` as hits, best first."""
        self.warm_up()
        assert self._retriever is not None
        documents = self._retriever.invoke(query)
        hits = [document_to_hit(doc, self._score(doc, rank)) for rank, doc in enumerate(documents, start=1)]
        limit = top_k or self.top_k
        return {"hits": hits[:limit] if limit else hits}

    def _score(self, document: LCDocument, rank: int) -> float:
        if self.score_key is None:
            return 1.0 / rank
        value = document.metadata.get(self.score_key)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            raise ConfigError(
                f"{type(self).__name__}: document {rank} has no number under metadata key {self.score_key!r} "
                f"(got {value!r}); set score_key to the key the retriever puts scores in, or None to score by rank"
            )
        return float(value)


class LangChainDenseRetriever(DenseRetriever):
    """Our dense retriever (FAISS index in the index folder) with vectors from LangChain `Embeddings`.

    `embeddings` is a name given to `register` (in a subclass that overrides `build()`, any name that
    identifies the model). It is part of the index settings, so an index is only reused with the same
    name: give a new name when the model behind it changes. `normalize` scales vectors to unit length so
    the inner product is the cosine; the other settings are `DenseRetriever`'s.
    """

    def __init__(
        self,
        embeddings: str,
        top_k: int = 20,
        normalize: bool = True,
        precision: str = "float32",
        factory: str = "Flat",
        rescore_multiplier: int = 4,
        rescore_precision: str = "float32",
        index_device: str = "auto",
    ) -> None:
        owner = type(self).__name__
        if not isinstance(embeddings, str) or not embeddings:
            raise ConfigError(f"{owner}: embeddings must be a name given to register(), got {embeddings!r}")
        if type(self).build is LangChainDenseRetriever.build and embeddings not in _REGISTRY:
            raise ConfigError(_unregistered(embeddings, owner))
        super().__init__(
            model=f"langchain:{embeddings}",
            top_k=top_k,
            device="cpu",
            normalize=normalize,
            precision=precision,
            factory=factory,
            rescore_multiplier=rescore_multiplier,
            rescore_precision=rescore_precision,
            index_device=index_device,
        )
        self.embeddings = embeddings
        self._embedder = _LangChainEmbedder(self, normalize)  # type: ignore[assignment]

    def build(self) -> Embeddings:
        """The LangChain embeddings; subclasses may build them here from their own settings."""
        return registered(self.embeddings, Embeddings, type(self).__name__)

    def index_settings(self) -> dict[str, Any]:
        """The settings that shape the stored vectors (a subclass's own settings, when it has others)."""
        settings = {k: v for k, v in self.settings.items() if k not in self.query_settings}
        if self.precision != "binary":
            settings.pop("rescore_precision", None)
        return settings


class _LangChainEmbedder:
    """The embedder interface `DenseRetriever` uses, over the retriever's LangChain `Embeddings`."""

    def __init__(self, owner: LangChainDenseRetriever, normalize: bool) -> None:
        self.owner = owner
        self.model = f"langchain:{owner.embeddings}"
        self.normalize = normalize
        self._built: Embeddings | None = None

    def load(self) -> None:
        self._embeddings()

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._array(self._embeddings().embed_documents(list(texts)) if texts else [])

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        embeddings = self._embeddings()
        return self._array([embeddings.embed_query(text) for text in texts])

    def _embeddings(self) -> Embeddings:
        if self._built is None:
            built = self.owner.build()
            if not isinstance(built, Embeddings):
                raise ConfigError(
                    f"{type(self.owner).__name__}.build() must return LangChain Embeddings, got {built!r}"
                )
            self._built = built
        return self._built

    def _array(self, rows: list[list[float]]) -> np.ndarray:
        vectors = np.asarray(rows, dtype=np.float32)
        if not len(rows):
            return vectors.reshape(0, 0)
        if vectors.ndim != 2:
            raise ConfigError(
                f"{type(self.owner).__name__}: embeddings {self.owner.embeddings!r} returned vectors of "
                "different lengths, or no vectors"
            )
        if self.normalize:
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(vectors, dtype=np.float32)


def load_documents(loader: BaseLoader | Iterable[LCDocument]) -> list[Document]:
    """Our documents from a LangChain loader (its `lazy_load()`) or from LangChain documents (`to_rag_documents`)."""
    return to_rag_documents(loader.lazy_load() if isinstance(loader, BaseLoader) else loader)


def index_documents(
    documents: BaseLoader | Iterable[LCDocument],
    index: str | os.PathLike[str],
    pipeline: Pipeline | str | os.PathLike[str] | None = None,
    *,
    source: str | None = None,
    allowed: Collection[str] = (),
    strict: bool = False,
    rebuild: bool = False,
    wait: float = 0.0,
    progress: Progress | None = None,
) -> IndexReport:
    """Bring the index in step with what a LangChain loader (or a list of LangChain documents) returns.

    Like ``rag index FOLDER``: `pipeline` as `RAG` takes it (left out: the index's own, else "default"),
    only new and changed documents are chunked and embedded, documents missing from this run are removed,
    and the update is committed atomically. `source` names the collection in the index manifest (default:
    ``langchain:`` and the loader's class); an index is only updated from the same source. A document
    with no text is reported as failed (with `strict`, nothing is written).
    """
    kind = type(documents)
    label = source or "langchain:" + (
        f"{kind.__module__}.{kind.__qualname__}" if isinstance(documents, BaseLoader) else "documents"
    )
    rag = RAG(index, pipeline, allowed)
    return rag.index(
        DocumentsSource(label, load_documents(documents), rag.pipeline),
        strict=strict,
        rebuild=rebuild,
        wait=wait,
        progress=progress,
    )


@dataclass
class DocumentsSource:
    """Documents (from a LangChain loader) as an index's source (`rag.indexer.Source`)."""

    label: str
    documents: list[Document]
    pipeline: Pipeline
    kind: str = ""
    mismatch_hint: str = "index these documents into another index or rebuild this one (rebuild=True)"
    failed_items: str = "document(s) could not be indexed"
    strict_name: str = "strict=True"

    def sync(self, store: ChunkStore, report: IndexReport, progress: Progress | None) -> bool:
        return _sync_documents(self.documents, store, self.pipeline, report, progress)


def _sync_documents(
    documents: list[Document], store: ChunkStore, pipeline: Pipeline, report: IndexReport, progress: Progress | None
) -> bool:
    """Update `store` from `documents`; returns whether any document was chunked anew.

    (Chunk ids derive from path and text, so a document whose metadata alone changed keeps its ids:
    the update must still be committed for the new metadata.)
    """
    assert pipeline.indexing is not None
    chunker = pipeline.indexing.chunker
    warmed = rewrote = False
    seen: set[str] = set()
    for done, document in enumerate(documents, start=1):
        seen.add(document.path)
        data = document.text.encode("utf-8", "surrogatepass")
        meta = json.dumps(document.metadata, sort_keys=True, ensure_ascii=False)
        digest = hashlib.sha256(data + b"\0" + meta.encode("utf-8", "surrogatepass")).hexdigest()
        record = store.files.get(document.path)
        if record is not None and record.sha256 == digest:
            report.unchanged += 1
        elif not document.text.strip():
            logger.info("skipped %s: no text", document.path)
            report.failed += 1
            report.failures.append({"path": document.path, "reason": "the document has no text"})
            store.remove_file(document.path)
        else:
            if not warmed:
                chunker.warm_up()
                warmed = True
            chunks = [_with_metadata(c, document.metadata) for c in chunker.run(document=document)["chunks"]]
            store.put_file(FileRecord(document.path, len(data), 0, digest, tuple(c.id for c in chunks)), chunks)
            rewrote = True
            report.changed += record is not None
            report.added += record is None
        if progress:
            progress("reading", done, len(documents))
    for path in sorted(set(store.files) - seen):
        store.remove_file(path)
        report.removed += 1
    return rewrote


def _with_metadata(chunk: Chunk, metadata: dict[str, Any]) -> Chunk:
    """The chunk with its document's metadata under its own (the chunker's title, pages... win)."""
    return dataclasses.replace(chunk, metadata=plain_metadata({**metadata, **chunk.metadata}))
