"""Queries longer than a model reads are truncated by the model; say so instead of staying silent."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

__all__ = ["warn_long_queries"]

logger = logging.getLogger(__name__)


def warn_long_queries(model: Any, texts: Sequence[str], model_name: str) -> None:
    """Log a warning for each text with more tokens than a sentence-transformers `model` reads.

    Models without a token limit or a callable Hugging Face tokenizer (static embeddings) are
    not checked.
    """
    limit = getattr(model, "max_seq_length", None)
    tokenizer = getattr(model, "tokenizer", None)
    if not texts or not limit or not callable(tokenizer):
        return
    counts = [len(ids) for ids in tokenizer(list(texts), add_special_tokens=True, verbose=False)["input_ids"]]
    for text, count in zip(texts, counts, strict=True):
        if count > limit:
            logger.warning(
                "query of %d tokens is longer than the %d that model %s reads; it is truncated: %.60r",
                count,
                limit,
                model_name,
                text,
            )
