"""How much of the trained reranker to blend with `hybrid`'s RRF scores: nDCG@10 by weight, train and test.

    python benchmarks/rerank_blend.py [--train-queries 100] [--scores DIR] [--out docs/reranking.md]

For SciFact test queries and a seeded sample of train queries, `hybrid` (BM25 + MiniLM, RRF) ranks the
corpus, and the cross-encoder written by `rag train reranker ../shared/data/scifact --split train` scores
RRF's top 30 (about 0.1 s a pair on 2 cores: 25 minutes for both splits). The scores are saved as
`DIR/train.json` and `DIR/test.json` and reused when present, so the table can be redrawn without the
reranker. For each depth (10, 20, 30), normalisation (z-score, min-max) and reranker weight w, the top
`depth` are reordered by (1 - w) * norm(RRF) + w * norm(reranker) with the `ScoreFusion` component, as the
`hybrid-rerank` pipeline does, and nDCG@10 is averaged. The weight is meant to be chosen on the train rows;
the test rows then say what that choice gives, with a paired bootstrap against `hybrid`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
from pathlib import Path

import numpy as np
from report import DATA, REPO, command_line, header, markdown_table, write_section

from rag.core.serialization import load_pipeline
from rag.core.types import Chunk, Hit
from rag.eval.beir import load_beir
from rag.eval.metrics import ndcg
from rag.eval.runner import evaluate
from rag.fuse.score import ScoreFusion
from rag.rerank.cross_encoder import CrossEncoderReranker

RERANKER = "~/.cache/rag/models/reranker-scifact"
CANDIDATES = 30
WEIGHTS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0]


def scores(split: str, sample: int | None, folder: Path) -> dict:
    """{"qrels", "run": {query id: {"ids", "rrf", "ce"}}} for RRF's top candidates of each query."""
    path = folder / f"{split}.json"
    if path.exists():
        return json.loads(path.read_text())
    dataset = load_beir(DATA / "scifact", split=split)
    if sample:
        keep = random.Random(0).sample(sorted(dataset.queries), sample)
        dataset = dataclasses.replace(
            dataset,
            queries={q: dataset.queries[q] for q in keep},
            qrels={q: dataset.qrels[q] for q in keep if q in dataset.qrels},
        )
    report = evaluate(dataset, load_pipeline("hybrid"), top_k=100)
    reranker = CrossEncoderReranker(model=RERANKER, top_k=None, max_length=256)
    run = {}
    for query_id, ranking in report.run.items():
        ids = [doc for doc, _ in ranking[:CANDIDATES]]
        run[query_id] = {
            "ids": ids,
            "rrf": [score for _, score in ranking[:CANDIDATES]],
            "ce": reranker.score(dataset.queries[query_id], [dataset.document_text(doc) for doc in ids]),
        }
    result = {"qrels": dataset.qrels, "run": run}
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return result


def per_query(data: dict, weight: float, depth: int, method: str) -> np.ndarray:
    """nDCG@10 of each query when its top `depth` are blended by `ScoreFusion`, as in the pipeline."""
    fusion = ScoreFusion(method=method, weights=[1 - weight, weight], top_k=None)
    values = []
    for query_id, row in data["run"].items():
        chunks = [Chunk(doc, doc, "", 0, 0) for doc in row["ids"][:depth]]
        first_stage = [Hit(chunk, score) for chunk, score in zip(chunks, row["rrf"], strict=False)]
        scored = [Hit(chunk, score) for chunk, score in zip(chunks, row["ce"], strict=False)]
        reranked = sorted(scored, key=lambda hit: -hit.score)  # the reranker's output order (stable on ties)
        fused = fusion.run(hits=[first_stage, reranked])["hits"]
        values.append(ndcg([hit.id for hit in fused], data["qrels"].get(query_id, {}), 10))
    return np.array(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-queries", type=int, default=100)
    parser.add_argument("--scores", type=Path, default=Path.home() / ".cache" / "rag" / "rerank-blend")
    parser.add_argument("--chosen", default="20 zscore 0.2", help="depth, normalisation and weight to test")
    parser.add_argument("--out", default=str(REPO / "docs" / "reranking.md"))
    args = parser.parse_args()
    splits = {"train": scores("train", args.train_queries, args.scores), "test": scores("test", None, args.scores)}
    rows = []
    for split, data in splits.items():
        for depth in (10, 20, 30):
            for method in ("zscore", "minmax"):
                means = [per_query(data, w, depth, method).mean() for w in WEIGHTS]
                rows.append([f"{len(data['run'])} {split}", str(depth), method, *(f"{m:.4f}" for m in means)])
    depth, method, weight = args.chosen.split()
    test = splits["test"]
    difference = per_query(test, float(weight), int(depth), method) - per_query(test, 0.0, int(depth), method)
    rng = np.random.default_rng(0)
    boot = [difference[rng.integers(0, difference.size, difference.size)].mean() for _ in range(10_000)]
    text = "\n\n".join(
        [
            header(command_line()),
            markdown_table(["queries", "depth", "normalisation", *(f"w {w:g}" for w in WEIGHTS)], rows),
            f"Chosen ({depth}, {method}, w {weight}) against `hybrid` on the test queries: "
            f"{difference.mean():+.4f} nDCG@10, 95% bootstrap interval [{np.percentile(boot, 2.5):+.4f}, "
            f"{np.percentile(boot, 97.5):+.4f}]; {int((difference > 1e-9).sum())} queries better, "
            f"{int((difference < -1e-9).sum())} worse.",
        ]
    )
    print(text)
    write_section("rerank_blend", text, "Blending the reranker with the first stage", Path(args.out))


if __name__ == "__main__":
    main()
