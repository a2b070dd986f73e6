"""Property-based fuzzing of the OpenAPI document with schemathesis: every answer conforms to it.

No request gets a 5xx answer, and every answer has a status code its operation documents, a documented content
type, the documented headers and a body (for event streams: each event) that matches the documented schema;
every 4xx body is the error envelope.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install 'rag[dev]')")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis.core.failures import FailureGroup  # noqa: E402

from tests.serve.fakes import FakeEmbedder, answer_pipeline, retrieval_pipeline  # noqa: E402
from tests.serve.helpers import DOCS, build_index, serving  # noqa: E402

pytestmark = pytest.mark.slow

REFUSED_BY_DESIGN = "ST202"
"""`positive_data_acceptance`: a request the schema admits was refused. The server checks what a JSON schema
cannot say: decoding options that do not go together (min_p without sampling, best_of without its strategy), an
unknown scorer, a chat that does not end with a user message with text, a prompt of blanks, max_tokens over this
server's limit, an upload with neither files nor text, a file part sent without a file name, a model that cannot
do what is asked (no 'answer' output, no embedding model). It refuses those with a 400 or 422 envelope, by
design; that failure alone, with one of those statuses, is allowed."""


@dataclass(frozen=True)
class Live:
    url: str
    job: str
    models: list[str]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    index = tmp_path_factory.mktemp("fuzz") / "uploads"
    search = retrieval_pipeline(name="search")
    with serving(index, answer_pipeline(), search, max_top_k=20, max_tokens=32) as client:
        for pipeline in client.app.state.service.served["search"].pipelines:  # type: ignore[attr-defined]
            pipeline.components["bm25"].embedder = FakeEmbedder()
        files = [("files", (name, text.encode(), "text/markdown")) for name, text in DOCS.items()]
        job = client.post("/v1/documents", files=files).json()["job"]
        while client.get(f"/v1/jobs/{job['id']}").json()["status"] in ("queued", "running"):
            time.sleep(0.05)
        models = [model["id"] for model in client.get("/v1/models").json()["data"]]
        yield Live(str(client.base_url), job["id"], models)


STREAMING = ("/v1/answer", "/v1/chat/completions", "/v1/completions")
"""The operations that answer with an event stream when asked to (`stream`, a field generated only now and then)."""


def point_at_what_exists(case: Any, live: Live, model: str, stream: bool) -> None:
    """Name the things that exist (a served model, a job, an uploaded document), end a chat with a question, and
    ask for a stream or not, so that the answers of success are fuzzed too, not only the refusals of made-up names."""
    if isinstance(case.body, dict) and "model" in case.body:
        case.body["model"] = model
    if isinstance(case.body, dict) and case.path in STREAMING:
        case.body["stream"] = stream
    if isinstance(case.body, dict) and isinstance(case.body.get("messages"), list):
        case.body["messages"].append({"role": "user", "content": "What do sea otters eat?"})
    if case.path_parameters and "job_id" in case.path_parameters:
        case.path_parameters["job_id"] = live.job
    if case.path_parameters and "document_id" in case.path_parameters:
        documents = httpx.get(live.url + "/v1/documents").json()["documents"]
        if documents:
            case.path_parameters["document_id"] = documents[0]["id"]


def test_every_answer_conforms_to_the_openapi_document(live: Live) -> None:
    schema = schemathesis.openapi.from_url(live.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @given(case=operation.as_strategy(), model=st.sampled_from([*live.models, None]), stream=st.booleans())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def conforms(case: Any, model: str | None, stream: bool) -> None:
            if model is not None:
                point_at_what_exists(case, live, model, stream)
            response = case.call(base_url=live.url)
            try:  # every check schemathesis runs by default: 5xx, status code, content type, headers, body schema...
                case.validate_response(response)
            except FailureGroup as group:
                by_design = response.status_code in (400, 422)
                if not by_design or any(failure.code != REFUSED_BY_DESIGN for failure in group.exceptions):
                    raise
            if response.status_code >= 400:
                where = f"{case.method} {case.formatted_path} body={case.body!r:.300}"
                assert set(response.json()["error"]) == {"message", "type", "param", "code"}, where

        conforms()


def test_refusals_for_api_keys_are_documented(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Without a key (401, with WWW-Authenticate) or with a wrong one (403), as the document says."""
    index = build_index(tmp_path_factory.mktemp("fuzz-keys"), answer_pipeline())
    with serving(index, answer_pipeline(), api_keys=("k-one",)) as client:
        url = str(client.base_url)
        schema = schemathesis.openapi.from_url(url + "/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert sum(bool(operation.definition.raw.get("security")) for operation in operations) >= 10
        for operation in operations:

            @given(case=operation.as_strategy(), key=st.sampled_from([None, "k-two"]))
            @settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def refused(case: Any, key: str | None) -> None:
                headers = {name: value for name, value in (case.headers or {}).items() if name != "Authorization"}
                case.headers = headers | ({"Authorization": f"Bearer {key}"} if key else {})
                response = case.call(base_url=url)
                if case.operation.definition.raw.get("security"):
                    assert response.status_code == (403 if key else 401), case.operation.label
                    case.validate_response(response)

            refused()
