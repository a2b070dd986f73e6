"""How much of the exact-MaxSim top 10 the ColBERT candidate generation keeps, on SciFact.

    python benchmarks/colbert_candidates.py [--limit 500] [--cache DIR] [--index DIR] [--out docs/benchmarks.md]

The first `--limit` SciFact abstracts (title, blank line, abstract) are embedded token by token
with ColBERTRetriever's defaults (all-MiniLM-L6-v2 token outputs; no trained ColBERT weights ship
here) and indexed. For every test query (those with a relevant abstract among them, and all 300
test queries), the exact top 10 is MaxSim over every document; the candidates are the documents
`MultiVectorIndex.shortlist` picks to score exactly. Reported per configuration: the mean share of
the exact top 10 inside the candidates (target ≥ 95%) and the share of documents scored exactly
(target ≤ 10%). `--cache DIR` keeps the embedded index between runs; `--index DIR` reads one that
`rag eval` built instead (its `components/<retriever>` folder; the whole corpus, so no `--limit`).
The table is printed and written into the benchmarks page, one section per corpus size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
from report import DATA, PAGE, command_line, header, write_section

from rag.embed.multivector import MultiVectorEmbedder
from rag.index.files import read_json
from rag.index.multivector_index import MultiVectorIndex, centroid_count
from rag.retrieve.colbert import ColBERTRetriever

SCIFACT = DATA / "scifact"
K = 10


def read_scifact(limit: int) -> tuple[list[str], list[str], dict[str, str], dict[str, set[str]]]:
    """Document ids and texts (first `limit`), test query texts and test qrels."""
    ids, texts = [], []
    with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            if len(ids) >= limit:
                break
            doc = json.loads(line)
            ids.append(doc["_id"])
            texts.append(f"{doc['title']}\n\n{doc['text']}")
    qrels: dict[str, set[str]] = {}
    for line in (SCIFACT / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        query_id, doc_id, _ = line.split("\t")
        qrels.setdefault(query_id, set()).add(doc_id)
    queries = {}
    with open(SCIFACT / "queries.jsonl", encoding="utf-8") as fh:
        for line in fh:
            query = json.loads(line)
            if query["_id"] in qrels:
                queries[query["_id"]] = query["text"]
    return ids, texts, queries, qrels


def embedder_and_index(settings: dict) -> tuple[MultiVectorEmbedder, MultiVectorIndex]:
    keys = ("model", "batch_size", "query_length", "document_length", "query_augmentation")
    embedder = MultiVectorEmbedder(
        **{k: settings[k] for k in keys},
        keep_special_tokens=settings["keep_special_tokens"],
        skip_punctuation=settings["skip_punctuation"],
        device="cpu",
    )
    return embedder, MultiVectorIndex(storage=settings["storage"], centroids=settings["centroids"])


def exact_top(index: MultiVectorIndex, queries: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
    """Row numbers of each query's K best documents by exact MaxSim over every document, and ms a query."""
    everything = np.flatnonzero(index.alive)
    began = time.perf_counter()
    tops = [everything[np.argsort(-index.score(query, everything), kind="stable")[:K]] for query in queries]
    return tops, 1000 * (time.perf_counter() - began) / len(queries)


def probed_share(index: MultiVectorIndex, query: np.ndarray, nprobe: int) -> float:
    """The share of token vectors in the centroids a query probes: those scored to pick the candidates."""
    if index.centroid_vectors is None:
        return 1.0
    similarity = query @ index.centroid_vectors.T
    probed = np.unique(np.argsort(-similarity, axis=1)[:, :nprobe])
    return float(np.isin(np.asarray(index.codes), probed).mean())


def measure(
    index: MultiVectorIndex, queries: list[np.ndarray], exact: list[np.ndarray], candidates: int, nprobe: int
) -> tuple[float, ...]:
    """Mean and worst share of the exact top K in the candidates, share of documents scored exactly, share
    of token vectors scored to pick them, and ms a query (candidates and exact MaxSim)."""
    kept, scored, probed, seconds = [], [], [], 0.0
    for query, top in zip(queries, exact, strict=True):
        began = time.perf_counter()
        shortlist = index.shortlist(query, candidates, nprobe)
        index.score(query, shortlist)
        seconds += time.perf_counter() - began
        kept.append(len(np.intersect1d(top, shortlist)) / len(top))
        scored.append(len(shortlist) / len(index))
        probed.append(probed_share(index, query, nprobe))
    means = (np.mean(kept), np.min(kept), np.mean(scored), np.mean(probed))
    return (*(float(m) for m in means), 1000 * seconds / len(queries))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=500, help="use the first N abstracts")
    parser.add_argument("--cache", default=None, help="folder to keep the embedded index in between runs")
    parser.add_argument("--index", default=None, help="an index `rag eval` built of the whole corpus, to read")
    parser.add_argument("--out", default=str(PAGE))
    args = parser.parse_args()
    settings = ColBERTRetriever().settings
    embedder, index = embedder_and_index(settings)
    if args.index:
        cache: Path | None = Path(args.index)
        args.limit = read_json(cache / "manifest.json")["count"]
    else:
        cache = Path(args.cache) / f"scifact-{args.limit}" if args.cache else None
    ids, texts, query_texts, qrels = read_scifact(args.limit)
    began = time.perf_counter()
    cached = cache is not None and (cache / "manifest.json").exists()
    if cached:
        index = MultiVectorIndex.load(cache)
    else:
        index.add(ids, embedder.encode_documents(texts))
        index.prepare()  # train the centroids now, not in the first timed search
        if cache is not None:
            index.save(cache)
    embed_seconds = time.perf_counter() - began
    own = [q for q, docs in qrels.items() if docs & set(ids)]
    all_queries = list(query_texts)
    encoded = dict(zip(all_queries, embedder.encode_queries([query_texts[q] for q in all_queries]), strict=True))
    candidates = settings["candidates"] or 4 * K
    default = (settings["nprobe"], candidates)
    grid = sorted({default, (1, candidates), (2, candidates), (8, candidates), (settings["nprobe"], 2 * K)})
    tops, exact_ms = exact_top(index, [encoded[q] for q in all_queries])
    exact = dict(zip(all_queries, tops, strict=True))
    rows = []
    for name, chosen in (("with a relevant abstract among them", own), ("all test queries", all_queries)):
        for nprobe, count in grid:
            tokens, tops = [encoded[q] for q in chosen], [exact[q] for q in chosen]
            kept, worst, scored, probed, ms = measure(index, tokens, tops, count, nprobe)
            mark = " (default)" if (nprobe, count) == default else ""
            rows.append(
                f"| {name} ({len(chosen)}) | {nprobe}{mark} | {count} | **{kept:.1%}** | {worst:.0%} "
                f"| **{scored:.1%}** | {probed:.1%} | {ms:.0f} |"
            )
    recall = relevant_in_top(
        index,
        [encoded[q] for q in own],
        [exact[q] for q in own],
        [qrels[q] for q in own],
        candidates=candidates,
        nprobe=settings["nprobe"],
    )
    k = len(index.centroid_vectors) if index.centroid_vectors is not None else 0
    augmentation = {True: "on", False: "off", None: "off (the default for a plain encoder)"}[
        settings["query_augmentation"]
    ]
    table = "\n".join(
        [
            header(command_line()),
            "",
            f"{len(ids):,} abstracts, {index.token_count:,} token vectors ({settings['storage']}, "
            f"document_length {settings['document_length']}), {k:,} centroids "
            f"(auto: {centroid_count(index.token_count):,}), query_length {settings['query_length']}, "
            f"[MASK] augmentation {augmentation}; model {settings['model']} (its token outputs, "
            "never trained for MaxSim); "
            + (
                f"index read from {'--index' if args.index else '--cache'}."
                if cached
                else f"embedding and indexing took {embed_seconds:.0f} s."
            ),
            "",
            "| queries | nprobe | candidates | exact top 10 in candidates (mean) | worst query | documents "
            "scored exactly | token vectors scored to pick them | ms per query |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Exact MaxSim over every document takes {exact_ms:.0f} ms per query (all test queries).",
            "",
            f"Relevant abstract in the top 10 (queries with one among them): exact MaxSim over every document "
            f"{recall[0]:.1%}, candidates then exact MaxSim {recall[1]:.1%}.",
        ]
    )
    print(table)
    write_section(
        f"colbert_candidates_{len(ids)}",
        table,
        f"ColBERT candidate generation on {len(ids):,} SciFact abstracts",
        Path(args.out),
    )


def relevant_in_top(
    index: MultiVectorIndex, queries: list[np.ndarray], exact: list[np.ndarray], relevant: list[set[str]], **search: int
) -> tuple[float, float]:
    """Recall@K of the relevant abstracts: exact MaxSim over everything, and through the candidates."""
    present = set(index.ids)
    found_exact, found_search = [], []
    for query, top, wanted in zip(queries, exact, relevant, strict=True):
        found_exact.append(len(wanted & {index.ids[d] for d in top}) / len(wanted & present))
        hits = {i for i, _ in index.search(query, K, **search)}
        found_search.append(len(wanted & hits) / len(wanted & present))
    return float(np.mean(found_exact)), float(np.mean(found_search))


if __name__ == "__main__":
    sys.exit(main())
