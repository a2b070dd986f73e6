"""LangChain integration (langchain-core only): pip install 'rag[langchain]'.

Out, our parts as LangChain objects:

    as_retriever(index=..., pipeline=..., top_k=...)  -> RagRetriever, a BaseRetriever (invoke / ainvoke)
    as_embeddings(model=...) or as_embeddings(pipeline=...) -> RagEmbeddings, an Embeddings
    as_chat_model(pipeline="default", max_tokens=...)     -> RagChatModel, a BaseChatModel (a Runnable)
    chunk_to_document / hit_to_document / document_to_chunk / document_to_hit: metadata preserved

In, LangChain's parts inside our pipelines:

    register("name", obj)                        a LangChain retriever or embeddings object, by name
    LangChainRetriever(retriever="name")         a pipeline component whose output is hits (fusable)
    LangChainDenseRetriever(embeddings="name")   our FAISS dense retriever on LangChain vectors
    index_documents(loader, index, pipeline) a document loader feeding an index, incrementally

Importing this module without langchain-core raises `MissingDependencyError` naming the extra.
Details are in docs/langchain.md and the docstrings of the modules below.
"""

from __future__ import annotations

from rag.integrations.langchain_chat import RagChatModel, as_chat_model, to_chat_messages
from rag.integrations.langchain_documents import (
    chunk_to_document,
    document_to_chunk,
    document_to_hit,
    hit_to_document,
    to_rag_documents,
)
from rag.integrations.langchain_in import (
    LangChainDenseRetriever,
    LangChainRetriever,
    index_documents,
    load_documents,
    register,
    registered,
    unregister,
)
from rag.integrations.langchain_out import RagEmbeddings, RagRetriever, as_embeddings, as_retriever

__all__ = [
    "LangChainDenseRetriever",
    "LangChainRetriever",
    "RagChatModel",
    "RagEmbeddings",
    "RagRetriever",
    "as_chat_model",
    "as_embeddings",
    "as_retriever",
    "chunk_to_document",
    "document_to_chunk",
    "document_to_hit",
    "hit_to_document",
    "index_documents",
    "load_documents",
    "register",
    "registered",
    "to_chat_messages",
    "to_rag_documents",
    "unregister",
]
