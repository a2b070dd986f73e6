"""`rag tune` measured: SciFact train -> test, dbpedia-subset by cross-validation, and the label-free variant.

    python benchmarks/fusion_tune.py [--out docs/benchmarks.md]

Each row tunes the `hybrid` pipeline's fusion (BM25 + MiniLM, z-score with learned weights) with
`rag.eval.tune.tune_fusion`: the held-out (5-fold) nDCG@10 of tuning against the pipeline as shipped, with the
bootstrap 95% interval of the gain, what was chosen (the shipped fusion is kept when that interval does not exclude
zero), and, where another split exists, both on queries never used for tuning. The legs' indexes come from `rag
eval`'s cache (built on the first run). The table is written between `<!-- fusion_tune -->` markers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from report import DATA, PAGE, command_line, header, markdown_table, tuned_cells, write_section

from rag.core.serialization import load_pipeline
from rag.eval.beir import load_beir
from rag.eval.tune import compare_on, synthetic_dataset, tune_fusion

RUNS = [
    ("scifact", "train", "test", False),
    ("scifact", "test", None, True),
    ("dbpedia-subset", "test", None, False),
    ("dbpedia-subset", "test", None, True),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(PAGE))
    args = parser.parse_args()
    rows = []
    for name, split, other, synthetic in RUNS:
        dataset = load_beir(DATA / name, split)
        tuned_on = synthetic_dataset(dataset) if synthetic else dataset
        pipeline = load_pipeline("hybrid")
        report = tune_fusion(tuned_on, pipeline)
        check = compare_on(load_beir(DATA / name, other) if other else dataset, pipeline, report)
        row = [
            name,
            f"{'synthetic (titles)' if synthetic else split}, {report.queries} queries",
            *tuned_cells(report),
            f"{check['split']}: {check['baseline']:.4f} → {check['tuned']:.4f}"
            f" ({check['gain_interval_95'][0]:+.4f} to {check['gain_interval_95'][1]:+.4f})",
        ]
        rows.append(row)
        print(row, flush=True)
    columns = [
        "collection",
        "tuned on",
        "held-out nDCG@10: shipped → tuned (gain, 95% interval)",
        "chosen",
        "judged queries: shipped → chosen (95% interval of the gain)",
    ]
    note = (
        "`hybrid` = BM25 + MiniLM fused by z-score with the leg weights learned from titles. "
        "A synthetic row tunes on the titles of 400 sampled "
        "documents as queries (no labels) and is then scored on the collection's judged queries. On dbpedia-subset "
        "and on synthetic rows the last column re-scores the same judged queries the row was not tuned on, except "
        "the labelled dbpedia row, where only the held-out column is an honest estimate (40 judged queries, no "
        "other split)."
    )
    text = f"{header(command_line())}\n\n{note}\n\n{markdown_table(columns, rows)}"
    print(text)
    write_section("fusion_tune", text, "Tuning fusion: `rag tune`", Path(args.out))


if __name__ == "__main__":
    main()
