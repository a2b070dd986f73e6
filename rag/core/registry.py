"""Which component classes a pipeline file may name.

The project's own components are listed here by short name and imported only when used, so
`import rag` stays fast. Any other class must be allowed by its full dotted name
(`allowed=["mypackage.module.MyRetriever"]`); a pipeline file never triggers another import.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Collection

from rag.core.component import Component
from rag.core.errors import ConfigError

__all__ = ["BUILTIN_COMPONENTS", "resolve_type", "type_name"]

BUILTIN_COMPONENTS: dict[str, str] = {
    "BM25Retriever": "rag.retrieve.bm25:BM25Retriever",
    "DenseRetriever": "rag.retrieve.dense:DenseRetriever",
    "ColBERTRetriever": "rag.retrieve.colbert:ColBERTRetriever",
    "MatryoshkaRetriever": "rag.retrieve.matryoshka:MatryoshkaRetriever",
    "SpladeRetriever": "rag.retrieve.splade:SpladeRetriever",
    "LangChainRetriever": "rag.integrations.langchain_in:LangChainRetriever",
    "LangChainDenseRetriever": "rag.integrations.langchain_in:LangChainDenseRetriever",
    "ReciprocalRankFusion": "rag.fuse.rrf:ReciprocalRankFusion",
    "ScoreFusion": "rag.fuse.score:ScoreFusion",
    "CrossEncoderReranker": "rag.rerank.cross_encoder:CrossEncoderReranker",
    "LLMReranker": "rag.rerank.llm:LLMReranker",
    "MaxSimReranker": "rag.rerank.maxsim:MaxSimReranker",
    "PromptBuilder": "rag.generate.prompt:PromptBuilder",
    "TransformersGenerator": "rag.generate.transformers_generator:TransformersGenerator",
    "VLLMGenerator": "rag.generate.vllm_generator:VLLMGenerator",
    "OpenAIGenerator": "rag.generate.openai_generator:OpenAIGenerator",
    "SentenceReader": "rag.answer.reader:SentenceReader",
    "AnswerBuilder": "rag.answer.builder:AnswerBuilder",
    "RecursiveChunker": "rag.ingest.chunkers.recursive:RecursiveChunker",
    "MarkdownChunker": "rag.ingest.chunkers.markdown:MarkdownChunker",
    "SentenceChunker": "rag.ingest.chunkers.sentence:SentenceChunker",
}


def type_name(cls: type) -> str:
    """The name a pipeline file uses for `cls`: its short name if built in, else module.Class."""
    if BUILTIN_COMPONENTS.get(cls.__name__) == f"{cls.__module__}:{cls.__qualname__}":
        return cls.__name__
    return f"{cls.__module__}.{cls.__qualname__}"


def resolve_type(name: str, allowed: Collection[str] = (), where: str = "") -> type[Component]:
    """The component class for `name`: a built-in short name, or a dotted name in `allowed`."""
    prefix = f"{where}: " if where else ""
    if name in BUILTIN_COMPONENTS:
        target = BUILTIN_COMPONENTS[name]
    elif name in allowed:
        module, _, qualname = name.rpartition(".")
        target = f"{module}:{qualname}"
    else:
        close = difflib.get_close_matches(name, list(BUILTIN_COMPONENTS), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(
            f"{prefix}unknown component type '{name}'; {hint}built-in types are "
            f"{', '.join(sorted(BUILTIN_COMPONENTS))}; a class of your own must be allowed by its "
            f"full name (allowed=['{name if '.' in name else 'package.module.' + name}'])"
        )
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{prefix}component type '{name}' cannot be imported from {module_name}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Component)):
        raise ConfigError(f"{prefix}'{name}' is not a rag Component subclass")
    return cls
