"""Matryoshka funnel on SciFact: WordLlama searched at 256 dimensions (flat) against 64 -> 256 funnels.

    python benchmarks/matryoshka_funnel.py [--model NAME] [--funnels 64x4 64x8 128x2 ...] [--rounds 20]
                                           [--out docs/benchmarks.md]

SciFact's 5,183 abstracts (title, blank line, text; whole) and its 300 test queries are embedded once
with the model (the packaged WordLlama by default; MiniLM with `--model
sentence-transformers/all-MiniLM-L6-v2 --funnels 128x4 192x2`). Each index is saved and reopened, so
stored rows are memory-mapped as in a real index, then searched side by side in one process for the
10 best documents:

- flat: exact inner product over the full vectors (`FaissIndex` Flat: what `DenseRetriever` does);
- short only D: exact search over the first D dimensions (renormalised), no rescoring;
- funnel DxM: `FunnelIndex` (`MatryoshkaRetriever`'s index): the D-dimension search for 10*M
  candidates, rescored with the full query.

nDCG@10 uses a local function (graded gains, log2 discount, ideal from the qrels). Search time per
query, query encoding excluded, is the median over `--rounds` interleaved rounds of (a) all query
vectors in one call and (b) one query at a time. With FAISS and BLAS limited to one thread
(threadpoolctl) it is the process's CPU time, which other jobs on a shared machine barely inflate;
with two threads it is wall-clock time (CPU time would count OpenMP's spinning), which they do.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
from report import DATA, PAGE, command_line, header, markdown_table, write_section
from threadpoolctl import threadpool_limits

from rag.embed.dense import SentenceTransformerEmbedder
from rag.eval.beir import load_beir
from rag.eval.metrics import ndcg
from rag.index.faiss_index import FaissIndex
from rag.retrieve.matryoshka import FunnelIndex

SCIFACT = DATA / "scifact"
WORDLLAMA = "dleemiller/word-llama-l2-supercat"
K = 10
Search = Callable[[np.ndarray], object]


def load_scifact() -> tuple[list[str], list[str], list[str], dict[str, dict[str, int]]]:
    """Document ids and texts, test query texts (those with judgements) and their qrels."""
    dataset = load_beir(SCIFACT)
    doc_ids = list(dataset.corpus)
    qrels = {q: dataset.qrels[q] for q in dataset.queries}  # in query order
    return doc_ids, [dataset.document_text(d) for d in doc_ids], list(dataset.queries.values()), qrels


def ndcg_at_k(ranked: list[list[str]], qrels: dict[str, dict[str, int]], k: int = K) -> float:
    """Mean nDCG@k over the queries (in the order of `qrels`)."""
    return sum(ndcg(found, relevant, k) for found, relevant in zip(ranked, qrels.values(), strict=True)) / len(qrels)


def timings(searches: dict[str, Search], queries: np.ndarray, rounds: int, clock: Callable[[], float]) -> dict:
    """Median `clock` seconds per query of each search: all queries in one call, and one at a time (interleaved)."""
    batched: dict[str, list[float]] = {name: [] for name in searches}
    single: dict[str, list[float]] = {name: [] for name in searches}
    for _ in range(rounds):
        for name, search in searches.items():
            began = clock()
            search(queries)
            batched[name].append((clock() - began) / len(queries))
            began = clock()
            for row in range(len(queries)):
                search(queries[row : row + 1])
            single[name].append((clock() - began) / len(queries))
    return {name: (statistics.median(batched[name]), statistics.median(single[name])) for name in searches}


def build(doc_ids: list[str], vectors: np.ndarray, funnels: list[tuple[int, int]], tmp: Path) -> dict[str, Search]:
    """The searches to compare, by row label: flat, short only per dimension, and each funnel."""
    flat = FaissIndex(vectors.shape[1], "ip", "Flat")
    flat.add(doc_ids, vectors)
    flat.save(tmp / "flat")
    reopened = FaissIndex.load(tmp / "flat")
    searches: dict[str, Search] = {"flat": lambda q: reopened.search(q, K)}
    for dim in sorted({d for d, _ in funnels}):
        index = FunnelIndex(dim)
        index.add(doc_ids, vectors)
        index.save(tmp / f"d{dim}")
        short = FaissIndex.load(tmp / f"d{dim}" / "short")
        searches[f"short {dim}"] = lambda q, short=short, dim=dim: short.search(q[:, :dim], K)  # same ranks
        for d, multiplier in funnels:
            if d == dim:
                funnel = FunnelIndex.load(tmp / f"d{dim}", rescore_multiplier=multiplier)
                searches[f"{dim}x{multiplier}"] = lambda q, funnel=funnel: funnel.search(q, K)
    return searches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=WORDLLAMA)
    parser.add_argument("--funnels", nargs="+", default=["64x4", "64x6", "64x8", "64x10", "128x1", "128x2"])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--out", default=str(PAGE))
    args = parser.parse_args()
    funnels = [(int(d), int(m)) for d, m in (spec.split("x") for spec in args.funnels)]

    doc_ids, texts, queries, qrels = load_scifact()
    embedder = SentenceTransformerEmbedder(args.model, device="cpu", batch_size=256)
    began = time.perf_counter()
    vectors = embedder.encode_documents(texts)
    encode_seconds = time.perf_counter() - began
    query_vectors = embedder.encode_queries(queries)
    full = vectors.shape[1]

    with tempfile.TemporaryDirectory() as tmp:
        searches = build(doc_ids, vectors, funnels, Path(tmp))
        quality = {name: ndcg_at_k(search(query_vectors)[1], qrels) for name, search in searches.items()}
        load = os.getloadavg()[0]
        with threadpool_limits(1):
            speed = {"1 thread, CPU": timings(searches, query_vectors, args.rounds, time.process_time)}
        with threadpool_limits(2):
            speed["2 threads, wall"] = timings(searches, query_vectors, args.rounds, time.perf_counter)
        load = (load + os.getloadavg()[0]) / 2

    columns = ["search", "dimensions", "candidates", "nDCG@10", "of flat"]
    for clock in speed:
        columns += [f"batched, {clock} (ms/query)", "speed-up", f"one at a time, {clock} (ms/query)", "speed-up"]
    rows = []
    for name in searches:
        if name == "flat":
            label, dims, candidates = "flat", f"{full}", K
        elif name.startswith("short"):
            label, dims, candidates = "short only", name.split()[1], K
        else:
            dim, multiplier = name.split("x")
            label, dims, candidates = f"funnel x{multiplier}", f"{dim} → {full}", K * int(multiplier)
        row = [label, dims, str(candidates), f"{quality[name]:.4f}", f"{quality[name] / quality['flat']:.1%}"]
        for measured in speed.values():
            for kind in (0, 1):  # batched, one at a time
                row += [f"{measured[name][kind] * 1e3:.3f}", f"{measured['flat'][kind] / measured[name][kind]:.2f}x"]
        rows.append(row)
    model = "WordLlama l2_supercat" if args.model == WORDLLAMA else args.model
    text = "\n".join(
        [
            header(command_line()),
            "",
            f"{model}, {len(doc_ids):,} SciFact abstracts, {len(queries)} test queries, top 10; corpus encoded "
            f"in {encode_seconds:.1f} s ({len(texts) / encode_seconds:,.0f} abstracts/s). Times: median of "
            f"{args.rounds} interleaved rounds, query encoding excluded; load average {load:.1f} during the "
            "timings.",
            "",
            markdown_table(columns, rows),
        ]
    )
    print(text)
    write_section("matryoshka_funnel", text, "Matryoshka funnel on SciFact", Path(args.out))


if __name__ == "__main__":
    main()
