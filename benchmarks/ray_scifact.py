"""Indexing SciFact with the local engine and with Ray; a 4-shard query against one index.

    python benchmarks/ray_scifact.py --limit 300 [--workers 2] [--shards 4] [--queries 100]

Measured in one process, in this order, on the first `--limit` abstracts (one file each):
1. `rag index` with the local engine (the `dense` pipeline: MiniLM, FAISS Flat): wall time;
2. starting a local Ray cluster with `--workers` CPUs (reported apart), then the same indexing with
   `RayEngine(workers=--workers)` into a fresh index: wall time (read job + embedding job, actor start
   and model loads included), and the same check the tests make: equal chunk ids, the largest
   difference between vectors, equal top-10 for the queries;
3. the folder indexed as `--shards` shards; `--queries` SciFact queries run against the one index and
   against the shards (fan-out in threads, exact top-10 merge): latency per query (the query is
   encoded once in both), and how many top-10 lists are identical.
The table is printed and written into docs/benchmarks.md between markers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
from index_scifact import write_corpus
from report import DATA, PAGE, command_line, header, markdown_table, write_section

from rag.api import RAG
from rag.core.serialization import load_pipeline
from rag.distributed.ray_engine import RayEngine
from rag.distributed.shards import ShardedIndex, index_sharded
from rag.indexer import index_folder
from rag.store.chunk_store import ChunkStore
from rag.store.index_folder import IndexFolder

QUERIES = DATA / "scifact" / "queries.jsonl"


def vectors(index: Path) -> dict[str, np.ndarray]:
    folder = IndexFolder(index).require_current() / "components" / "dense"
    ids = json.loads((folder / "ids.json").read_text())
    return dict(zip(ids, np.load(folder / "vectors.npy"), strict=True))


def latencies(search, queries: list[str]) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for query in queries:
        began = time.perf_counter()
        search(query)
        out.append((time.perf_counter() - began) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=300, help="index only the first N abstracts")
    parser.add_argument("--workers", type=int, default=2, help="Ray CPUs and actors")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--out", default=str(PAGE))
    args = parser.parse_args()
    import ray

    queries = [json.loads(line)["text"] for line in QUERIES.read_text(encoding="utf-8").splitlines()][: args.queries]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "scifact"
        folder.mkdir()
        files = write_corpus(folder, args.limit)

        began = time.perf_counter()
        local = index_folder(folder, Path(tmp) / "local", load_pipeline("dense"))
        local_wall = time.perf_counter() - began

        began = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, logging_level="WARNING")
        ray_start = time.perf_counter() - began
        began = time.perf_counter()
        engine = RayEngine(workers=args.workers, staging=Path(tmp) / "ray")
        remote = index_folder(folder, Path(tmp) / "ray", load_pipeline("dense"), engine=engine)
        ray_wall = time.perf_counter() - began
        ray.shutdown()

        stores = [ChunkStore.load(IndexFolder(Path(tmp) / n).require_current()) for n in ("local", "ray")]
        same_ids = list(stores[0].chunks) == list(stores[1].chunks)
        local_vectors, ray_vectors = vectors(Path(tmp) / "local"), vectors(Path(tmp) / "ray")
        max_diff = max(float(np.abs(local_vectors[i] - ray_vectors[i]).max()) for i in local_vectors)
        one, other = RAG(Path(tmp) / "local"), RAG(Path(tmp) / "ray")
        same_top = sum([h.id for h in one.query(q, 10)] == [h.id for h in other.query(q, 10)] for q in queries)

        index_sharded(folder, Path(tmp) / "sharded", load_pipeline("dense"), shards=args.shards)
        sharded = ShardedIndex(Path(tmp) / "sharded")
        single = one.pipeline.components["dense"]
        shard_equal = sum([h.id for h in one.query(q, 10)] == [h.id for h in sharded.query(q, 10)] for q in queries)
        encoder = single.encode_queries
        latencies(lambda q: sharded.query(q, 10), queries[:5])  # warm both
        single_ms = latencies(lambda q: single.search_vectors(encoder([q]), 10), queries)
        sharded_ms = latencies(lambda q: sharded.search("dense", q, 10), queries)
        encode_ms = latencies(lambda q: encoder([q]), queries)

    p50 = statistics.median
    rows = [
        ("abstracts (files) / chunks", f"{files:,} / {local.chunks_total:,} (a slice: the full corpus is 5,183)"),
        ("local engine, wall", f"{local_wall:.1f} s ({local.chunks_total / local_wall:.1f} chunks/s)"),
        (f"Ray: starting a local cluster ({args.workers} CPUs)", f"{ray_start:.1f} s"),
        (
            f"Ray engine, {args.workers} workers, wall (actor start and model loads included)",
            f"{ray_wall:.1f} s ({remote.chunks_total / ray_wall:.1f} chunks/s)",
        ),
        ("Ray = local: same chunk ids, in the same order", "yes" if same_ids else "NO"),
        ("Ray = local: largest vector difference", f"{max_diff:.1e}"),
        ("Ray = local: identical top-10 lists", f"{same_top} / {len(queries)}"),
        (f"{args.shards} shards = one index: identical top-10 lists", f"{shard_equal} / {len(queries)}"),
        ("query encode alone, p50", f"{p50(encode_ms):.2f} ms"),
        ("one index: encode + search, p50", f"{p50(single_ms):.2f} ms"),
        (
            f"{args.shards} shards: encode + fan-out + merge, p50",
            f"{p50(sharded_ms):.2f} ms (+{p50(sharded_ms) - p50(single_ms):.2f} ms)",
        ),
    ]
    table = header(command_line()) + "\n\n" + markdown_table(["measure", "value"], [list(r) for r in rows])
    print(table)
    write_section("ray_scifact", table, "Ray engine and sharded queries on SciFact", Path(args.out))


if __name__ == "__main__":
    sys.exit(main())
