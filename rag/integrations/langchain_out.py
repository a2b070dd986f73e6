"""Our retrieval and embedders as LangChain objects: `RagRetriever` (a `BaseRetriever`) and `RagEmbeddings`.

`RagRetriever` runs a pipeline's `hits` output over an index folder, exactly as `RAG.query` does, and
returns each hit as a LangChain `Document` (`hit_to_document`: id, text, ``source``, offsets, ``score``
and the chunk's metadata). Queries are run one at a time per retriever (the pipeline's models are not
shared between threads); `ainvoke` runs the query in a worker thread, off the event loop.

`RagEmbeddings` puts a dense embedder behind LangChain's `Embeddings`: documents through
`encode_documents`, queries through `encode_query`, so models with query and document prompts get
them, and vectors normalized like the index's when taken from a pipeline (`from_pipeline`).
"""

from __future__ import annotations

import asyncio
import os
import threading
import warnings
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from rag.core.errors import MissingDependencyError

try:
    from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
    from langchain_core.documents import Document as LCDocument
    from langchain_core.embeddings import Embeddings
    from langchain_core.retrievers import BaseRetriever
    from pydantic import Field, PrivateAttr, model_validator
except ImportError as exc:  # pragma: no cover - exercised with langchain-core hidden
    raise MissingDependencyError("langchain-core", "langchain", "the LangChain integration") from exc

from rag.api import RAG
from rag.core.errors import ConfigError
from rag.core.pipeline import Pipeline
from rag.core.serialization import load_pipeline
from rag.embed.base import Embedder
from rag.embed.dense import SentenceTransformerEmbedder
from rag.integrations.langchain_documents import hit_to_document
from rag.retrieve.dense import DenseRetriever

__all__ = ["RagEmbeddings", "RagRetriever", "as_embeddings", "as_retriever"]


class RagRetriever(BaseRetriever):
    """A pipeline over an index folder as a LangChain retriever.

    Give `index` (an index's own folder, as `RAG(index)` takes it; with `pipeline`: a `Pipeline`, a shipped
    name or a YAML path; left out, the pipeline the index was built with) or an open `rag` (a `RAG`).
    `index_dir`, its old name, is accepted with a DeprecationWarning until the next release. `top_k` is the
    number of documents returned (None: the pipeline's own); ``invoke(query, top_k=3)`` overrides it for one call.
    `filters` (a metadata filter's string or JSON form, docs/filters.md) keeps only the chunks that pass, inside the
    search; ``invoke(query, filters=...)`` gives one for one call (LangChain's `search_kwargs` style).
    `allowed` lists your own component classes by dotted name, as `RAG` takes them.
    """

    index: str | None = None
    pipeline: Pipeline | str | None = None
    top_k: int | None = None
    filters: str | dict[str, Any] | None = None
    allowed: list[str] = Field(default_factory=list)
    rag: RAG | None = None
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, data: Any) -> Any:
        if isinstance(data, dict) and "index_dir" in data:
            warnings.warn(
                "RagRetriever(index_dir=...) is now index=... (an index's own folder; --index-dir in the CLI is the "
                "folder holding indexes); index_dir is accepted until the next release",
                DeprecationWarning,
                stacklevel=4,
            )
            data = {**data, "index": data.get("index") or data["index_dir"]}
            del data["index_dir"]
        return data

    @model_validator(mode="after")
    def _open(self) -> RagRetriever:
        if (self.rag is None) == (self.index is None):
            raise ConfigError("RagRetriever: give either index (an index folder) or rag (a RAG), not both")
        if self.rag is not None and (self.pipeline is not None or self.allowed):
            raise ConfigError("RagRetriever: pipeline and allowed go with index; a RAG has its own pipeline")
        _check_top_k(self.top_k)
        if self.rag is None:
            assert self.index is not None
            self.rag = RAG(self.index, self.pipeline, self.allowed)
        self.rag.folder.require_current()  # a missing index is an error now, not at the first query
        pipeline = self.rag.pipeline
        if "hits" not in pipeline.outputs:
            raise ConfigError(
                f"RagRetriever: pipeline '{pipeline.name}' has no 'hits' output (outputs: "
                f"{', '.join(pipeline.outputs)}); declare one under 'outputs' in the pipeline file"
            )
        return self

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        top_k: int | None = None,
        filters: str | dict[str, Any] | None = None,
    ) -> list[LCDocument]:
        limit = _check_top_k(top_k if top_k is not None else self.top_k)
        assert self.rag is not None
        with self._lock:
            hits = self.rag.query(query, limit, filters if filters is not None else self.filters)
        return [hit_to_document(hit) for hit in hits[:limit]]

    async def _aget_relevant_documents(
        self,
        query: str,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        top_k: int | None = None,
        filters: str | dict[str, Any] | None = None,
    ) -> list[LCDocument]:
        return await asyncio.to_thread(
            self._get_relevant_documents, query, run_manager=run_manager.get_sync(), top_k=top_k, filters=filters
        )


def as_retriever(
    index: str | os.PathLike[str] | None = None,
    pipeline: Pipeline | str | os.PathLike[str] | None = None,
    top_k: int | None = None,
    *,
    rag: RAG | None = None,
    allowed: Collection[str] = (),
    filters: str | dict[str, Any] | None = None,
    index_dir: str | os.PathLike[str] | None = None,
) -> RagRetriever:
    """Our retrieval over the index folder `index` (or an open `rag`) as a LangChain `BaseRetriever`; see
    `RagRetriever`. `index_dir` is the old name of `index`, accepted until the next release."""
    if index_dir is not None:
        warnings.warn(
            "as_retriever(index_dir=...) is now as_retriever(index=...); index_dir is accepted until the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        index = index if index is not None else index_dir
    return RagRetriever(
        index=None if index is None else str(index),
        pipeline=str(pipeline) if isinstance(pipeline, os.PathLike) else pipeline,
        top_k=top_k,
        rag=rag,
        allowed=list(allowed),
        filters=filters,
    )


class RagEmbeddings(Embeddings):
    """A dense embedder of ours as LangChain `Embeddings`.

    Built from `model` (a sentence-transformers name or folder; packaged models resolve offline, see
    `rag.runtime.models`), `device` ("auto", "cpu" or "cuda"), `batch_size` and `normalize`, or wrapping an
    already built `embedder` (then those four must be left at their defaults). The model loads on the
    first call.
    """

    def __init__(
        self,
        model: str = "sentence-transformers/all-MiniLM-L6-v2",
        device: str = "auto",
        batch_size: int = 32,
        normalize: bool = True,
        *,
        embedder: Embedder | None = None,
    ) -> None:
        if embedder is None:
            embedder = SentenceTransformerEmbedder(model, device=device, batch_size=batch_size, normalize=normalize)
        elif (model, device, batch_size, normalize) != ("sentence-transformers/all-MiniLM-L6-v2", "auto", 32, True):
            raise ConfigError(
                "RagEmbeddings: give either embedder or model/device/batch_size/normalize, not both "
                f"(got embedder={type(embedder).__name__} and model={model!r})"
            )
        for method in ("encode_queries", "encode_documents"):
            if not callable(getattr(embedder, method, None)):
                raise ConfigError(f"RagEmbeddings: the embedder {embedder!r} has no {method}() method")
        self.embedder = embedder

    @classmethod
    def from_pipeline(
        cls, pipeline: Pipeline | str | os.PathLike[str], component: str | None = None, allowed: Collection[str] = ()
    ) -> RagEmbeddings:
        """The embedder of a pipeline's dense retriever (`component`: its name, needed when there are several)."""
        if not isinstance(pipeline, Pipeline):
            pipeline = load_pipeline(pipeline, allowed)
        dense = {name: c.embedder for name, c in pipeline.components.items() if isinstance(c, DenseRetriever)}
        if component is not None:
            if component not in dense:
                raise ConfigError(
                    f"pipeline '{pipeline.name}' has no dense retriever named '{component}' "
                    f"(dense retrievers: {', '.join(dense) or 'none'})"
                )
            return cls(embedder=dense[component])
        if len(dense) != 1:
            raise ConfigError(
                f"pipeline '{pipeline.name}' has {len(dense)} dense retrievers ({', '.join(dense) or 'none'}); "
                "name the one to use with component=..."
            )
        return cls(embedder=next(iter(dense.values())))

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, embedded as documents."""
        return _rows(self.embedder.encode_documents(list(texts)))

    def embed_query(self, text: str) -> list[float]:
        """The vector of one query."""
        return _rows(self.embedder.encode_queries([text]))[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)


def as_embeddings(
    model: str | None = None,
    *,
    pipeline: Pipeline | str | Path | None = None,
    component: str | None = None,
    device: str = "auto",
    allowed: Collection[str] = (),
) -> RagEmbeddings:
    """LangChain `Embeddings` for `model`, or for the dense retriever of `pipeline` (the index's vectors)."""
    if pipeline is not None:
        if model is not None:
            raise ConfigError("as_embeddings: give a model or a pipeline, not both")
        return RagEmbeddings.from_pipeline(pipeline, component, allowed)
    return RagEmbeddings(model or "sentence-transformers/all-MiniLM-L6-v2", device=device)


def _rows(vectors: np.ndarray) -> list[list[float]]:
    return np.asarray(vectors, dtype=np.float64).tolist()


def _check_top_k(top_k: int | None) -> int | None:
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ConfigError(f"RagRetriever: top_k must be None or an integer >= 1, got {top_k!r}")
    return top_k
