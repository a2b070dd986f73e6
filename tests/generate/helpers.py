"""Constants shared by the tests that run the real SmolLM2."""

from __future__ import annotations

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
MAX_TOKENS = 8
"""The `smollm2` fixture's reply length: short, so the whole module runs in well under a minute."""
