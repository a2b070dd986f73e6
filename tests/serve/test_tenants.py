"""Two tenants on one server: with tenant A's key, every endpoint (query, answer, streams, chat completions,
completions, uploads, deletes, jobs, metrics, models, collections, the web page, the MCP tools and resources)
is tried, and no text, id, path, title, field or count of tenant B's documents may come back."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from rag.serve.app import create_app
from rag.serve.keys import add_key
from rag.serve.settings import CollectionSettings, ServerSettings
from tests.serve.fakes import answer_pipeline
from tests.serve.helpers import assert_envelope, build_index, running

B_PLAN = "# Zanzibar Quarterly Plan\n\nThe zanzibar quokka launch is planned for March by the quokka team."
A_NOTES = "# Acme notes\n\nSea otters eat sea urchins and open clams with stones."
A_TROJAN = "---\ntenant: bobco\n---\n# Otter memo\n\nOtters sleep floating on their backs, holding paws."
SECRETS = ("zanzibar", "quokka", "bob-plan", "quarterly", "budget_code")
"""What tenant B's documents hold (text, title, name, a field): none of it may reach tenant A."""


def wait_for(client: httpx.Client, job: dict[str, Any], key: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get(f"/v1/jobs/{job['id']}", headers=_auth(key)).json()
        if state["status"] in ("succeeded", "failed"):
            return state
        time.sleep(0.05)
    raise AssertionError(f"job {job['id']} did not finish")


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _clean(text: str, what: str) -> None:
    found = [secret for secret in SECRETS if secret in text.lower()]
    assert not found, f"{what} shows tenant B's {found}: {text[:300]}"


def _upload(client: httpx.Client, key: str, name: str, text: str, **data: str) -> dict[str, Any]:
    files = [("files", (name, text.encode(), "text/markdown"))]
    response = client.post("/v1/documents", files=files, data=data, headers=_auth(key))
    assert response.status_code == 202, response.text
    return response.json()


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("tenants")
    private = build_index(root / "private", answer_pipeline())
    keys_file = root / "keys.yaml"
    keys = {
        "admin": add_key(keys_file, "admin"),
        "acme": add_key(keys_file, "acme", ["shared"], tenant="acme"),
        "bobco": add_key(keys_file, "bobco", ["shared"], tenant="bobco"),
    }
    settings = ServerSettings(
        collections=(
            CollectionSettings("shared", root / "shared", (answer_pipeline(),)),
            CollectionSettings("private", private, (answer_pipeline(),)),
        ),
        api_keys_file=str(keys_file),
    )
    with running(create_app(settings)) as url, httpx.Client(base_url=url, timeout=30) as client:
        b_job = _upload(client, keys["bobco"], "bob-plan.md", B_PLAN, metadata=json.dumps({"budget_code": "Q7"}))
        assert wait_for(client, b_job["job"], keys["bobco"])["status"] == "succeeded"
        a_job = _upload(client, keys["acme"], "acme-notes.md", A_NOTES)
        assert wait_for(client, a_job["job"], keys["acme"])["status"] == "succeeded"
        trojan = _upload(client, keys["acme"], "trojan.md", A_TROJAN)
        assert wait_for(client, trojan["job"], keys["acme"])["status"] == "succeeded"
        yield client, keys, b_job["job"]["id"], url


def test_tenant_a_sees_nothing_of_tenant_b(tenants: Any) -> None:
    client, keys, _, _ = tenants
    a = _auth(keys["acme"])
    question = "zanzibar quokka quarterly plan otters"
    chat = {"model": "echo", "messages": [{"role": "user", "content": question}]}
    requests: list[tuple[str, str, Any]] = [
        ("POST", "/v1/query", {"query": question}),
        ("POST", "/v1/query", {"query": question, "top_k": 10, "collection": "shared"}),
        ("POST", "/v1/query", {"query": question, "filters": "tenant == bobco"}),
        ("POST", "/v1/query", {"query": question, "filters": {"$or": [{"tenant": "bobco"}, {"tenant": "acme"}]}}),
        ("POST", "/v1/answer", {"question": question}),
        ("POST", "/v1/answer", {"question": question, "stream": True}),
        ("POST", "/v1/chat/completions", chat),
        ("POST", "/v1/chat/completions", {**chat, "stream": True}),
        ("POST", "/v1/chat/completions", {**chat, "model": "shared/echo"}),
        ("POST", "/v1/completions", {"model": "echo", "prompt": question}),
        ("GET", "/v1/documents", None),
        ("GET", "/v1/documents?collection=shared", None),
        ("GET", "/v1/models", None),
        ("GET", "/v1/collections", None),
        ("GET", "/", None),
        ("GET", "/readyz", None),
    ]
    for method, path, body in requests:
        response = client.request(method, path, json=body, headers=a)
        assert response.status_code == 200, (path, response.text)
        _clean(response.text, f"{method} {path} {body}")
    hits = client.post("/v1/query", json={"query": question, "top_k": 10}, headers=a).json()["hits"]
    assert sorted(h["source"]["path"] for h in hits) == ["acme/acme-notes.md", "acme/trojan.md"]
    assert client.post("/v1/query", json={"query": question, "filters": "tenant == bobco"}, headers=a).json() == {
        "hits": []
    }
    listed = client.get("/v1/documents", headers=a).json()["documents"]
    assert [d["id"] for d in listed] == ["acme/acme-notes.md", "acme/trojan.md"]
    assert [c["name"] for c in client.get("/v1/collections", headers=a).json()["collections"]] == ["shared"]
    assert "private" not in client.get("/v1/models", headers=a).text


def test_what_tenant_a_asks_of_b_is_answered_as_if_it_did_not_exist(tenants: Any) -> None:
    client, keys, b_job, _ = tenants
    a = _auth(keys["acme"])
    pairs = [  # (about B's things, about nothing at all): the same answer
        ("DELETE", "/v1/documents/bobco/bob-plan.md", "/v1/documents/bobco/nothing.md", None),
        ("GET", f"/v1/jobs/{b_job}", "/v1/jobs/" + "0" * 32, None),
        (
            "POST",
            "/v1/query",
            "/v1/query",
            ({"query": "x", "collection": "private"}, {"query": "x", "collection": "x"}),
        ),
        (
            "POST",
            "/v1/query",
            "/v1/query",
            ({"query": "x", "filters": "budget_code == Q7"}, {"query": "x", "filters": "no_such_field == 1"}),
        ),
    ]
    for method, about_b, about_nothing, bodies in pairs:
        first, second = bodies or (None, None)
        seen = client.request(method, about_b, json=first, headers=a)
        unknown = client.request(method, about_nothing, json=second, headers=a)
        assert seen.status_code == unknown.status_code and seen.status_code in (400, 404), (about_b, seen.text)
        assert seen.json()["error"]["code"] == unknown.json()["error"]["code"]
        known = seen.json()["error"]["message"].partition("known fields:")[2]
        _clean(known, "the fields a filter error lists")
    assert assert_envelope(client.get("/metrics", headers=a), 403)["code"] == "scoped_key"
    refused = client.post(
        "/v1/documents",
        files=[("files", ("x.md", b"hello", "text/markdown"))],
        data={"metadata": json.dumps({"tenant": "bobco"})},
        headers=a,
    )
    assert assert_envelope(refused, 403)["code"] == "scoped_key"
    sidecar = client.post("/v1/documents", files=[("files", ("x.md.meta.json", b"{}", "application/json"))], headers=a)
    assert_envelope(sidecar, 422, "name")


def test_tenant_b_and_the_operator_see_what_is_theirs(tenants: Any) -> None:
    client, keys, _, _ = tenants
    b, admin = _auth(keys["bobco"]), _auth(keys["admin"])
    hits = client.post("/v1/query", json={"query": "otters quokka", "top_k": 10}, headers=b).json()["hits"]
    assert [h["source"]["path"] for h in hits] == ["bobco/bob-plan.md"]  # not acme's memo that says tenant: bobco
    assert hits[0]["source"]["budget_code"] == "Q7" and hits[0]["source"]["tenant"] == "bobco"
    everything = client.post("/v1/query", json={"query": "otters quokka", "top_k": 10}, headers=admin).json()["hits"]
    assert {h["source"]["path"] for h in everything} == {"bobco/bob-plan.md", "acme/acme-notes.md", "acme/trojan.md"}
    private = client.post("/v1/query", json={"query": "otters", "collection": "private"}, headers=admin).json()
    assert private["hits"][0]["source"]["path"] == "otters.md"
    assert client.get("/metrics", headers=admin).status_code == 200
    assert [c["name"] for c in client.get("/v1/collections", headers=admin).json()["collections"]] == [
        "shared",
        "private",
    ]


def test_mcp_tools_keep_to_the_key(tenants: Any) -> None:
    mcp = pytest.importorskip("mcp", reason="the mcp package is not installed (pip install 'rag[mcp]')")
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    _, keys, _, url = tenants

    async def session(key: str) -> list[str]:
        async with (
            httpx2.AsyncClient(headers=_auth(key)) as http,
            mcp.Client(streamable_http_client(f"{url}/mcp/", http_client=http)) as tools,
        ):
            outputs = [
                await tools.call_tool("search", {"query": "zanzibar quokka otters", "top_k": 10}),
                await tools.call_tool("ask", {"question": "zanzibar quokka otters"}),
                await tools.call_tool("list_indexes", {}),
                await tools.read_resource("rag://documents"),
            ]
            for uri in (
                "documents/bobco/bob-plan.md",
                "documents/bobco/nothing.md",
                "documents?collection=private",
                "documents/otters.md?collection=private",
                "documents/bobco/bob-plan.md?collection=shared",
            ):
                try:
                    outputs.append(await tools.read_resource(f"rag://{uri}"))
                except Exception as exc:  # the SDK raises its own error for a failed read
                    outputs.append(str(exc))
            for collection in ("private", "nowhere"):
                outputs.append(await tools.call_tool("search", {"query": "otters", "collection": collection}))
            return [o if isinstance(o, str) else o.model_dump_json() for o in outputs]

    a_outputs = asyncio.run(session(keys["acme"]))
    for output in a_outputs[:4]:
        _clean(output, "an MCP answer")
    assert a_outputs[4].replace("bob-plan", "nothing") == a_outputs[5]  # B's document reads as one that is not there
    assert a_outputs[8].replace("bob-plan", "nothing") == a_outputs[5] + "?collection=shared"  # named collection
    assert "Sea otters" not in a_outputs[7] and "private" in a_outputs[7]  # a collection it may not use
    assert "acme/acme-notes.md" in a_outputs[0] and "acme/acme-notes.md" in a_outputs[3]
    b_outputs = asyncio.run(session(keys["bobco"]))
    assert "Zanzibar" in b_outputs[4] and "Zanzibar" in b_outputs[8] and "acme" not in b_outputs[3]
