"""The project's own component classes by short name (`module:Class`), and the name a pipeline file uses for a
class. Plain data: `rag.core.registry` resolves the names, `Component.to_dict` writes them."""

from __future__ import annotations

__all__ = ["BUILTIN_COMPONENTS", "type_name"]

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
    "LlamaCppGenerator": "rag.generate.llamacpp_generator:LlamaCppGenerator",
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
