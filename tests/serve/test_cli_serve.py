"""`rag serve` as a real command: a subprocess with several workers, API keys from a file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from click.testing import CliRunner

from rag.cli import main
from tests.serve.fakes import ECHO

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_rag_serve_with_two_workers_and_a_keys_file(echo_index: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("cli-key\n")
    port = free_port()
    command = [
        sys.executable, "-c", "from rag.cli import main; main()", "serve",
        "--index", echo_index.name, "--index-dir", str(echo_index.parent), "--allow", ECHO,
        "--port", str(port), "--workers", "2", "--api-keys-file", str(keys), "--max-top-k", "3",
        "--collection", f"again={echo_index.name}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_API_KEYS": "env-key"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "rag serve did not become ready"
            time.sleep(0.2)
        for key in ("cli-key", "env-key"):
            response = httpx.post(
                url + "/v1/query", json={"query": "otters"}, headers={"Authorization": f"Bearer {key}"}
            )
            assert response.json()["hits"][0]["source"]["path"] == "otters.md"
        again = httpx.post(
            url + "/v1/query",
            json={"query": "otters", "collection": "again"},
            headers={"Authorization": "Bearer cli-key"},
        )
        assert again.json()["hits"][0]["source"]["path"] == "otters.md"
        listed = httpx.get(url + "/v1/collections", headers={"Authorization": "Bearer cli-key"}).json()
        assert [c["name"] for c in listed["collections"]] == ["default", "again"]
        assert httpx.post(url + "/v1/query", json={"query": "otters"}).status_code == 401
        too_many = httpx.post(
            url + "/v1/query", json={"query": "x", "top_k": 4}, headers={"Authorization": "Bearer cli-key"}
        )
        assert too_many.status_code == 422
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output
    assert "cli-key" not in output


def test_rag_serve_reports_a_bad_pipeline_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", "--index-dir", str(tmp_path), "--pipeline", "no-such-pipeline"])
    assert result.exit_code == 1
    assert "error: no pipeline 'no-such-pipeline'" in result.stderr and "Traceback" not in result.stderr
