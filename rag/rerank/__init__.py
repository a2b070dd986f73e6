"""Rerankers: components that re-order a first stage's hits by a finer relevance score."""
