"""Every retrieval pipeline on SciFact's 300 test queries, in one table; BM25 speed against rank-bm25 and bm25s.

    python benchmarks/retrieval_scifact.py [--pipelines bm25 dense ...] [--out docs/benchmarks.md]
                                           [--plot docs/retrieval_scifact.png] [--bm25-speed-only]

Each pipeline runs in its own process (so memory figures do not mix): `rag eval` builds the
corpus index once (documents whole, title + text; reused by later runs, its build time recorded
then), and a second process measures on the reused index:
- nDCG@10 and recall@100 (trec_eval definitions, `rag.eval.metrics`);
- queries per second batched (the retriever's `run_batch`, query encoding included) and one at a time;
- for dense and Matryoshka pipelines, the index's search alone for the top 10 (ids and scores: query
  vectors encoded beforehand, no chunks looked up), in ms per query, the median of 7 rounds over all
  300 queries;
- index size on disk (the retrievers' files) and in memory (resident-memory growth when the
  index is loaded and searched, models already loaded; memory-mapped files count once touched).
Dense pipelines of one model share the embedding cache, so only the first one encodes the corpus.
The table goes into the benchmarks page, and nDCG@10 against one-at-a-time latency into a PNG beside it.
With `bm25` among the pipelines (or `--bm25-speed-only`), BM25's queries per second are measured against
rank-bm25 and bm25s on the same tokens, side by side in one process (taking turns, median of 3 rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
from report import DATA, PAGE, command_line, header, markdown_table, write_section

from rag.core.errors import ConfigError
from rag.core.serialization import find_pipeline, load_pipeline
from rag.embed.bm25 import BM25Tokenizer
from rag.eval.beir import BeirDataset, load_beir
from rag.eval.plot import plot_quality_latency
from rag.eval.runner import evaluate
from rag.indexer import retrievers
from rag.retrieve.bm25 import BM25Retriever
from rag.retrieve.dense import DenseRetriever
from rag.retrieve.matryoshka import MatryoshkaRetriever
from rag.store.index_folder import IndexFolder

PIPELINES = [
    "bm25", "splade", "dense", "dense-int8", "dense-binary", "matryoshka", "colbert", "hybrid", "hybrid-splade",
    "hybrid-rerank",
]  # fmt: skip
SCIFACT = DATA / "scifact"
SEARCH_ROUNDS = 7  # search-alone timings are tens of ms: their median over rounds


def resident_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(name: str) -> dict[str, Any]:
    """One pipeline, in this process: evaluation, memory, disk and (dense) search-only time."""
    dataset = load_beir(SCIFACT)
    pipeline = load_pipeline(name)
    pipeline.warm_up(["hits"])
    before = resident_mb()
    report = evaluate(dataset, pipeline, top_k=100)
    result = report.to_dict() | {"memory_mb": resident_mb() - before}
    generations = [IndexFolder(part["path"]).require_current() for part in report.index["parts"].values()]
    files = [p for generation in generations for p in (generation / "components").rglob("*") if p.is_file()]
    result["disk_mb"] = sum(p.stat().st_size for p in files) / 2**20
    texts = list(dataset.queries.values())
    for retriever in retrievers(pipeline).values():
        if isinstance(retriever, DenseRetriever | MatryoshkaRetriever):
            vectors = retriever.encode_queries(texts)
            index = retriever._loaded()[0]
            rounds = []
            for _ in range(SEARCH_ROUNDS):
                started = time.perf_counter()
                index.search(vectors, 10)
                rounds.append((time.perf_counter() - started) * 1000 / len(texts))
            result["search_ms"] = float(np.median(rounds))
    return result


def run_isolated(name: str) -> dict[str, Any]:
    """`measure` in a fresh process; a second one when the first had to build the index."""
    for _ in range(2):
        done = subprocess.run([sys.executable, __file__, "--one", name], check=True, capture_output=True, text=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        if result["index"]["reused"]:
            return result
    return result


def bm25_speed(dataset: BeirDataset, rounds: int = 3) -> list[list[str]]:
    """Queries per second of rank-bm25, bm25s and ours on the same tokens (k1 1.5, b 0.75), side by side.

    The implementations take turns for `rounds` rounds; each one's figure is its median round.
    """
    import bm25s
    from rank_bm25 import BM25Okapi

    tokenizer = BM25Tokenizer(lowercase=True, stopwords="english", stemmer="snowball")
    corpus_tokens = tokenizer.tokenize(dataset.document_text(d) for d in dataset.corpus)
    queries = list(dataset.queries.values())
    ours = load_pipeline("bm25")
    report = evaluate(dataset, ours, top_k=100)  # loads the bm25 index into the pipeline's retriever
    retriever = next(r for r in retrievers(ours).values() if isinstance(r, BM25Retriever))
    index = retriever._loaded()[0]
    reference = BM25Okapi(corpus_tokens, k1=1.5, b=0.75, epsilon=0.25)
    fast = bm25s.BM25(k1=1.5, b=0.75)
    fast.index(corpus_tokens, show_progress=False)
    query_tokens = [tokenizer(q) or ["the"] for q in queries]

    def rank_bm25(query: str) -> None:
        scores = reference.get_scores(tokenizer(query))
        top = np.argpartition(-scores, 100)[:100]
        top[np.argsort(-scores[top])]

    sample = queries[:100]  # rank-bm25 scores every document in Python: 100 queries suffice
    runs: dict[str, tuple[Any, list[Any]]] = {
        "rag BM25Retriever, one at a time": (lambda q: retriever.run(q, 100), queries),
        "rag BM25Index.search (ids and scores), one at a time": (lambda q: index.search(tokenizer(q), 100), queries),
        "rank-bm25 BM25Okapi, one at a time": (rank_bm25, sample),
        "bm25s (lucene variant), one at a time": (
            lambda tokens: fast.retrieve([tokens], k=100, show_progress=False),
            query_tokens,
        ),
        "bm25s (lucene variant), one batch": (
            lambda batch: fast.retrieve(batch, k=100, show_progress=False),
            [query_tokens],
        ),
    }
    measured: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, (search, inputs) in runs.items():
            started = time.perf_counter()
            for item in inputs:
                search(item)
            count = len(query_tokens) if name.endswith("one batch") else len(inputs)
            measured[name].append(count / (time.perf_counter() - started))
    timings = {name: float(np.median(qps)) for name, qps in measured.items()}

    base = timings["rank-bm25 BM25Okapi, one at a time"]
    ours_qps = timings["rag BM25Retriever, one at a time"]
    rows = [[name, f"{qps:,.0f}", f"{qps / base:.0f}x", f"{ours_qps / qps:.2f}"] for name, qps in timings.items()]
    rows.append(["(rag's nDCG@10 in the same run)", f"{report.metrics['ndcg@10']:.4f}", "", ""])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipelines", nargs="+", default=PIPELINES)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(PAGE))
    parser.add_argument("--plot", default=str(PAGE.with_name("retrieval_scifact.png")))
    parser.add_argument("--bm25-speed-only", action="store_true", help="only the BM25 speed table")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one)))
        return
    if not args.bm25_speed_only:
        quality_table([n for n in args.pipelines if _exists(n)], Path(args.out), Path(args.plot))
    if args.bm25_speed_only or "bm25" in args.pipelines:
        speed = markdown_table(
            ["BM25 implementation", "QPS", "vs rank-bm25", "rag's QPS / this"], bm25_speed(load_beir(SCIFACT))
        )
        speed = header(command_line()) + "\n\n" + speed
        print(speed)
        write_section("bm25_speed", speed, "BM25 speed against rank-bm25 and bm25s", Path(args.out))


def quality_table(names: list[str], out: Path, plot: Path) -> None:
    """Measure each pipeline in its own process; write the table into `out` and the plot to `plot`."""
    results = {name: run_isolated(name) for name in names}
    columns = [
        "pipeline",
        "nDCG@10",
        "recall@100",
        "QPS batched",
        "QPS one at a time",
        "p50 ms",
        "index search ms/query",
    ]
    columns += ["build s", "disk MB", "memory MB"]
    rows = []
    for name, r in results.items():
        search = f"{r['search_ms']:.3f}" if "search_ms" in r else ""
        build = r["index"]["build_seconds"]
        rows.append(
            [
                f"`{name}`",
                f"{r['metrics']['ndcg@10']:.4f}",
                f"{r['metrics']['recall@100']:.4f}",
                _qps(r["qps"]),
                _qps(r["qps_one_at_a_time"]),
                f"{r['latency_ms']['p50']:.1f}",
                search,
                "" if build is None else f"{build:,.0f}",
                f"{r['disk_mb']:.1f}",
                f"{r['memory_mb']:.1f}",
            ]
        )
    plot_quality_latency(
        [SimpleNamespace(**r, run=range(r["queries"])) for r in results.values()],
        plot,  # as EvalReports
    )
    quality = header(command_line()) + "\n\n" + markdown_table(columns, rows)
    quality += f"\n\n![nDCG@10 against latency, one query at a time]({plot.name})"
    print(quality)
    write_section("retrieval_scifact", quality, "Retrieval quality and speed on SciFact", out)


def _qps(value: float) -> str:
    return f"{value:,.0f}" if value >= 1 else "<1"


def _exists(name: str) -> bool:
    try:
        find_pipeline(name)
    except ConfigError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
