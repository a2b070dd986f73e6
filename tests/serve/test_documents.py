"""Uploads and deletes indexed by background jobs; queries answered from the previous index meanwhile."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from rag.core.pipeline import IndexingSettings, Pipeline
from rag.serve.documents import safe_name
from rag.serve.errors import ServiceError, from_rag_error
from tests.fakes import HashRetriever
from tests.serve.fakes import answer_pipeline, chunker
from tests.serve.helpers import DOCS, assert_envelope, serving


def wait_for(client: httpx.Client, job: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get(f"/v1/jobs/{job['id']}").json()
        if state["status"] in ("succeeded", "failed"):
            return state
        time.sleep(0.05)
    raise AssertionError(f"job {job['id']} did not finish")


def paths(client: httpx.Client, query: str) -> list[str]:
    return [h["source"]["path"] for h in client.post("/v1/query", json={"query": query}).json()["hits"]]


def test_safe_name_keeps_uploads_inside_one_folder() -> None:
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("C:\\Users\\me\\notes.md") == "notes.md"
    assert safe_name(".bashrc") == "bashrc"
    assert safe_name("my report (final).pdf") == "my_report_final_.pdf"
    assert safe_name("ünïcödé.md") == "ünïcödé.md"
    assert len(safe_name("a" * 300 + ".md")) == 120 and safe_name("a" * 300 + ".md").endswith(".md")
    with pytest.raises(ServiceError, match="no usable characters") as raised:
        safe_name("../..")
    assert from_rag_error(raised.value).status == 422


def test_upload_then_query_then_delete(tmp_path: Path) -> None:
    index = tmp_path / "uploads"
    with serving(index, answer_pipeline()) as client:
        assert assert_envelope(client.post("/v1/query", json={"query": "otters"}), 503)["code"] == "no_index"
        assert client.get("/readyz").status_code == 503
        files = [("files", ("../../otters.md", DOCS["otters.md"].encode(), "text/markdown"))]
        files.append(("files", ("bread.md", DOCS["bread.md"].encode(), "text/markdown")))
        response = client.post("/v1/documents", files=files, data={"text": DOCS["volcano.md"], "name": "etna"})
        assert response.status_code == 202, response.text
        body = response.json()
        assert [d["id"] for d in body["documents"]] == ["otters.md", "bread.md", "etna"]
        job = wait_for(client, body["job"])
        assert job["status"] == "succeeded" and job["report"]["files"]["added"] == 3
        assert sorted(p.name for p in (index / "documents").iterdir()) == ["bread.md", "etna", "otters.md"]
        assert not (tmp_path / "otters.md").exists()
        assert paths(client, "sea otters eat urchins")[0] == "otters.md"
        assert paths(client, "volcano Sicily") == ["etna"]
        assert client.get("/readyz").status_code == 200
        answer = client.post("/v1/answer", json={"question": "Why does bread dough rise?"}).json()
        assert answer["citations"][0]["source"]["path"] == "bread.md"
        listed = client.get("/v1/documents").json()["documents"]
        assert [d["id"] for d in listed] == ["bread.md", "etna", "otters.md"]

        deleted = client.delete("/v1/documents/otters.md")
        assert deleted.status_code == 202 and wait_for(client, deleted.json()["job"])["status"] == "succeeded"
        assert "otters.md" not in paths(client, "sea otters eat urchins")
        assert_envelope(client.delete("/v1/documents/otters.md"), 404)
        assert_envelope(client.delete("/v1/documents/..%2F..%2Fmanifest.json"), 404)
        assert_envelope(client.delete("/v1/documents/%C2%B0"), 404)  # a name no upload can have
        assert_envelope(client.get("/v1/jobs/not-a-job"), 404)
        assert_envelope(client.post("/v1/documents", data={"text": "  "}), 422, "text")
        assert_envelope(client.post("/v1/documents", data={}), 422, "files")


def test_upload_size_is_limited(tmp_path: Path) -> None:
    with serving(tmp_path / "uploads", answer_pipeline(), max_upload_mb=0.01) as client:
        big = [("files", ("big.txt", b"word " * 5000, "text/plain"))]
        assert_envelope(client.post("/v1/documents", files=big), 413)
        assert not (tmp_path / "uploads" / "documents" / "big.txt").exists()


def test_an_index_mirroring_a_folder_refuses_uploads(echo_index: Path) -> None:
    with serving(echo_index, answer_pipeline()) as client:
        response = client.post("/v1/documents", data={"text": "hello", "name": "x.md"})
        error = assert_envelope(response, 409)
        assert "mirrors the folder" in error["message"] and "rag index" in error["message"]
        assert not (echo_index / "documents").exists()


def slow_pipeline(delay: float) -> Pipeline:
    """Hash vectors that take `delay` s per chunk to embed: a reindex that takes a while."""
    return Pipeline(
        {"vec": HashRetriever(dim=64, top_k=5, delay=delay)},
        inputs={"query": ["vec.query"], "top_k": ["vec.top_k"]},
        outputs={"hits": "vec.hits"},
        indexing=IndexingSettings(chunker=chunker()),
        name="slow",
    )


def test_queries_are_answered_from_the_previous_index_during_a_reindex(tmp_path: Path) -> None:
    with serving(tmp_path / "uploads", slow_pipeline(delay=0.01)) as client:
        first = [("files", (name, text.encode(), "text/markdown")) for name, text in DOCS.items()]
        assert wait_for(client, client.post("/v1/documents", files=first).json()["job"])["status"] == "succeeded"
        before = sorted(paths(client, "sea otters volcano bread rust"))
        assert before == sorted(DOCS)
        extra = [
            ("files", (f"more{i}.md", f"# More {i}\n\nOtters and volcanoes, note {i}.".encode(), "text/markdown"))
            for i in range(40)
        ]
        job = client.post("/v1/documents", files=extra).json()["job"]
        seen: list[list[str]] = []
        errors: list[str] = []

        def query_loop() -> None:
            with httpx.Client(base_url=str(client.base_url), timeout=30) as own:
                while True:
                    response = own.post("/v1/query", json={"query": "sea otters volcano bread rust", "top_k": 50})
                    if response.status_code != 200:
                        errors.append(response.text)
                    hits = sorted(h["source"]["path"] for h in response.json().get("hits", []))
                    seen.append(hits)
                    if len(hits) == 44 or len(seen) > 2000:
                        return

        threads = [threading.Thread(target=query_loop) for _ in range(4)]
        for t in threads:
            t.start()
        state = wait_for(client, job)
        for t in threads:
            t.join(30)
        assert state["status"] == "succeeded" and state["report"]["files"]["added"] == 40
        assert not errors
        old, new = sorted(DOCS), sorted([*DOCS, *(f"more{i}.md" for i in range(40))])
        assert all(hits in (old, new) for hits in seen), "a query saw a half-swapped index"
        assert seen.count(old) > 4 and seen[-1] == new  # answered from the old index until the swap


def test_a_damaged_index_pointer_leaves_the_previous_index_serving(tmp_path: Path) -> None:
    with serving(tmp_path / "uploads", answer_pipeline()) as client:
        job = client.post("/v1/documents", data={"text": DOCS["otters.md"], "name": "otters.md"}).json()["job"]
        assert wait_for(client, job)["status"] == "succeeded"
        pointer = tmp_path / "uploads" / "CURRENT"
        good = pointer.read_text()
        pointer.write_text("gen-999999")
        assert paths(client, "sea otters") == ["otters.md"]  # still served from the loaded generation
        assert "damaged" in assert_envelope(client.get("/readyz"), 503)["message"]
        pointer.write_text(good)
        assert paths(client, "sea otters") == ["otters.md"]
        assert client.get("/readyz").status_code == 200


def test_jobs_of_a_server_that_died_are_failed_and_their_upload_quarantined(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    from rag.core.errors import RagError
    from rag.serve.documents import DocumentFolder, JobQueue

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    documents = DocumentFolder(tmp_path / "index", lambda: None)
    documents.root.mkdir(parents=True)
    (documents.root / "bomb.docx").write_bytes(b"PK...")
    (documents.root / "fine.md").write_text("fine")
    runs = []

    def run(folder: Path) -> dict[str, Any]:
        runs.append(sorted(p.name for p in folder.iterdir()))
        raise RagError("stop here")

    jobs = JobQueue(documents, run, lambda: None)
    records = {
        "a" * 32: {"status": "running", "pid": dead_pid, "documents": ["bomb.docx"]},
        "b" * 32: {"status": "queued", "pid": dead_pid, "documents": ["fine.md"]},
        "c" * 32: {"status": "running", "pid": os.getpid(), "documents": ["fine.md"]},  # this process: alive
        "d" * 32: {"status": "succeeded", "pid": dead_pid, "documents": []},
    }
    jobs.folder.mkdir(parents=True)
    for job_id, record in records.items():
        (jobs.folder / f"{job_id}.json").write_text(json.dumps({"id": job_id, **record}))
    assert jobs.recover() == ["a" * 32]
    running = jobs.get("a" * 32)
    assert running["status"] == "failed" and "moved to quarantine" in running["error"]
    jobs.close()
    assert runs == [["fine.md"]]  # the queued job ran here, without the quarantined upload
    assert jobs.get("b" * 32)["status"] == "failed" and jobs.get("b" * 32)["error"] == "stop here"
    assert jobs.get("c" * 32)["status"] == "running" and jobs.get("d" * 32)["status"] == "succeeded"
    assert (tmp_path / "index" / "quarantine" / "bomb.docx").is_file() and not (documents.root / "bomb.docx").exists()
    assert (documents.root / "fine.md").is_file()
    assert jobs.recover() == []  # once


def test_an_indexing_job_over_its_memory_or_time_is_stopped_and_its_upload_quarantined(tmp_path: Path) -> None:
    index = tmp_path / "uploads"
    with serving(index, answer_pipeline()) as client:
        response = client.post("/v1/documents", files=[("files", ("otters.md", DOCS["otters.md"].encode()))])
        assert wait_for(client, response.json()["job"])["status"] == "succeeded"
    # a child process with Python and numpy loaded is over 20 MB: the bound is met at once
    with serving(index, answer_pipeline(), job_memory_mb=20) as client:
        response = client.post("/v1/documents", files=[("files", ("bread.md", DOCS["bread.md"].encode()))])
        job = wait_for(client, response.json()["job"])
        assert job["status"] == "failed" and "used over 20 MB of memory" in job["error"]
        assert "['bread.md'] were moved to quarantine/" in job["error"]
        assert (index / "quarantine" / "bread.md").is_file() and not (index / "documents" / "bread.md").exists()
        assert paths(client, "sea otters") == ["otters.md"]  # the previous index still answers
    slow = answer_pipeline(retriever=HashRetriever(delay=5.0))
    with serving(tmp_path / "slow", slow, job_timeout_s=1) as client:
        response = client.post("/v1/documents", files=[("files", ("etna.md", DOCS["volcano.md"].encode()))])
        job = wait_for(client, response.json()["job"])
        assert job["status"] == "failed" and "ran over 1 s and was stopped" in job["error"]
        assert (tmp_path / "slow" / "quarantine" / "etna.md").is_file()
