"""Property-based fuzzing of the OpenAPI document with schemathesis: no request gets a 5xx answer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install 'rag[dev]')")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from tests.serve.fakes import answer_pipeline  # noqa: E402
from tests.serve.helpers import DOCS, serving  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    index = tmp_path_factory.mktemp("fuzz") / "uploads"
    with serving(index, answer_pipeline(), max_top_k=20, max_tokens=32) as client:
        files = [("files", (name, text.encode(), "text/markdown")) for name, text in DOCS.items()]
        job = client.post("/v1/documents", files=files).json()["job"]
        while client.get(f"/v1/jobs/{job['id']}").json()["status"] in ("queued", "running"):
            time.sleep(0.05)
        yield str(client.base_url)


def test_no_request_gets_a_server_error(live: str) -> None:
    schema = schemathesis.openapi.from_url(live + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def no_server_error(case: Any) -> None:
            response = case.call(base_url=live)
            where = f"{case.method} {case.formatted_path} body={case.body!r:.300}"
            assert response.status_code < 500, f"{where} -> {response.status_code}: {response.text[:300]}"
            if response.status_code >= 400:
                assert set(response.json()["error"]) == {"message", "type", "param", "code"}, where

        no_server_error()
