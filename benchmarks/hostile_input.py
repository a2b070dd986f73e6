"""Hostile input: what a decompression bomb costs, and query latency while bombs are uploaded to `rag serve`.

    python benchmarks/hostile_input.py [--seconds 10] [--job-memory-mb 2048] [--out docs/benchmarks.md]

1. `rag index` (the `bm25` pipeline) on a folder holding one bomb, in a subprocess whose peak resident memory is
   read by `/usr/bin/time`: a 322 KB DOCX that inflates to 113 MB of XML (the class of the 334 KB bomb that took a
   server to 8.9 GB before the limits), the same of empty runs only, and a 19 MB HTML page of 1.3 million tiny
   tags (BeautifulSoup built a 2.5 GB tree of it in a minute; the loader now reads it as a stream).
2. `rag serve` (the `default` pipeline, one worker, `--job-memory-mb`) over an uploads index holding this
   repository's docs: `/v1/query` p50/p99 from two closed-loop clients for `--seconds` with no job running, then
   from the moment the three bombs are uploaded (one job) until that job has ended, with the job's outcome.
The table is printed and written into the benchmarks page between `<!-- hostile_input -->` markers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx
from report import PAGE, REPO, command_line, header, markdown_table, write_section
from serve_load import QUESTIONS, closed_loop, free_port, start_server

sys.path.insert(0, str(REPO))
from tests.ingest.hostile import docx_bomb

HTML_BOMB = b"<p><b>x</b></p>" * (19 * 1024 * 1024 // 15)


def bombs() -> dict[str, bytes]:
    return {
        "bomb.docx": docx_bomb(expanded=113_000_000),
        "markup-bomb.docx": docx_bomb(markup_only=True, expanded=113_000_000),
        "tags.html": HTML_BOMB,
    }


def index_one(work: Path, name: str, data: bytes) -> list[str]:
    """Index a folder holding only this file with `rag index`; its outcome, seconds and peak memory."""
    folder = work / f"folder-{name}"
    folder.mkdir()
    (folder / name).write_bytes(data)
    command = ["/usr/bin/time", "-f", "%M %e", sys.executable, "-c", "from rag.cli import main; main()", "index"]
    command += [str(folder), "--index-dir", str(work / "indexes"), "--index", name.replace(".", "-")]
    command += ["--pipeline", "bm25", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    peak_kb, seconds = done.stderr.strip().splitlines()[-1].split()
    failures = [line for line in done.stdout.splitlines() if '"reason"' in line]
    outcome = failures[0].split('"reason": ')[1].strip('", ').split(": a decompression")[0] if failures else "indexed"
    size = f"{len(data) / 1024:,.0f} KB" if len(data) < 2**20 else f"{len(data) / 2**20:.0f} MB"
    print(name, outcome, peak_kb, seconds, flush=True)
    return [f"`rag index`: {name} ({size})", outcome, f"{float(seconds):.1f}", f"{int(peak_kb) / 1024:,.0f}"]


def upload(client: httpx.Client, files: dict[str, bytes]) -> dict:
    response = client.post("/v1/documents", files=[("files", (name, data)) for name, data in files.items()])
    response.raise_for_status()
    return response.json()["job"]


def wait_job(client: httpx.Client, job: dict) -> dict:
    while (job := client.get(f"/v1/jobs/{job['id']}").json())["status"] in ("queued", "running"):
        time.sleep(0.2)
    return job


def latency_row(label: str, latencies: list[float], outcome: str, seconds: float) -> list[str]:
    ordered = sorted(latencies)
    p50, p99 = ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return [label, outcome, f"{seconds:.1f}", "", f"{len(ordered):,}", f"{p50 * 1000:.0f}", f"{p99 * 1000:.0f}"]


def serve_rows(work: Path, seconds: float, job_memory_mb: int) -> list[list[str]]:
    port = free_port()
    server = start_server(work, "default", port, 2, "uploads", "/healthz", "--job-memory-mb", str(job_memory_mb))
    rows = []
    queries = [{"query": q, "top_k": 5} for q in QUESTIONS]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            docs = {p.name: p.read_bytes() for p in sorted((REPO / "docs").glob("*.md"))}
            started = time.perf_counter()
            job = wait_job(client, upload(client, docs))
            print("docs job", job["status"], job["error"] or "", f"{time.perf_counter() - started:.0f} s", flush=True)
            if job["status"] != "succeeded":
                raise SystemExit("indexing the docs failed")
            peak = job["report"]["peak_memory_mb"]
            latencies, _ = asyncio.run(closed_loop(port, "/v1/query", queries, 2, seconds, None))
            rows.append(latency_row("`/v1/query`, no job running", latencies, "", seconds))
            seconds_taken = f"{job['report']['seconds']:.1f}"
            rows.append(["upload job: the docs", "succeeded", seconds_taken, f"{peak:,}", "", "", ""])
            print(rows[-1], flush=True)
            job = upload(client, bombs())
            finished: dict = {}
            started = time.perf_counter()

            def watch() -> None:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as own:
                    finished.update(wait_job(own, job))
                    finished["seconds"] = time.perf_counter() - started

            watcher = threading.Thread(target=watch)
            watcher.start()
            during: list[float] = []
            while watcher.is_alive():  # query in slices of 2 s until the job has ended
                latencies, _ = asyncio.run(closed_loop(port, "/v1/query", queries, 2, 2.0, None))
                during += latencies
            watcher.join()
            if finished["status"] == "succeeded":
                files = finished["report"]["files"]
                outcome = f"job succeeded: {files['failed']} refused, {files['added']} indexed"
                outcome += f" (peak {finished['report']['peak_memory_mb']:,} MB)"
            else:
                outcome = f"job failed: {finished['error'].split(' (a decompression')[0]}; uploads quarantined"
            rows.append(latency_row("`/v1/query` while the 3 bombs are indexed", during, outcome, finished["seconds"]))
            print(rows[-1], flush=True)
            after = client.post("/v1/query", json={"query": QUESTIONS[0]}).status_code
            print("after the job: /v1/query", after, flush=True)
    finally:
        server.terminate()
        server.wait(30)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--job-memory-mb", type=int, default=2048)
    parser.add_argument("--out", default=str(PAGE))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hostile-"))
    try:
        rows = [[*index_one(work, name, data), "", "", ""] for name, data in bombs().items()]
        rows += serve_rows(work, args.seconds, args.job_memory_mb)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    columns = ["what", "outcome", "seconds", "peak memory (MB)", "queries", "p50 (ms)", "p99 (ms)"]
    note = (
        "Each `rag index` row is one subprocess (peak resident memory from `/usr/bin/time`). The server rows: "
        f"`rag serve --pipeline default --job-memory-mb {args.job_memory_mb}`, this repository's docs uploaded "
        f"first, two closed-loop `/v1/query` clients for {args.seconds:g} s with no job running, then from the "
        "upload of the three bombs (one job, in its own process) until that job had ended; client, server and "
        f"job share the {os.cpu_count()} cores."
    )
    text = f"{header(command_line())}\n\n{note}\n\n{markdown_table(columns, rows)}"
    print(text)
    write_section("hostile_input", text, "Hostile input: bombs and a server under them", Path(args.out))


if __name__ == "__main__":
    main()
