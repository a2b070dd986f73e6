"""Time the fusion components per query on real hit lists: SciFact's test queries through `hybrid`'s two legs.

    python benchmarks/fusion_speed.py [--out docs/fusion.md]

BM25 and MiniLM dense each return their top 100 for every SciFact test query (the `hybrid` index,
built or reused by `rag eval`); then each fusion component fuses the two lists of every query, and
the table gives the median and 99th percentile time of one fusion call (best of 5 rounds per query).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from report import REPO, command_line, header, hybrid_legs, markdown_table, write_section

from rag.fuse.rrf import ReciprocalRankFusion
from rag.fuse.score import ScoreFusion

FUSERS = {
    "ReciprocalRankFusion (k 60, top 10)": ReciprocalRankFusion(k=60, top_k=10),
    "ReciprocalRankFusion (union, top_k null)": ReciprocalRankFusion(k=60, top_k=None),
    "ScoreFusion minmax (top 10)": ScoreFusion(method="minmax", top_k=10),
    "ScoreFusion zscore (top 10)": ScoreFusion(method="zscore", top_k=10),
    "ScoreFusion dbsf (top 10)": ScoreFusion(method="dbsf", top_k=10),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "fusion.md"))
    args = parser.parse_args()
    dataset, legs = hybrid_legs()
    queries = list(dataset.queries.values())
    lists = list(zip(*(leg.run_batch(queries, 100) for leg in legs), strict=True))
    rows = []
    for name, fuser in FUSERS.items():
        times = []
        for hits in lists:
            best = float("inf")
            for _ in range(5):
                started = time.perf_counter()
                fuser.run(hits=list(hits))
                best = min(best, time.perf_counter() - started)
            times.append(best * 1000)
        rows.append([name, f"{np.median(times):.3f}", f"{np.percentile(times, 99):.3f}"])
    text = "\n\n".join(
        [
            header(command_line()),
            f"{len(queries)} queries, {len(legs)} lists of 100 hits each (BM25, MiniLM dense).",
            markdown_table(["component", "median ms per query", "p99 ms per query"], rows),
        ]
    )
    print(text)
    write_section("fusion_speed", text, "Fusion speed", Path(args.out))


if __name__ == "__main__":
    main()
