"""A shared server over a small BM25 index with the echo generator (fast: no models)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serve.fakes import EchoGenerator, answer_pipeline
from tests.serve.helpers import build_index, serving


@pytest.fixture(scope="module")
def echo_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_index(tmp_path_factory.mktemp("serve"), answer_pipeline())


@pytest.fixture(scope="module")
def generator() -> EchoGenerator:
    return EchoGenerator(words=6, source="passage")


@pytest.fixture(scope="module")
def client(echo_index: Path, generator: EchoGenerator) -> Iterator[httpx.Client]:
    with serving(echo_index, answer_pipeline(generator), max_top_k=10, max_tokens=64) as c:
        yield c
