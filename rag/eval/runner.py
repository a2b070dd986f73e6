"""`rag eval`: index a BEIR corpus with a pipeline (once), run its queries, score the rankings.

Each retriever's index of a corpus lives under `~/.cache/rag/eval/` (or `index_root`), named by
dataset, retriever type and a hash of what shapes it (corpus bytes, chunking, the retriever's
index settings), so a second run reuses it, another pipeline with the same retriever (BM25 in
`bm25` and in `hybrid`) shares it, and a changed setting builds another. It is built by the indexer's
one update flow (`rag.indexer.update_index`) from a `CorpusSource`.
Document embeddings also go through the embedding cache (`rag.embed.cache`), so pipelines that
share a model (dense, dense-int8, dense-binary) encode the corpus once between them.

Chunking "document" (the default, as in the published BEIR numbers) indexes each document as
one chunk, title and text; "pipeline" cuts documents with the pipeline's own chunker and ranks a
document by its best chunk (asking the pipeline for 3 x top_k chunks).

Queries run twice: in one batch through the retriever that produces the pipeline's hits when it
can batch (`qps`), and one at a time through the whole pipeline (`latency_ms`, `qps_one_at_a_time`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rag.core.errors import ConfigError, PipelineError
from rag.core.filters import Filter, parse_filter
from rag.core.pipeline import IndexingSettings, Pipeline
from rag.core.types import Chunk, Document, Hit
from rag.embed import cache as embedding_cache
from rag.eval.beir import BeirDataset
from rag.eval.metrics import evaluate_run, mean
from rag.fuse.adapt import auto_fusions
from rag.fuse.score import ScoreFusion
from rag.index.files import read_json, write_json
from rag.indexer import IndexReport, Progress, estimate_fusion_weights, retrievers, update_index
from rag.ingest.chunkers.recursive import RecursiveChunker
from rag.retrieve.base import Retriever
from rag.runtime.cache import cache_dir
from rag.store.chunk_store import ChunkStore, FileRecord
from rag.store.index_folder import IndexFolder

__all__ = ["CHUNKINGS", "EvalReport", "evaluate", "load_corpus_index", "write_run_file"]

CHUNKINGS = ("document", "pipeline")
Ranking = list[tuple[str, float]]


@dataclass
class EvalReport:
    """Scores of one pipeline on one dataset split, with the rankings they came from."""

    dataset: str
    pipeline: str
    split: str
    top_k: int
    chunking: str
    metrics: dict[str, float]
    per_query: dict[str, dict[str, float]]
    qps: float
    qps_one_at_a_time: float
    latency_ms: dict[str, float]
    index: dict[str, Any]
    """Where the corpus index is, whether it was reused, and how long building it took (then)."""
    run: dict[str, Ranking] = field(repr=False)
    filters: dict[str, Any] | None = None
    """The metadata filter every query kept to (its JSON form), if any."""

    def to_dict(self) -> dict[str, Any]:
        """The `rag eval --json` document."""
        return {
            "dataset": self.dataset,
            "pipeline": self.pipeline,
            "split": self.split,
            "queries": len(self.run),
            "top_k": self.top_k,
            "chunking": self.chunking,
            "metrics": {name: round(value, 5) for name, value in self.metrics.items()},
            "qps": round(self.qps, 2),
            "qps_one_at_a_time": round(self.qps_one_at_a_time, 2),
            "latency_ms": {name: round(value, 3) for name, value in self.latency_ms.items()},
            "index": self.index,
            **({"filters": self.filters} if self.filters is not None else {}),
        }


def evaluate(
    dataset: BeirDataset,
    pipeline: Pipeline,
    *,
    top_k: int = 100,
    chunking: str = "document",
    index_root: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    progress: Progress | None = None,
    filters: Filter | str | dict[str, Any] | None = None,
    allow_unknown_fields: bool = False,
) -> EvalReport:
    """Index `dataset`'s corpus with `pipeline` (or reuse that index) and score its rankings; with `filters`
    (checked against the corpus' fields, see `rag.core.filters`), every query keeps to the chunks that pass, so
    relevant documents outside the filter count as missed."""
    if chunking not in CHUNKINGS:
        raise ConfigError(f"chunking must be one of {', '.join(CHUNKINGS)}, got {chunking!r}")
    if top_k < 1:
        raise ConfigError(f"top_k must be at least 1, got {top_k}")
    if "hits" not in pipeline.outputs:
        raise PipelineError(f"pipeline '{pipeline.name}' has no 'hits' output, so its retrieval cannot be evaluated")
    if not retrievers(pipeline):
        raise PipelineError(f"pipeline '{pipeline.name}' has no retriever to index the corpus with")
    if chunking == "pipeline" and pipeline.indexing is None:
        raise PipelineError(f"pipeline '{pipeline.name}' has no 'indexing' chunker; use chunking='document'")
    index_info = load_corpus_index(dataset, pipeline, chunking, index_root, use_cache, progress)
    flt = _checked(filters, index_info, allow_unknown_fields) if filters is not None else None
    pipeline.warm_up(["hits"])
    depth = top_k if chunking == "document" else 3 * top_k
    query_ids, texts = list(dataset.queries), list(dataset.queries.values())
    _run_one(pipeline, texts[0], depth, flt)  # first-call costs (imports, lazy loads) stay out of the timings
    batched, batch_seconds = _run_batched(pipeline, texts, depth, flt)
    one_by_one, latencies = _run_one_at_a_time(pipeline, texts, depth, progress, flt)
    hits_per_query = batched if batched is not None else one_by_one
    run = {qid: _documents(hits, top_k) for qid, hits in zip(query_ids, hits_per_query, strict=True)}
    per_query = evaluate_run({qid: [doc for doc, _ in ranking] for qid, ranking in run.items()}, dataset.qrels)
    total_one = sum(latencies)
    return EvalReport(
        dataset=dataset.name,
        pipeline=pipeline.name or "pipeline",
        split=dataset.split,
        top_k=top_k,
        chunking=chunking,
        metrics={name: mean(values) for name, values in per_query.items()},
        per_query=per_query,
        qps=len(texts) / (batch_seconds if batched is not None else total_one),
        qps_one_at_a_time=len(texts) / total_one,
        latency_ms={
            "p50": float(np.percentile(latencies, 50)) * 1000,
            "p95": float(np.percentile(latencies, 95)) * 1000,
        },
        index=index_info,
        run=run,
        filters=flt.to_dict() if flt is not None else None,
    )


def _checked(filters: Filter | str | dict[str, Any], index_info: dict[str, Any], allow_unknown: bool) -> Filter:
    """`filters` parsed and checked against the fields of the corpus' chunks."""
    flt = filters if isinstance(filters, Filter) else None
    flt = flt or (parse_filter(filters) if isinstance(filters, str) else Filter.from_dict(filters))
    part = next(iter(index_info["parts"].values()))
    store = ChunkStore.load(IndexFolder(part["path"]).require_current())
    return flt.checked(store.filter_fields(), allow_unknown)


def load_corpus_index(
    dataset: BeirDataset,
    pipeline: Pipeline,
    chunking: str = "document",
    index_root: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Load `pipeline`'s retrievers with their indexes of `dataset`'s corpus, building only the missing ones.

    Returns `EvalReport.index`: whether every index was reused, the build time, and each part's folder.
    """
    root = Path(index_root) if index_root is not None else cache_dir() / "eval"
    with _embedding_cache(use_cache):
        return _build_or_reuse(dataset, pipeline, chunking, root, progress)


def write_run_file(report: EvalReport, path: str | os.PathLike[str]) -> None:
    """The rankings in TREC run format: `qid Q0 docid rank score run_name` per line."""
    name = report.pipeline.replace(" ", "_")
    with open(path, "w", encoding="utf-8") as fh:
        for qid, ranking in report.run.items():
            for rank, (doc, score) in enumerate(ranking, start=1):
                fh.write(f"{qid} Q0 {doc} {rank} {score:.6f} {name}\n")


@contextlib.contextmanager
def _embedding_cache(enabled: bool) -> Iterator[None]:
    """Turn the document embedding cache on (unless the user set one) while the corpus is indexed."""
    if not enabled or os.environ.get(embedding_cache.ENV_VAR):
        yield
        return
    os.environ[embedding_cache.ENV_VAR] = str(cache_dir() / "embeddings")
    try:
        yield
    finally:
        del os.environ[embedding_cache.ENV_VAR]


def _fingerprint(dataset: BeirDataset, pipeline: Pipeline, chunking: str, retriever: Retriever) -> dict[str, Any]:
    """What shapes one retriever's index of the corpus: corpus bytes, chunking, index settings."""
    chunker = pipeline.indexing.chunker.to_dict() if chunking == "pipeline" and pipeline.indexing else "document"
    return {
        "corpus_sha256": dataset.corpus_sha256,
        "chunking": chunker,
        "retriever": {"type": type(retriever).__name__, **retriever.index_settings()},
    }


def _build_or_reuse(
    dataset: BeirDataset, pipeline: Pipeline, chunking: str, root: Path, progress: Progress | None
) -> dict[str, Any]:
    """Load every retriever of `pipeline` with its index of the corpus, building only the missing ones.

    Each retriever's index is kept on its own (`root/DATASET-TYPE-HASH`, a normal index folder built by the
    indexer's one update flow from a `CorpusSource`), so pipelines that share a retriever share its index.
    """
    parts: dict[str, dict[str, Any]] = {}
    for name, retriever in retrievers(pipeline).items():
        wanted = _fingerprint(dataset, pipeline, chunking, retriever)
        key = hashlib.sha256(json.dumps(wanted, sort_keys=True, default=str).encode()).hexdigest()[:12]
        folder = IndexFolder(root / f"{dataset.name}-{type(retriever).__name__.lower()}-{key}")
        alone = _alone(retriever, pipeline)
        source = CorpusSource(dataset, chunking, pipeline, f"beir:{dataset.name}:{key}")
        current = folder.current()
        if current is not None and folder.manifest(current)["root"] == source.label and (folder.root / _BUILD).exists():
            seconds = read_json(folder.root / _BUILD)["seconds"]
            parts[name] = {"path": str(folder.root), "reused": True, "build_seconds": seconds}
            continue
        report = update_index(folder.root, alone, source, rebuild=True, wait=3600, progress=progress)
        write_json(folder.root / _BUILD, {"seconds": round(report.seconds, 2)})
        parts[name] = {"path": str(folder.root), "reused": False, "build_seconds": round(report.seconds, 2)}
    generations = {name: IndexFolder(part["path"]).require_current() for name, part in parts.items()}
    loaded = ChunkStore.load(next(iter(generations.values())))  # the same chunks in every part
    for name, retriever in retrievers(pipeline).items():
        retriever.load(generations[name] / "components" / "retriever", loaded)
    for name, legs in auto_fusions(pipeline).items():  # learned from the corpus' titles, as an index does
        fusion = pipeline.components[name]
        assert isinstance(fusion, ScoreFusion)
        fusion.use_estimate(estimate_fusion_weights(pipeline, name, dict.fromkeys(legs), loaded))
    return {
        "reused": all(part["reused"] for part in parts.values()),
        "build_seconds": round(sum(part["build_seconds"] for part in parts.values()), 2),
        "parts": parts,
    }


_BUILD = "build.json"
"""Beside an eval index's generations: how long it took to build (reported again when it is reused)."""


def _alone(retriever: Retriever, pipeline: Pipeline) -> Pipeline:
    """A pipeline of this one retriever (named "retriever"), to index it on its own."""
    indexing = pipeline.indexing or IndexingSettings(chunker=RecursiveChunker())
    return Pipeline(
        {"retriever": retriever},
        inputs={"query": ["retriever.query"]},
        outputs={"hits": "retriever.hits"},
        indexing=indexing,
    )


@dataclass
class CorpusSource:
    """A BEIR corpus as an index's source (`rag.indexer.Source`): each document one chunk ("document" chunking,
    its id the document's), or cut by the pipeline's chunker ("pipeline")."""

    dataset: BeirDataset
    chunking: str
    pipeline: Pipeline
    label: str
    kind: str = "the corpus "
    mismatch_hint: str = "rebuild it (rag eval --no-cache)"
    failed_items: str = "document(s) could not be indexed"
    strict_name: str = "strict"

    def sync(self, store: ChunkStore, report: IndexReport, progress: Progress | None) -> bool:
        indexing = self.pipeline.indexing
        chunker = indexing.chunker if self.chunking == "pipeline" and indexing else None
        if chunker is not None:
            chunker.warm_up()
        for doc_id, (title, _) in self.dataset.corpus.items():
            text = self.dataset.document_text(doc_id)
            if chunker is None:
                chunks = [Chunk(doc_id, doc_id, text, 0, len(text), {"title": title})]
            else:
                chunks = chunker.run(document=Document(doc_id, text, {"title": title}))["chunks"]
            digest = hashlib.sha256(text.encode()).hexdigest()
            store.put_file(FileRecord(doc_id, len(text), 0, digest, tuple(c.id for c in chunks)), chunks)
            report.added += 1
        return False


def _run_one(pipeline: Pipeline, query: str, depth: int, filters: Filter | None = None) -> list[Hit]:
    inputs: dict[str, Any] = {"query": query}
    if "top_k" in pipeline.inputs:
        inputs["top_k"] = depth
    if filters is not None:
        inputs["filters"] = filters
    return pipeline.run(inputs, outputs=["hits"])["hits"]


def _run_one_at_a_time(
    pipeline: Pipeline, queries: Sequence[str], depth: int, progress: Progress | None, filters: Filter | None = None
) -> tuple[list[list[Hit]], list[float]]:
    results, latencies = [], []
    for done, query in enumerate(queries, start=1):
        started = time.perf_counter()
        results.append(_run_one(pipeline, query, depth, filters))
        latencies.append(time.perf_counter() - started)
        if progress:
            progress("querying", done, len(queries))
    return results, latencies


def _run_batched(
    pipeline: Pipeline, queries: Sequence[str], depth: int, filters: Filter | None = None
) -> tuple[list[list[Hit]] | None, float]:
    """All queries in one call to the retriever behind the `hits` output, when it is fed the query directly and
    there is no filter (a filtered run goes one query at a time, through the pipeline)."""
    component, socket = pipeline.outputs["hits"]
    retriever = pipeline.components[component]
    fed_the_query = (component, "query") in pipeline.inputs.get("query", [])
    if filters is not None or not (isinstance(retriever, Retriever) and socket == "hits" and fed_the_query):
        return None, 0.0
    started = time.perf_counter()
    results = retriever.run_batch(list(queries), depth)
    return results, time.perf_counter() - started


def _documents(hits: Sequence[Hit], top_k: int) -> Ranking:
    """Documents ranked by their best chunk (a chunk's path is its document id), `top_k` of them."""
    ranking: Ranking = []
    seen: set[str] = set()
    for hit in hits:
        if hit.chunk.path not in seen:
            seen.add(hit.chunk.path)
            ranking.append((hit.chunk.path, float(hit.score)))
            if len(ranking) == top_k:
                break
    return ranking
