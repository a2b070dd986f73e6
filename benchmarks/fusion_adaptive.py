"""Fusion without labels across collections: the legs, reciprocal rank fusion, z-score, and z-score with the leg
weights the index learns from its own titles (`ScoreFusion(weights: auto)`, the `hybrid` default).

    python benchmarks/fusion_adaptive.py [--out docs/benchmarks.md]

Collections: SciFact (test queries) and dbpedia-subset (the two the method was designed on), and two it was not:
SQuAD 2.0's answerable questions over their 422 paragraphs, and PubMedQA's 1,000 questions over their abstracts
(each question's own abstract relevant), both from `shared/data`. BM25 and MiniLM legs 100 deep, as in `hybrid`;
the indexes come from `rag eval`'s cache. Beside nDCG@10: the learned weights (and how many titles taught them),
and the estimate's cost against the time to build the index. The table is written between
`<!-- fusion_adaptive -->` markers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

from report import DATA, PAGE, command_line, header, markdown_table, write_section

from rag.core.serialization import load_pipeline
from rag.core.types import Hit
from rag.eval.beir import BeirDataset, load_beir
from rag.eval.metrics import evaluate_run
from rag.eval.runner import load_corpus_index
from rag.eval.squad import load_question_set
from rag.eval.tune import Candidate, candidate_of, candidate_scores, fusion_of, leg_lists
from rag.fuse.adapt import auto_fusions
from rag.indexer import estimate_fusion_weights

FIXED = {
    "RRF k 60 (the former default)": Candidate("ReciprocalRankFusion", {"k": 60}),
    "z-score, equal weights": Candidate("ScoreFusion", {"method": "zscore"}),
}


def squad2() -> BeirDataset:
    questions = load_question_set(DATA / "squad2", "all")
    answerable = [q for q in questions.questions if q.answerable]
    return BeirDataset(
        "squad2",
        "answerable",
        questions.corpus,
        {q.id: q.question for q in answerable},
        {q.id: {q.paragraph: 1} for q in answerable},
        questions.corpus_sha256,
    )


def pubmedqa() -> BeirDataset:
    items = json.loads((DATA / "pubmedqa" / "ori_pqal.json").read_text())
    corpus = {pmid: ("", " ".join(item["CONTEXTS"])) for pmid, item in items.items()}
    digest = hashlib.sha256(json.dumps(corpus, sort_keys=True).encode()).hexdigest()
    queries = {pmid: item["QUESTION"] for pmid, item in items.items()}
    return BeirDataset("pubmedqa", "all", corpus, queries, {pmid: {pmid: 1} for pmid in items}, digest)


def leg_run(lists: dict[str, list[list[Hit]]], leg: int) -> dict[str, list[str]]:
    """One leg's ranking of documents (by their best chunk) for every query."""
    return {qid: list(dict.fromkeys(hit.chunk.path for hit in legs[leg])) for qid, legs in lists.items()}


def mean(scores: dict[str, float]) -> float:
    return sum(scores.values()) / len(scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(PAGE))
    args = parser.parse_args()
    collections = [
        ("SciFact (designed on)", load_beir(DATA / "scifact", "test")),
        ("dbpedia-subset (designed on)", load_beir(DATA / "dbpedia-subset", "test")),
        ("SQuAD 2.0 answerable (unseen)", squad2()),
        ("PubMedQA (unseen)", pubmedqa()),
    ]
    rows = []
    for label, dataset in collections:
        pipeline = load_pipeline("hybrid")
        name, legs = fusion_of(pipeline)
        info = load_corpus_index(dataset, pipeline)  # builds or reuses the legs' indexes, learning the weights
        started = time.perf_counter()
        store = pipeline.components[legs[0]]._loaded()[1]
        estimate = estimate_fusion_weights(pipeline, name, dict.fromkeys(legs), store)
        seconds = time.perf_counter() - started
        lists = leg_lists(dataset, pipeline, legs)
        assert name in auto_fusions(pipeline)
        legs_scores = {
            leg: mean(evaluate_run(leg_run(lists, i), dataset.qrels)["ndcg@10"]) for i, leg in enumerate(legs)
        }
        fused = {shown: mean(candidate_scores(c, lists, dataset)) for shown, c in FIXED.items()}
        fused["z-score, learned weights (`hybrid`)"] = mean(
            candidate_scores(candidate_of(pipeline.components[name]), lists, dataset)
        )
        best_leg = max(legs_scores.values())
        learned = (
            f"{', '.join(f'{leg} {w:g}' for leg, w in zip(estimate.legs, estimate.weights, strict=True))} "
            f"({estimate.queries} titles)"
            if estimate is not None
            else "equal (too few titles)"
        )
        rows.append(
            [
                label,
                f"{len(dataset.queries):,}",
                *(f"{legs_scores[leg]:.4f}" for leg in legs),
                *(f"{score:.4f}{'' if score >= best_leg else ' (below a leg)'}" for score in fused.values()),
                learned,
                f"{seconds:.1f} s / {info['build_seconds']:.0f} s",
            ]
        )
        print(rows[-1], flush=True)
    columns = [
        "collection",
        "queries",
        "BM25",
        "dense",
        *FIXED,
        "z-score, learned weights (`hybrid`)",
        "learned weights",
        "estimate / index build",
    ]
    note = (
        "nDCG@10. Learned weights come from up to 400 document titles as pseudo-queries, each with its own document "
        "as the answer (titles one document alone has, two words or more, other than its file name); a collection "
        "with fewer than 50 such titles keeps equal weights. The estimate's time includes loading the dense model."
    )
    text = f"{header(command_line())}\n\n{note}\n\n{markdown_table(columns, rows)}"
    print(text)
    write_section("fusion_adaptive", text, "Fusion without labels across collections", Path(args.out))


if __name__ == "__main__":
    main()
