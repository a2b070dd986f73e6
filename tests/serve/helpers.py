"""A real server on loopback (uvicorn in a thread), a small corpus, and checks shared by the serve tests."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from rag.api import RAG
from rag.core.pipeline import Pipeline
from rag.serve.app import create_app
from rag.serve.settings import ServerSettings

DOCS = {
    "otters.md": "# Sea otters\n\nSea otters eat sea urchins, crabs and clams. They open shells with stones.",
    "volcano.md": "# Etna\n\nMount Etna is an active volcano on the east coast of Sicily. It erupts often.",
    "bread.md": "# Bread\n\nBread dough rises because yeast ferments sugars and releases carbon dioxide gas.",
    "rust.md": "# Rust\n\nRust is a systems programming language with memory safety and no garbage collector.",
}


def write_docs(folder: Path, docs: dict[str, str] = DOCS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def build_index(root: Path, pipeline: Pipeline, docs: dict[str, str] = DOCS) -> Path:
    """An index at root/index built from a folder of `docs` with `pipeline`."""
    report = RAG(root / "index", pipeline).index(write_docs(root / "docs", docs))
    assert report.failed == 0
    return root / "index"


@contextlib.contextmanager
def running(app: FastAPI, timeout: float = 30.0) -> Iterator[str]:
    """Serve `app` on a free loopback port in a thread; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


@contextlib.contextmanager
def serving(index: Path, *pipelines: Pipeline | str | None, **settings: Any) -> Iterator[httpx.Client]:
    """A client bound to a running server over `index`."""
    app = create_app(ServerSettings(index=index, pipelines=pipelines or (None,), **settings))
    with running(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


def assert_envelope(response: httpx.Response, status: int, param: str | None = None) -> dict[str, Any]:
    """The response is `status` with the one error envelope (and no traceback)."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in response.text
    if param is not None:
        assert error["param"] == param
    return error


def sse_events(text: str) -> list[tuple[str, str]]:
    """(event, data) pairs of a Server-Sent Events body."""
    events = []
    for block in text.strip().split("\n\n"):
        event, data = "message", ""
        for line in block.split("\n"):
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data += line[6:]
        events.append((event, data))
    return events
