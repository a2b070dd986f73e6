"""`rag mcp`: the index's tools through the official MCP SDK client, over stdio, against a real subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

mcp = pytest.importorskip("mcp", reason="the mcp package is not installed (pip install 'rag[mcp]')")

from rag.api import RAG  # noqa: E402
from rag.core.serialization import dump_pipeline  # noqa: E402
from tests.serve.fakes import answer_pipeline  # noqa: E402
from tests.serve.helpers import write_docs  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


async def session(
    index_dir: Path, pipeline: Path, calls: list[tuple[str, dict[str, Any]]], reads: tuple[str, ...] = ()
) -> list[Any]:
    command = ["-c", "from rag.cli import main; main()", "mcp", "--index", "docs", "--index-dir", str(index_dir)]
    command += ["--pipeline", str(pipeline), "--allow", "tests.fakes.EchoGenerator"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    params = mcp.StdioServerParameters(command=sys.executable, args=command, env=env, cwd=str(REPO))
    async with mcp.Client(params) as client:
        listed = await client.list_tools()
        results: list[Any] = [sorted(tool.name for tool in listed.tools)]
        for name, arguments in calls:
            results.append(await client.call_tool(name, arguments))
        for uri in reads:
            results.append(await client.read_resource(uri))
        return results


def test_search_ask_and_list_over_stdio(tmp_path: Path) -> None:
    pipeline = tmp_path / "echo.yaml"
    pipeline.write_text(dump_pipeline(answer_pipeline()))
    RAG(tmp_path / "indexes" / "docs", answer_pipeline()).index(write_docs(tmp_path / "docs"))
    calls = [
        ("search", {"query": "what do sea otters eat and why does bread rise", "top_k": 2}),
        ("search", {"query": "sea otters and bread", "filters": "path == bread.md"}),
        ("ask", {"question": "What do sea otters eat?"}),
        ("list_indexes", {}),
        ("search", {"query": "   "}),
        ("search", {"query": "otters", "filters": "tenant == acme"}),
        ("search", {"query": "otters", "collection": "wiki"}),
    ]
    tools, hits, filtered, answer, indexes, empty, unknown, elsewhere = asyncio.run(
        session(tmp_path / "indexes", pipeline, calls)
    )
    assert tools == ["ask", "list_indexes", "search"]
    assert hits.structured_content["hits"][0]["source"]["path"] == "otters.md"
    assert len(hits.structured_content["hits"]) == 2
    assert [h["source"]["path"] for h in filtered.structured_content["hits"]] == ["bread.md"]
    assert answer.structured_content["citations"][0]["source"]["path"] == "otters.md"
    assert answer.structured_content["abstained"] is False
    (described,) = indexes.structured_content["indexes"]
    assert (described["name"], described["served"], described["files"], described["pipeline"]) == (
        "docs",
        True,
        4,
        "echo",
    )
    assert empty.is_error and "the query is empty" in empty.content[0].text
    assert unknown.is_error and "no chunk of this index has a field 'tenant'" in unknown.content[0].text
    assert elsewhere.is_error and "serves the one index docs; leave 'collection' out" in elsewhere.content[0].text


def test_the_same_tools_on_rag_serve_behind_the_api_keys(tmp_path: Path) -> None:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    from tests.serve.helpers import build_index, serving

    index = build_index(tmp_path, answer_pipeline())

    async def call(url: str, key: str | None) -> Any:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with httpx2.AsyncClient(headers=headers) as http:
            transport = streamable_http_client(url, http_client=http)
            async with mcp.Client(transport) as client:
                return await client.call_tool("search", {"query": "sea otters", "top_k": 1})

    with serving(index, answer_pipeline(), api_keys=("k-one",)) as client:
        url = f"{str(client.base_url).rstrip('/')}/mcp/"
        result = asyncio.run(call(url, "k-one"))
        assert result.structured_content["hits"][0]["source"]["path"] == "otters.md"
        for key, status in ((None, 401), ("k-two", 403)):
            response = client.post(
                "/mcp/",
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                headers={
                    **({"Authorization": f"Bearer {key}"} if key else {}),
                    "Accept": "application/json, text/event-stream",
                },
            )
            assert response.status_code == status
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}
            with pytest.raises(Exception):  # noqa: B017 - the SDK's client raises its own error for a refusal
                asyncio.run(call(url, key))


def test_documents_are_resources(tmp_path: Path) -> None:
    pipeline = tmp_path / "echo.yaml"
    pipeline.write_text(dump_pipeline(answer_pipeline()))
    docs = write_docs(tmp_path / "docs")
    (docs / "deep").mkdir()
    (docs / "deep" / "notes.md").write_text("# Notes\n\nSea otters hold hands while they sleep.")
    RAG(tmp_path / "indexes" / "docs", answer_pipeline()).index(docs)
    reads = ("rag://documents", "rag://documents/deep/notes.md", "rag://documents/otters.md")
    _, listed, deep, otters = asyncio.run(session(tmp_path / "indexes", pipeline, [], reads))
    documents = json.loads(listed.contents[0].text)["documents"]
    assert [d["path"] for d in documents] == ["bread.md", "deep/notes.md", "otters.md", "rust.md", "volcano.md"]
    assert documents[1]["title"] == "Notes" and documents[1]["chunks"] >= 1
    assert deep.contents[0].text == "# Notes\n\nSea otters hold hands while they sleep."
    assert otters.contents[0].text.startswith("# Sea otters")
