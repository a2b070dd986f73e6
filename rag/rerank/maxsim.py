"""Late-interaction reranking: MaxSim over token embeddings, without a multi-vector index."""

from __future__ import annotations

from collections.abc import Sequence

from rag.embed.multivector import MultiVectorEmbedder, maxsim
from rag.rerank.base import Reranker

__all__ = ["MaxSimReranker"]


class MaxSimReranker(Reranker):
    """Scores each passage by ColBERT's MaxSim: Σ over query tokens of the best-matching passage token.

    Token embeddings come from `MultiVectorEmbedder` (any transformer encoder, or a PyLate/ColBERT
    model folder), computed for the query and the first stage's passages at query time, so a dense
    or hybrid first stage can be refined by late interaction without a multi-vector index.
    `query_length` and `document_length` cap the tokens read (longer queries are truncated with a
    warning). The score grows with the number of query tokens, so `score_threshold` depends on it.
    """

    def __init__(
        self,
        model: str = "sentence-transformers/all-MiniLM-L6-v2",
        top_k: int | None = 10,
        score_threshold: float | None = None,
        batch_size: int = 32,
        query_length: int = 32,
        document_length: int = 256,
        device: str = "auto",
    ) -> None:
        self.check_settings(top_k, score_threshold)
        self.model = model
        self.top_k = top_k
        self.score_threshold = score_threshold
        self.batch_size = batch_size
        self.query_length = query_length
        self.document_length = document_length
        self.device = device
        self._embedder = MultiVectorEmbedder(
            model, device=device, batch_size=batch_size, query_length=query_length, document_length=document_length
        )

    def warm_up(self) -> None:
        """Load the encoder."""
        self._embedder.load()

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        """MaxSim of the query's token vectors against each text's."""
        query_tokens = self._embedder.encode_queries([query])[0]
        return [maxsim(query_tokens, tokens) for tokens in self._embedder.encode_documents(texts)]
