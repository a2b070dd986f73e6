"""Sharded indexes: one index split into shard folders, queried by fan-out and an exact top-k merge.

    indexes/NAME/
        shards.json      the manifest: format, shard folders in order, how files are assigned
        shard-000/       an ordinary index folder (CURRENT, generations; `rag query --index NAME/shard-000` works)
        shard-001/
        ...
        .lock            held while the shards are being updated

A file belongs to shard `sha256(relative path) mod count`, so all its chunks live in one shard and
an incremental run updates each shard with the indexer's own change detection (a renamed file
leaves one shard and joins another). Each shard is built alone, so building never needs more
memory than one shard's; each shard's update is atomic, the set of shards is not (a reader during
an update may see some shards already updated).

A query runs every retriever on every shard (in threads, or in one Ray actor per shard) and merges
the shard lists by score into the global top-k: with exact retrievers (a Flat dense index, SPLADE)
the result is the one a single index would give, since the global top-k of a retriever whose
scores depend only on the query and the chunk is inside the union of the shards' top-k. BM25 is
refused: its idf and average length are per-shard statistics, so its scores from different shards
are not comparable. A shard listed by the manifest but missing is an error naming it; no shard is
ever silently skipped.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import json
import os
import shutil
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rag.core.component import Component
from rag.core.errors import ConfigError, IncompatibleIndexError, IndexNotFoundError, IndexStoreError, PipelineError
from rag.core.filters import Filter, parse_filter
from rag.core.pipeline import Pipeline
from rag.core.serialization import pipeline_from_dict
from rag.core.types import Hit
from rag.fuse.adapt import LegWeights, auto_fusions, combined
from rag.fuse.score import ScoreFusion
from rag.indexer import IndexingEngine, IndexReport, Progress, index_folder, retrievers
from rag.retrieve.base import Retriever
from rag.store.chunk_store import ChunkStore
from rag.store.index_folder import IndexFolder

__all__ = [
    "MANIFEST",
    "ShardedIndex",
    "ShardedIndexReport",
    "ShardedRetriever",
    "index_sharded",
    "merge_top_k",
    "shard_of",
]

MANIFEST = "shards.json"
FORMAT = "rag-sharded-index"
FORMAT_VERSION = 1
UNSHARDABLE = frozenset({"BM25Retriever"})
"""Retrievers whose scores depend on corpus statistics, so per-shard scores cannot be merged."""


def shard_of(rel: str, count: int) -> int:
    """The shard of the file at relative path `rel`: sha256 of the path, modulo `count`."""
    return int.from_bytes(hashlib.sha256(rel.encode("utf-8")).digest()[:8], "big") % count


def merge_top_k(lists: Sequence[Sequence[Hit]], top_k: int) -> list[Hit]:
    """The `top_k` best hits of all lists, best first, ties by chunk id (as a single index orders them)."""
    return heapq.nsmallest(top_k, (hit for hits in lists for hit in hits), key=lambda h: (-h.score, h.id))


@dataclass
class ShardedIndexReport:
    """What one sharded indexing run did: each shard's report, and their sums."""

    shards: list[IndexReport] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        parts = [r.to_dict() for r in self.shards]
        files = {k: sum(p["files"][k] for p in parts) for k in ("added", "changed", "removed", "unchanged", "failed")}
        return {
            "files": files,
            "failures": [f for p in parts for f in p["failures"]],
            "chunks": {k: sum(p["chunks"][k] for p in parts) for k in ("total", "embedded")},
            "seconds": round(sum(p["seconds"] for p in parts), 3),
            "shards": parts,
        }


def index_sharded(
    folder: str | os.PathLike[str],
    index_dir: str | os.PathLike[str],
    pipeline: Pipeline,
    shards: int,
    *,
    strict: bool = False,
    rebuild: bool = False,
    wait: float = 0.0,
    progress: Progress | None = None,
    engine: IndexingEngine | None = None,
) -> ShardedIndexReport:
    """Index `folder` into `shards` shard folders under `index_dir` (see the module docstring)."""
    if shards < 1:
        raise ConfigError(f"a sharded index needs at least 1 shard, got {shards}")
    check_shardable(pipeline)
    root = Path(index_dir)
    names = [f"shard-{n:03d}" for n in range(shards)]
    with IndexFolder(root).lock(wait):
        existing = _read_manifest(root) if (root / MANIFEST).exists() else None
        if existing is not None and existing["shards"] != names and not rebuild:
            raise IncompatibleIndexError(
                f"index {root} has {len(existing['shards'])} shards, not {shards}; keep --shards "
                f"{len(existing['shards'])} or rebuild it with --rebuild"
            )
        report = ShardedIndexReport()
        for n, name in enumerate(names):
            report.shards.append(
                index_folder(
                    folder,
                    root / name,
                    pipeline,
                    strict=strict,
                    rebuild=rebuild,
                    wait=wait,
                    progress=progress,
                    engine=engine,
                    select=functools.partial(_in_shard, shards=shards, n=n),
                )
            )
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "shards": names,
            "assignment": "sha256(relative path) mod shards",
            "root": str(Path(folder).expanduser().resolve()),
        }
        tmp = root / f"{MANIFEST}.tmp"
        tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        os.replace(tmp, root / MANIFEST)
        if existing is not None:
            for stale in set(existing["shards"]) - set(names):
                shutil.rmtree(root / stale, ignore_errors=True)
    return report


def check_shardable(pipeline: Pipeline) -> None:
    """Refuse pipelines with retrievers whose scores cannot be merged across shards."""
    for name, retriever in retrievers(pipeline).items():
        if type(retriever).__name__ in UNSHARDABLE:
            raise ConfigError(
                f"pipeline '{pipeline.name}': retriever '{name}' ({type(retriever).__name__}) scores with "
                "per-shard corpus statistics (idf, average length), so its scores from different shards "
                "cannot be merged into a correct top-k; shard a pipeline of dense or SPLADE retrievers "
                "(for example --pipeline dense)"
            )


class ShardedIndex:
    """A sharded index folder, opened for queries: `query()`, or `pipeline` for anything it outputs.

    Opening checks that every shard the manifest lists is there with a live generation.
    `fanout` is "threads" (every shard in this process) or "ray" (one Ray actor per shard, so
    shards can live on different machines of the cluster).
    """

    def __init__(self, root: str | os.PathLike[str], allowed: Collection[str] = (), fanout: str = "threads") -> None:
        if fanout not in ("threads", "ray"):
            raise ConfigError(f"ShardedIndex fanout must be 'threads' or 'ray', got {fanout!r}")
        self.root = Path(root)
        self.fanout = fanout
        self._allowed = tuple(allowed)
        manifest = _read_manifest(self.root)
        self.shards = [self.root / name for name in manifest["shards"]]
        self.generations = [_live_generation(self.root, shard) for shard in self.shards]
        stored = IndexFolder(self.shards[0]).manifest(self.generations[0])["pipeline"]
        self._stored_pipeline = stored
        self._pipeline: Pipeline | None = None
        self._searchers: dict[str, list[Any]] = {}

    @property
    def pipeline(self) -> Pipeline:
        """The shards' pipeline with each retriever replaced by a `ShardedRetriever` over all shards."""
        if self._pipeline is None:
            original = pipeline_from_dict(self._stored_pipeline, self._allowed, f"{self.root}/{MANIFEST}")
            check_shardable(original)
            components: dict[str, Component] = dict(original.components)
            for name, retriever in retrievers(original).items():
                sharded = ShardedRetriever(index=str(self.root), retriever=name, top_k=retriever.settings["top_k"])
                sharded._index = self
                components[name] = sharded
            for name in auto_fusions(original):  # the shards' learned weights, averaged by how many titles taught them
                fusion = components[name]
                assert isinstance(fusion, ScoreFusion)
                fusion.use_estimate(combined([LegWeights.load(g / "components" / name) for g in self.generations]))
            data = original.to_dict()
            self._pipeline = Pipeline(
                components,
                connections=[(c["sender"], c["receiver"]) for c in data.get("connections", [])],
                inputs=data.get("inputs", {}),
                outputs=data.get("outputs"),
                indexing=original.indexing,
                name=original.name,
                description=original.description,
            )
        return self._pipeline

    def query(
        self,
        query: str,
        top_k: int | None = None,
        filters: Filter | str | dict[str, Any] | None = None,
        allow_unknown_fields: bool = False,
    ) -> list[Hit]:
        """The pipeline's hits for `query`, merged from every shard; `filters` (any form of `rag.core.filters`) is
        checked against the fields of all shards together, then applied inside every shard's retrievers, so the
        merged top-k is the top-k of the chunks that pass."""
        pipeline = self.pipeline
        inputs: dict[str, Any] = {"query": query}
        if top_k is not None and "top_k" in pipeline.inputs:
            inputs["top_k"] = top_k
        if filters is not None:
            flt = filters if isinstance(filters, Filter) else None
            flt = flt or (parse_filter(filters) if isinstance(filters, str) else Filter.from_dict(filters))
            inputs["filters"] = flt.checked(self.filter_fields(), allow_unknown_fields)
        return pipeline.run(inputs, outputs=["hits"])["hits"]

    def filter_fields(self) -> dict[str, str]:
        """Field name -> type over the chunks of every shard (a field's type is the first shard's that has it)."""
        retriever = next(name for name, c in self.pipeline.components.items() if isinstance(c, ShardedRetriever))
        searchers = self.searchers(retriever)
        if self.fanout == "ray":
            import ray

            each = ray.get([s.filter_fields.remote() for s in searchers])
        else:
            each = [s.filter_fields() for s in searchers]
        merged: dict[str, str] = {}
        for fields in each:
            for name, kind in fields.items():
                merged.setdefault(name, kind)
        return merged

    def searchers(self, retriever: str) -> list[Any]:
        """One searcher per shard for the named retriever (local objects or Ray actor handles)."""
        if retriever not in self._searchers:
            if self.fanout == "ray":
                from rag.distributed import import_ray

                ray = import_ray("a sharded query with fanout='ray'")
                actor = ray.remote(ShardSearcher)
                self._searchers[retriever] = [
                    actor.remote(str(g), self._stored_pipeline, retriever, self._allowed) for g in self.generations
                ]
            else:
                self._searchers[retriever] = [
                    ShardSearcher(str(g), self._stored_pipeline, retriever, self._allowed) for g in self.generations
                ]
        return self._searchers[retriever]

    def search(self, retriever: str, query: str, top_k: int, filters: Filter | None = None) -> list[Hit]:
        """The global top-k of one retriever (among the chunks that pass the checked `filters`): every shard
        searched, the lists merged.

        A retriever that searches by vector (dense) has the query encoded once, by the first
        shard's model, and every shard searches that vector; others get the query text.
        """
        searchers = self.searchers(retriever)
        if self.fanout == "ray":
            import ray

            first = searchers[0]
            vector = ray.get(first.encode.remote(query))
            lists = ray.get([s.search.remote(query, top_k, vector, filters) for s in searchers])
        else:
            vector = searchers[0].encode(query)
            with ThreadPoolExecutor(max_workers=min(8, len(searchers))) as pool:
                lists = list(pool.map(lambda s: s.search(query, top_k, vector, filters), searchers))
        return merge_top_k(lists, top_k)


class ShardSearcher:
    """One retriever over one shard's live generation (a plain object, or the body of a Ray actor)."""

    def __init__(self, generation: str, pipeline: dict[str, Any], retriever: str, allowed: Sequence[str]) -> None:
        folder = Path(generation)
        component = pipeline_from_dict(pipeline, allowed, str(folder / "manifest.json")).components[retriever]
        assert isinstance(component, Retriever)
        self.retriever = component
        self.store = ChunkStore.load(folder)
        self.retriever.load(folder / "components" / retriever, self.store)
        self.retriever.warm_up()  # here, one shard after another: models loaded in the search threads would race

    def filter_fields(self) -> dict[str, str]:
        """This shard's fields (see `ChunkStore.filter_fields`)."""
        return self.store.filter_fields()

    def encode(self, query: str) -> Any:
        """The query's vector when the retriever searches by vector (it has `search_vectors`), else None."""
        if hasattr(self.retriever, "encode_queries") and hasattr(self.retriever, "search_vectors"):
            return self.retriever.encode_queries([query])
        return None

    def search(self, query: str, top_k: int, vector: Any = None, filters: Filter | None = None) -> list[Hit]:
        """This shard's top-k hits (among the chunks that pass `filters`): by `vector` when one is given, else by
        the query text."""
        extra: dict[str, Any] = {}
        if filters is not None:
            if not self.retriever.filterable:
                raise PipelineError(
                    f"the shards' retriever {type(self.retriever).__name__} cannot apply filters exactly; filter "
                    "with BM25, SPLADE, dense, Matryoshka or ColBERT retrievers"
                )
            extra["filters"] = filters
        if vector is not None:
            hits: list[Hit] = self.retriever.search_vectors(vector, top_k, **extra)[0]  # type: ignore[attr-defined]
            return hits
        return self.retriever.run(query=query, top_k=top_k, **extra)["hits"]


class ShardedRetriever(Component):
    """A pipeline component: one retriever of a sharded index, searched on every shard and merged.

    `index` is the sharded index folder, `retriever` the retriever's name in the shards' pipeline.
    """

    outputs: ClassVar[dict[str, Any]] = {"hits": list[Hit]}
    id_space: str | None = "chunks"

    def __init__(self, index: str, retriever: str, top_k: int = 20) -> None:
        if top_k < 1:
            raise ConfigError(f"ShardedRetriever top_k must be at least 1, got {top_k}")
        self.index = index
        self.retriever = retriever
        self.top_k = top_k
        self._index: ShardedIndex | None = None

    def warm_up(self) -> None:
        """Open the shards (each shard's retriever loads its index and model)."""
        self._sharded().searchers(self.retriever)

    def run(self, query: str, top_k: int | None = None, filters: Filter | None = None) -> dict[str, list[Hit]]:
        """The global `top_k` hits for `query` (among the chunks that pass the checked `filters`)."""
        return {"hits": self._sharded().search(self.retriever, query, top_k or self.top_k, filters)}

    def _sharded(self) -> ShardedIndex:
        if self._index is None:
            self._index = ShardedIndex(self.index)
        return self._index


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not path.exists():
        if IndexFolder(root).current() is not None:
            raise IndexStoreError(f"{root} is an ordinary index, not a sharded one; query it with `rag query`")
        raise IndexNotFoundError(
            f"no sharded index at {root} ({MANIFEST} is missing); build one with `rag shard index`"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexStoreError(f"cannot read {path}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexStoreError(f"{path} is not a sharded index manifest (format {FORMAT!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IncompatibleIndexError(
            f"{path} has format version {manifest.get('format_version')}; this version of rag reads "
            f"{FORMAT_VERSION}; rebuild it with `rag shard index FOLDER --rebuild`"
        )
    if not manifest.get("shards"):
        raise IndexStoreError(f"{path} lists no shards; rebuild it with `rag shard index FOLDER --rebuild`")
    return manifest


def _live_generation(root: Path, shard: Path) -> Path:
    if not shard.is_dir():
        raise IndexNotFoundError(
            f"shard '{shard.name}' listed in {root / MANIFEST} is missing ({shard} does not exist); restore "
            "it, or rebuild the sharded index with `rag shard index FOLDER --rebuild`"
        )
    generation = IndexFolder(shard).current()
    if generation is None:
        raise IndexNotFoundError(
            f"shard '{shard.name}' listed in {root / MANIFEST} has no committed index in {shard}; restore "
            "it, or rebuild the sharded index with `rag shard index FOLDER --rebuild`"
        )
    return generation


def _in_shard(rel: str, shards: int, n: int) -> bool:
    """Whether the file at relative path `rel` belongs to shard `n` of `shards`."""
    return shard_of(rel, shards) == n
