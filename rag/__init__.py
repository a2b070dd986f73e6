"""rag: retrieval-augmented generation with composable pipelines and incremental folder indexing.

    from rag import RAG
    rag = RAG("indexes/docs")          # an index folder; the pipeline defaults to "default"
    rag.index("docs/")                 # only new and changed files are embedded
    rag.query("how are indexes updated?")
    rag.ask("how are indexes updated?")

Public names are imported lazily, so `import rag` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rag.version import __version__

_EXPORTS = {
    "RAG": "rag.api",
    "IndexReport": "rag.indexer",
    "index_folder": "rag.indexer",
    "Component": "rag.core.component",
    "Variadic": "rag.core.component",
    "Pipeline": "rag.core.pipeline",
    "IndexingSettings": "rag.core.pipeline",
    "load_pipeline": "rag.core.serialization",
    "loads_pipeline": "rag.core.serialization",
    "dump_pipeline": "rag.core.serialization",
    "Document": "rag.core.types",
    "Chunk": "rag.core.types",
    "Hit": "rag.core.types",
    "Answer": "rag.core.types",
    "Citation": "rag.core.types",
    "Claim": "rag.core.types",
    "RagError": "rag.core.errors",
}

__all__ = [
    "RAG",
    "Answer",
    "Chunk",
    "Citation",
    "Claim",
    "Component",
    "Document",
    "Hit",
    "IndexReport",
    "IndexingSettings",
    "Pipeline",
    "RagError",
    "Variadic",
    "__version__",
    "dump_pipeline",
    "index_folder",
    "load_pipeline",
    "loads_pipeline",
]

if TYPE_CHECKING:
    from rag.api import RAG
    from rag.core.component import Component, Variadic
    from rag.core.errors import RagError
    from rag.core.pipeline import IndexingSettings, Pipeline
    from rag.core.serialization import dump_pipeline, load_pipeline, loads_pipeline
    from rag.core.types import Answer, Chunk, Citation, Claim, Document, Hit
    from rag.indexer import IndexReport, index_folder


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rag' has no attribute {name!r}")
