"""Cross-encoder reranking with sentence-transformers' `CrossEncoder` (imported when the model loads)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rag.core.errors import ConfigError, MissingDependencyError, ModelLoadError
from rag.rerank.base import Reranker
from rag.runtime.devices import TORCH_DEVICES, torch_device
from rag.runtime.models import resolve_model

if TYPE_CHECKING:
    from sentence_transformers.cross_encoder import CrossEncoder

__all__ = ["CrossEncoderReranker"]

logger = logging.getLogger(__name__)


class CrossEncoderReranker(Reranker):
    """Scores each (query, passage) pair jointly with a cross-encoder: slow, and the most accurate.

    `model` is a hub name or a local folder (one written by `rag train reranker`, say). Scores
    are the model's outputs after its activation (a probability for the usual one-label models),
    so `score_threshold` is on that scale. Pairs go through the model `batch_size` at a time,
    truncated to `max_length` tokens (None: the model's own limit).
    """

    def __init__(
        self,
        model: str = "cross-encoder/ms-marco-MiniLM-L6-v2",
        top_k: int | None = 10,
        score_threshold: float | None = None,
        batch_size: int = 32,
        max_length: int | None = 512,
        device: str = "auto",
    ) -> None:
        self.check_settings(top_k, score_threshold)
        if batch_size < 1:
            raise ConfigError(f"CrossEncoderReranker: batch_size must be >= 1, got {batch_size}")
        if device not in TORCH_DEVICES:
            raise ConfigError(f"CrossEncoderReranker: device must be one of {', '.join(TORCH_DEVICES)}, got {device!r}")
        self.model = model
        self.top_k = top_k
        self.score_threshold = score_threshold
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device
        self._model: CrossEncoder | None = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the model (once)."""
        with self._lock:
            if self._model is None:
                self._model = self._load()

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        """The cross-encoder's score of (query, text) for each text."""
        self.warm_up()
        assert self._model is not None
        scores = self._model.predict(
            [(query, text) for text in texts], batch_size=self.batch_size, show_progress_bar=False
        )
        return [float(s) for s in scores]

    def _load(self) -> CrossEncoder:
        try:
            from sentence_transformers.cross_encoder import CrossEncoder
        except ImportError as exc:
            raise MissingDependencyError("sentence-transformers", "embed", "CrossEncoderReranker") from exc
        device = torch_device(self.device, "CrossEncoderReranker")
        path = resolve_model(self.model)
        try:
            model = CrossEncoder(path, device=device, max_length=self.max_length)
        except Exception as exc:
            raise ModelLoadError(
                f"CrossEncoderReranker cannot load the cross-encoder '{self.model}' (looked for a local folder "
                f"'{path}', then the Hugging Face hub): {str(exc).strip()[:300]}. No trained cross-encoder ships as "
                "a package: train one from your relevance labels with `rag train reranker DATASET_DIR --split train` "
                "and give its folder, or give a hub name with hub access (pip install 'rag[embed]')"
            ) from exc
        logger.info("loaded cross-encoder %s from %s on %s", self.model, path, device)
        return model
