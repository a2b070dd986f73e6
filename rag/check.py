"""Verify an index against itself and against the folder it mirrors, and repair what is wrong (`rag check`).

The live generation is read as a query would read it, and each part is compared with the others:

    pointer     CURRENT names a finished generation; no unfinished `tmp-*` generation or `CURRENT.tmp` is left
    manifest    readable, of this format, with the counts of the chunk store
    chunks      the chunk store reads; every file record's chunks exist and every chunk belongs to a file record
    retrievers  each retriever's state reads, and holds exactly the chunk store's ids, one row each
    folder      the files the pipeline would index now against the file records: new, changed (by content or by
                the metadata from a sidecar or path rule, as an index run decides), gone; files that could not be
                read at the last run are listed, not counted

A problem in the first four is damage: only a rebuild from the folder repairs it. Differences with the folder are
drift: an ordinary incremental run repairs them. `check_index(..., repair=True)` runs whichever is needed, then
checks again.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.core.errors import IndexNotFoundError, LoaderError, RagError
from rag.core.pipeline import Pipeline
from rag.core.serialization import pipeline_from_dict
from rag.indexer import IndexReport, fingerprint, folder_source, retrievers, sha256_of, update_index
from rag.ingest.metadata import extra_metadata, sidecars_by_document
from rag.ingest.walk import walk_folder
from rag.store.chunk_store import ChunkStore
from rag.store.index_folder import IndexFolder

__all__ = ["CheckReport", "Problem", "check_index"]

_SHOWN = 20
"""How many paths of each kind of drift a report lists (the counts are complete)."""


@dataclass(frozen=True)
class Problem:
    """One thing found wrong: which check (`pointer`, `manifest`, `chunks`, `retriever NAME`, `folder`), what,
    and the repair (`rebuild` for damage, `reindex` for drift with the folder)."""

    check: str
    detail: str
    repair: str

    def to_dict(self) -> dict[str, str]:
        return {"check": self.check, "detail": self.detail, "repair": self.repair}


@dataclass
class CheckReport:
    """What `check_index` found (and, with `repair`, did)."""

    index: str
    generation: str | None = None
    root: str | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    drift: dict[str, list[str]] = field(default_factory=lambda: {"new": [], "changed": [], "gone": []})
    unreadable: list[dict[str, str]] = field(default_factory=list)
    """Files the last run could not read, with the reason (a repair does not change them: fix the files)."""
    problems: list[Problem] = field(default_factory=list)
    repaired: IndexReport | None = None
    before: list[Problem] = field(default_factory=list)
    """With a repair: the problems found before it (`problems` are those left after it)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "ok": self.ok,
            "generation": self.generation,
            "root": self.root,
            "counts": self.counts,
            "drift": {kind: {"count": len(paths), "paths": paths[:_SHOWN]} for kind, paths in self.drift.items()},
            "unreadable": self.unreadable,
            "problems": [p.to_dict() for p in self.problems],
            "repaired": None if self.repaired is None else self.repaired.to_dict(),
            "found_before_repair": [p.to_dict() for p in self.before],
        }


def check_index(
    index_dir: str | os.PathLike[str], *, allowed: Collection[str] = (), repair: bool = False, wait: float = 0.0
) -> CheckReport:
    """Check the index in `index_dir` with the pipeline recorded in it (`allowed`: the extra component classes it
    may construct, as for `load_pipeline`); see the module docstring. With `repair`, rebuild or re-index from the
    folder it mirrors as needed, then check again."""
    folder = IndexFolder(index_dir)
    report, pipeline = _check(folder, allowed)
    if not repair or report.ok:
        return report
    if pipeline is None or report.root is None or not Path(report.root).is_dir():
        report.problems.append(
            Problem(
                "repair",
                "cannot repair: the pipeline or the folder the index mirrors is unknown or gone; "
                f"rebuild it with `rag index FOLDER --index {folder.root.name} --rebuild`",
                "rebuild",
            )
        )
        return report
    rebuild = any(p.repair == "rebuild" for p in report.problems)
    repaired = update_index(folder.root, pipeline, folder_source(report.root, pipeline), rebuild=rebuild, wait=wait)
    after, _ = _check(folder, allowed)
    after.repaired, after.before = repaired, report.problems
    return after


def _check(folder: IndexFolder, allowed: Collection[str]) -> tuple[CheckReport, Pipeline | None]:
    report = CheckReport(index=str(folder.root))
    damaged = report.problems.append
    leftovers = sorted(p.name for p in folder.root.glob("tmp-*")) + (
        ["CURRENT.tmp"] if (folder.root / "CURRENT.tmp").exists() else []
    )
    if leftovers:
        damaged(Problem("pointer", f"left by an interrupted run: {', '.join(leftovers)}", "reindex"))
    try:
        generation = folder.require_current()
        manifest = folder.manifest(generation)
    except IndexNotFoundError:  # no index at all is an error, not a problem to repair
        raise
    except RagError as exc:
        damaged(Problem("pointer" if "CURRENT" in str(exc) else "manifest", str(exc), "rebuild"))
        return report, _last_readable(folder, report, allowed)
    report.generation, report.root = generation.name, manifest.get("root")
    report.unreadable = list(manifest.get("failures", []))
    try:
        pipeline = pipeline_from_dict(manifest["pipeline"], allowed, f"{generation}/manifest.json")
    except (RagError, KeyError) as exc:
        damaged(Problem("manifest", f"the pipeline recorded in the manifest cannot be built: {exc}", "rebuild"))
        return report, None
    try:
        store = ChunkStore.load(generation)
    except RagError as exc:
        damaged(Problem("chunks", str(exc), "rebuild"))
        return report, pipeline
    report.counts = {"files": len(store.files), "chunks": len(store), "retrievers": {}}
    if manifest.get("counts") != {"files": len(store.files), "chunks": len(store)}:
        damaged(Problem("manifest", f"counts {manifest.get('counts')} differ from the chunk store's", "rebuild"))
    _check_chunks(store, damaged)
    for name, retriever in retrievers(pipeline).items():
        try:
            retriever.load(generation / "components" / name, store)
            ids = retriever.indexed_ids()
        except (RagError, OSError, ValueError) as exc:  # a retriever's own files may fail in their own way
            damaged(Problem(f"retriever {name}", str(exc), "rebuild"))
            continue
        report.counts["retrievers"][name] = len(ids)
        missing, extra = store.chunks.keys() - set(ids), set(ids) - store.chunks.keys()
        if missing or extra or len(ids) != len(set(ids)):
            detail = f"{len(missing)} chunk(s) missing, {len(extra)} unknown, {len(ids) - len(set(ids))} repeated"
            damaged(Problem(f"retriever {name}", detail, "rebuild"))
    _check_folder(report, pipeline, store, damaged)
    return report, pipeline


def _last_readable(folder: IndexFolder, report: CheckReport, allowed: Collection[str]) -> Pipeline | None:
    """When the live generation cannot be read: the pipeline and folder of the newest generation whose manifest
    can (so a rebuild knows what to build, and from where), or None."""
    try:
        manifest = folder.last_manifest()
        if manifest is None:
            return None
        pipeline = pipeline_from_dict(manifest["pipeline"], allowed, f"{folder.root}/manifest.json")
    except (RagError, KeyError):
        return None
    report.root = manifest.get("root")
    return pipeline


def _check_chunks(store: ChunkStore, damaged: Any) -> None:
    recorded = [chunk_id for record in store.files.values() for chunk_id in record.chunk_ids]
    lost = set(recorded) - store.chunks.keys()
    orphans = store.chunks.keys() - set(recorded)
    strays = [c.id for c in store.chunks.values() if c.path not in store.files]
    if lost or orphans or strays:
        detail = f"{len(lost)} recorded chunk(s) missing, {len(orphans | set(strays))} chunk(s) of no file record"
        damaged(Problem("chunks", detail, "rebuild"))


def _check_folder(report: CheckReport, pipeline: Pipeline, store: ChunkStore, damaged: Any) -> None:
    """Drift between the file records and the folder, decided as an index run decides (size and modification
    time, then the content's hash; the hash of the metadata from its sidecar and path rules)."""
    root = Path(report.root or "")
    if not report.root or not root.is_dir():
        damaged(Problem("folder", f"the folder the index mirrors ({report.root}) is gone; nothing compared", "none"))
        return
    fingerprint(pipeline)
    settings = pipeline.indexing
    assert settings is not None
    unreadable = {failure["path"] for failure in report.unreadable}
    seen = set()
    found: dict[str, Path] = {}
    documents = list(walk_folder(root, settings.include, settings.exclude, settings.symlinks, sidecars=found))
    sidecars = sidecars_by_document(found)
    limits = settings.limits()
    for path in documents:
        rel = path.relative_to(root).as_posix()
        seen.add(rel)
        record = store.files.get(rel)
        if record is None:
            if rel not in unreadable:
                report.drift["new"].append(rel)
            continue
        stat = path.stat()
        try:
            metadata = extra_metadata(rel, sidecars.get(rel, ()), settings.metadata, limits).key
        except LoaderError:  # a sidecar the next run cannot read: that run reports it
            metadata = None
        if metadata != record.metadata_sha256 or (
            (stat.st_size, stat.st_mtime_ns) != (record.size, record.mtime_ns) and sha256_of(path) != record.sha256
        ):
            report.drift["changed"].append(rel)
    report.drift["gone"] = sorted(set(store.files) - seen)
    counts = {kind: len(paths) for kind, paths in report.drift.items()}
    if any(counts.values()):
        detail = f"{counts['new']} new file(s), {counts['changed']} changed, {counts['gone']} gone since the last run"
        damaged(Problem("folder", detail, "reindex"))
