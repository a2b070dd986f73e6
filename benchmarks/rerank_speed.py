"""Time the MiniLM cross-encoder reranking 50 candidates per query, at several pair lengths.

    python benchmarks/rerank_speed.py [--queries 10] [--candidates 50] [--max-lengths 256 128 64]
                                      [--model ~/.cache/rag/models/reranker-scifact] [--out docs/reranking.md]

The candidates are real: RRF's top 50 over `hybrid`'s two legs (BM25, MiniLM dense; the index built
or reused by `rag eval`) for the first SciFact test queries. `CrossEncoderReranker` scores them once to
load and warm up, then the table gives the median and 95th percentile wall time of one `run` per
query, and the mean number of tokens a (query, abstract) pair has after truncation to `max_length`.
The model is the one `rag train reranker ../shared/data/scifact --split train` writes (a MiniLM-L6
cross-encoder, the same size as the published MS MARCO one).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from report import REPO, command_line, header, hybrid_legs, markdown_table, write_section

from rag.fuse.rrf import ReciprocalRankFusion
from rag.rerank.cross_encoder import CrossEncoderReranker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--max-lengths", type=int, nargs="+", default=[256, 128, 64])
    parser.add_argument("--model", default="~/.cache/rag/models/reranker-scifact")
    parser.add_argument("--out", default=str(REPO / "docs" / "reranking.md"))
    args = parser.parse_args()
    dataset, legs = hybrid_legs()
    fusion = ReciprocalRankFusion(k=60, top_k=args.candidates)
    queries = list(dataset.queries.values())[: args.queries]
    candidates = [fusion.run(hits=[leg.run(q, 100)["hits"] for leg in legs])["hits"] for q in queries]
    rows = []
    for max_length in args.max_lengths:
        reranker = CrossEncoderReranker(model=args.model, top_k=None, max_length=max_length)
        reranker.run(queries[0], candidates[0])  # load and warm up
        tokenizer = reranker._model.tokenizer
        tokens = [
            len(tokenizer(query, hit.chunk.text, truncation=True, max_length=max_length)["input_ids"])
            for query, hits in zip(queries, candidates, strict=True)
            for hit in hits
        ]
        times = []
        for query, hits in zip(queries, candidates, strict=True):
            started = time.perf_counter()
            reranker.run(query, hits)
            times.append((time.perf_counter() - started) * 1000)
        pairs = sum(len(hits) for hits in candidates)
        rows.append(
            [
                str(max_length),
                f"{np.mean(tokens):.0f}",
                f"{np.median(times):,.0f}",
                f"{np.percentile(times, 95):,.0f}",
                f"{pairs / (sum(times) / 1000):.1f}",
            ]
        )
    text = "\n\n".join(
        [
            header(command_line()),
            f"{len(queries)} SciFact test queries, RRF's top {args.candidates} each; model {args.model}.",
            markdown_table(
                ["max_length", "tokens per pair (mean)", "median ms per query", "p95 ms per query", "pairs/s"], rows
            ),
        ]
    )
    print(text)
    write_section("rerank_speed", text, "Reranking speed", Path(args.out))


if __name__ == "__main__":
    main()
