"""Load test of `rag serve` on loopback: requests/s and p50/p99 latency.

    python benchmarks/serve_load.py [--pipeline default] [--seconds 10] [--clients 1 8 32]
                                    [--answers 6] [--threads 2] [--out docs/benchmarks.md]

The project's own docs (docs/*.md, README.md) are indexed with the pipeline, then `rag serve` runs it
in a subprocess (one worker). Closed-loop clients (keep-alive connections of a minimal asyncio HTTP/1.1
client, in this process) each send one request at a time, cycling through a fixed list of questions:
1. `POST /v1/query` (the pipeline's retrieval only: BM25 + MiniLM dense + RRF for `default`) with each
   number of concurrent clients for `--seconds` after a one-second warm-up;
2. `POST /v1/answer` with the CPU generator, `--answers` requests with 1 and then 2 clients.
The server runs with `OMP_NUM_THREADS=--threads` (default 2, the cores: concurrent requests' query
encodings are batched into one model call at a time, so that call may use every core). Client and
server share the machine's cores. The table is printed and written into the benchmarks page between
`<!-- serve_load -->` and `<!-- /serve_load -->`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx
from report import PAGE, REPO, command_line, header, markdown_table, write_section

from rag.api import RAG

QUESTIONS = [
    "Where do built indexes live?",
    "How is an index swapped in atomically?",
    "Which pipeline does rag query use?",
    "What does the --json flag print?",
    "How are API keys configured?",
    "What happens if indexing is killed halfway?",
    "Which decoding strategies exist?",
    "How does reciprocal rank fusion combine hits?",
    "What is binary quantization with rescoring?",
    "How are citations attributed by overlap?",
    "Which files are skipped when walking a folder?",
    "How do I allow my own component class?",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    index_dir: Path, pipeline: str, port: int, threads: int, index: str = "bench", ready: str = "/readyz", *extra: str
) -> subprocess.Popen[str]:
    """`rag serve` in a subprocess (more options in `extra`), once `ready` answers 200."""
    command = [sys.executable, "-c", "from rag.cli import main; main()", "serve", "--index-dir", str(index_dir)]
    command += ["--index", index, "--pipeline", pipeline, "--port", str(port), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    log = index_dir / "server.log"  # a file, not a pipe: a full pipe would block the server's access log
    with open(log, "w") as out:
        server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"rag serve exited:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{ready}", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    server.kill()
    raise SystemExit("rag serve did not become ready in 300 s")


async def closed_loop(port: int, path: str, bodies: list[dict], clients: int, seconds: float | None, total: int | None):
    """Latencies (s) of requests sent by `clients` keep-alive connections, each one request at a time, for
    `seconds` (after 1 s of warm-up) or until `total` requests; a minimal HTTP/1.1 client (like wrk), so the
    load generator costs little CPU next to the server."""
    requests = [
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n".encode()
        + data
        for data in (json.dumps(body).encode() for body in bodies)
    ]
    latencies: list[float] = []
    start = time.perf_counter()
    measure_from = start + (1.0 if seconds else 0.0)
    stop = measure_from + seconds if seconds else float("inf")
    sent = 0

    async def loop(worker: int) -> None:
        nonlocal sent
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = worker
        while time.perf_counter() < stop and (total is None or sent < total):
            sent += 1
            began = time.perf_counter()
            writer.write(requests[i % len(requests)])
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
            if not head.startswith("http/1.1 200"):
                raise SystemExit(f"{path} answered: {head.splitlines()[0]}")
            length = int(head.split("content-length:")[1].split("\r\n")[0])
            await reader.readexactly(length)
            if began >= measure_from:
                latencies.append(time.perf_counter() - began)
            i += clients
        writer.close()

    await asyncio.gather(*(loop(w) for w in range(clients)))
    return latencies, time.perf_counter() - measure_from


def row(label: str, clients: int, latencies: list[float], elapsed: float) -> list[str]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return [
        label,
        str(clients),
        f"{len(ordered):,}",
        f"{len(ordered) / elapsed:.{1 if len(ordered) / elapsed >= 10 else 3}f}",
        f"{statistics.median(ordered) * 1000:.0f}",
        f"{p99 * 1000:.0f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pipeline", default="default")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--answers", type=int, default=6, help="answers per client count (0: skip)")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the server")
    parser.add_argument("--out", default=str(PAGE))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="serve-load-"))
    corpus = work / "corpus"
    corpus.mkdir()
    for doc in [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md"]:
        shutil.copy(doc, corpus / doc.name)
    report = RAG(work / "bench", args.pipeline).index(corpus)
    print(f"indexed {report.chunks_total} chunks of {len(list(corpus.iterdir()))} files", flush=True)
    port = free_port()
    server = start_server(work, args.pipeline, port, args.threads)
    rows = []
    try:
        queries = [{"query": q, "top_k": 5} for q in QUESTIONS]
        for clients in args.clients:
            latencies, elapsed = asyncio.run(closed_loop(port, "/v1/query", queries, clients, args.seconds, None))
            rows.append(row("`/v1/query`", clients, latencies, elapsed))
            print(rows[-1], flush=True)
        if args.answers:
            answers = [{"question": q, "top_k": 3} for q in QUESTIONS]
            for clients in (1, 2):
                latencies, elapsed = asyncio.run(closed_loop(port, "/v1/answer", answers, clients, None, args.answers))
                rows.append(row("`/v1/answer`", clients, latencies, elapsed))
                print(rows[-1], flush=True)
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()[0]
    table = markdown_table(["endpoint", "clients", "requests", "requests/s", "p50 (ms)", "p99 (ms)"], rows)
    note = (
        f"{report.chunks_total} chunks (this repository's docs), pipeline `{args.pipeline}`, one server worker "
        f"with OMP_NUM_THREADS={args.threads}; "
        f"`/v1/query` for {args.seconds:g} s per row after 1 s of warm-up, `/v1/answer` {args.answers} requests "
        f"per row; load average {load:.1f} at the end (other jobs shared the machine when above 2)."
    )
    if os.environ.get("RAG_PIPELINES_DIR"):
        note += f" Pipelines read from RAG_PIPELINES_DIR={os.environ['RAG_PIPELINES_DIR']}."
    text = f"{header(command_line())}\n\n{note}\n\n{table}"
    print(text)
    write_section("serve_load", text, "Serving: `rag serve` under load", Path(args.out))


if __name__ == "__main__":
    main()
