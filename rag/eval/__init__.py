"""Retrieval evaluation on BEIR-format datasets: `rag eval`."""
