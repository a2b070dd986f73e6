"""Bring an index in step with a folder, re-embedding only what changed.

One run: walk the folder; a file whose size and modification time match the chunk store is
unchanged (a stat, nothing more); otherwise its SHA-256 decides. The metadata a file gets from outside
itself (its sidecar file, the pipeline's path rules: `rag.ingest.metadata`) is compared by its hash too, so a
changed, added or deleted sidecar, or a changed rule, re-reads the files concerned. New and changed files are
loaded and chunked; chunks whose id (path + content) already exists are kept, not re-embedded (a file whose
metadata alone changed is committed with the same chunk ids: nothing is embedded).
Chunks of changed, renamed, deleted and now-unreadable files leave the chunk store and every
retriever. The new state is written as a new generation and swapped in atomically (see
`rag.store.index_folder`), under the index's write lock.

Deciding what changed stays here; the work on the changed files goes through an `IndexingEngine`:
`read` loads and chunks them, `embedding` gives the retrievers their vectors. `LocalEngine` does
both in this process; `rag.distributed.ray_engine.RayEngine` runs them as Ray Data jobs. `select`
keeps a subset of the folder's files (one shard of a sharded index).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from rag.core.errors import IncompatibleIndexError, InputPathError, LoaderError
from rag.core.limits import ReadLimits
from rag.core.pipeline import IndexingSettings, Pipeline
from rag.core.tracing import span
from rag.core.types import Chunk
from rag.fuse.adapt import MIN_QUERIES, WEIGHTS_FILE, LegWeights, auto_fusions, leg_weights, title_queries
from rag.fuse.score import ScoreFusion
from rag.ingest.loaders import load_document
from rag.ingest.metadata import extra_metadata, sidecars_by_document, with_fields
from rag.ingest.walk import walk_folder
from rag.retrieve.base import Retriever
from rag.store.chunk_store import ChunkStore, FileRecord
from rag.store.index_folder import FORMAT_VERSION, IndexFolder
from rag.version import __version__

__all__ = [
    "FileRead",
    "FileToRead",
    "FolderSource",
    "IndexReport",
    "IndexingEngine",
    "LocalEngine",
    "Progress",
    "Source",
    "folder_source",
    "index_folder",
    "read_file",
    "retrievers",
    "sha256_of",
    "update_index",
]

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""Called as progress(stage, done, total) while indexing."""

_BATCH = 1024


@dataclass
class IndexReport:
    """What one indexing run did."""

    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    failed: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    """Entries of the folder passed over on purpose (links outside it, special files, aliases), with the reason."""
    chunks_total: int = 0
    chunks_embedded: int = 0
    seconds: float = 0.0
    committed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": {k: getattr(self, k) for k in ("added", "changed", "removed", "unchanged", "failed")},
            "failures": list(self.failures),
            "skipped": list(self.skipped),
            "chunks": {"total": self.chunks_total, "embedded": self.chunks_embedded},
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class FileToRead:
    """A new or changed file: its path, its path relative to the folder, its new record's fields, and the user
    fields it gets from its path rules and its sidecar (see `rag.ingest.metadata`)."""

    path: Path
    rel: str
    size: int
    mtime_ns: int
    sha256: str
    metadata_sha256: str = ""
    rule_fields: Mapping[str, Any] = field(default_factory=dict)
    sidecar_fields: Mapping[str, Any] = field(default_factory=dict)


class IndexingEngine(Protocol):
    """Where the work on changed files runs; the indexer decides what to do, the engine does it."""

    def read(
        self, root: Path, files: Sequence[FileToRead], settings: IndexingSettings, progress: Progress | None
    ) -> Iterator[FileRead | str]:
        """Each file read and chunked, or the reason it could not be read, in the order of `files` (see
        `read_file`)."""
        ...

    def embedding(
        self, pipeline: Pipeline, added: Sequence[Chunk], progress: Progress | None
    ) -> AbstractContextManager[None]:
        """A block inside which the retrievers' `add(added)` finds the vectors (or computes them itself)."""
        ...


@dataclass(frozen=True)
class FileRead:
    """One file read and chunked: its chunks and the SHA-256 of exactly the bytes that were parsed."""

    chunks: list[Chunk]
    sha256: str


def read_file(
    path: Path,
    root: Path,
    chunker: Any,
    limits: ReadLimits,
    rule_fields: Mapping[str, Any] | None = None,
    sidecar_fields: Mapping[str, Any] | None = None,
) -> FileRead | str:
    """Load and chunk one file, with the fields of its path rules under its own and its sidecar's over them (see
    `rag.core.metadata`), or the reason (a LoaderError's) it could not be read."""
    try:
        document = load_document(path, root, limits)
    except LoaderError as exc:
        return exc.reason
    document = with_fields(document, rule_fields or {}, sidecar_fields or {})
    chunks: list[Chunk] = chunker.run(document=document)["chunks"]
    return FileRead(chunks, str(document.metadata["sha256"]))


class LocalEngine:
    """Reads, chunks and embeds in this process, one file after another (the default engine)."""

    def read(
        self, root: Path, files: Sequence[FileToRead], settings: IndexingSettings, progress: Progress | None
    ) -> Iterator[FileRead | str]:
        chunker = settings.chunker
        chunker.warm_up()
        limits = settings.limits()
        for done, file in enumerate(files, start=1):
            yield read_file(file.path, root, chunker, limits, file.rule_fields, file.sidecar_fields)
            if progress:
                progress("reading", done, len(files))

    def embedding(
        self, pipeline: Pipeline, added: Sequence[Chunk], progress: Progress | None
    ) -> AbstractContextManager[None]:
        return nullcontext()  # each retriever embeds in its own add()


def retrievers(pipeline: Pipeline) -> dict[str, Retriever]:
    """The components of a pipeline whose state lives in the index."""
    return {n: c for n, c in pipeline.components.items() if isinstance(c, Retriever)}


def fingerprint(pipeline: Pipeline) -> dict[str, Any]:
    """The settings that shape an index's stored state: chunker and retrievers' index settings."""
    if pipeline.indexing is None:
        raise IncompatibleIndexError(
            f"pipeline '{pipeline.name}' has no 'indexing' section (chunker), so it cannot index a folder"
        )
    return {
        "chunker": pipeline.indexing.chunker.to_dict(),
        "retrievers": {n: {"type": type(r).__name__, **r.index_settings()} for n, r in retrievers(pipeline).items()},
    }


def check_compatible(stored: dict[str, Any], pipeline: Pipeline, index: Path) -> None:
    """Refuse a pipeline whose chunker or retriever settings differ from the index's."""
    wanted = fingerprint(pipeline)
    if stored == wanted:
        return
    diff = _first_difference(stored, wanted) or "its settings"
    raise IncompatibleIndexError(
        f"index {index} was built with {diff}; index into a new index (--index OTHER) or rebuild this one (--rebuild)"
    )


def _first_difference(old: Any, new: Any, where: str = "") -> str | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            found = _first_difference(old.get(key), new.get(key), f"{where}.{key}" if where else str(key))
            if found:
                return found
        return None
    return None if old == new else f"{where}={old!r} but the pipeline has {where}={new!r}"


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Source(Protocol):
    """Where an index's documents come from (a folder, a LangChain loader): what `update_index` brings it in
    step with.

    `label` is recorded in the manifest as the index's root: an index is only updated from the same source.
    `kind` is put before a label in messages ("the folder "), `mismatch_hint` says what to do when the index
    mirrors another source, `failed_items` what failed items are ("file(s) could not be read") and
    `strict_name` how the caller spells strictness (`--strict`, `strict=True`). `sync(store, report, progress)`
    brings the chunk store in step with the source, reporting added, changed, removed and failed items, and
    returns whether a record changed without new chunks.
    """

    @property
    def label(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def mismatch_hint(self) -> str: ...
    @property
    def failed_items(self) -> str: ...
    @property
    def strict_name(self) -> str: ...

    def sync(self, store: ChunkStore, report: IndexReport, progress: Progress | None) -> bool: ...


@dataclass
class FolderSource:
    """A folder of documents (see the module docstring); `select` keeps only the files whose relative path it
    accepts (the others count as absent); `engine` reads and chunks the changed files."""

    root: Path
    settings: IndexingSettings
    engine: IndexingEngine
    select: Callable[[str], bool] | None = None
    kind: str = "the folder "
    mismatch_hint: str = "index this folder into another index (--index OTHER) or rebuild this one (--rebuild)"
    failed_items: str = "file(s) could not be read"
    strict_name: str = "--strict"

    @property
    def label(self) -> str:
        return str(self.root)

    def sync(self, store: ChunkStore, report: IndexReport, progress: Progress | None) -> bool:
        return _sync_files(self.root, store, self.settings, report, progress, self.engine, self.select)


def folder_source(
    folder: str | os.PathLike[str],
    pipeline: Pipeline,
    engine: IndexingEngine | None = None,
    select: Callable[[str], bool] | None = None,
) -> FolderSource:
    """The `FolderSource` for `folder` with `pipeline`'s indexing settings (an existing folder, else an error)."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InputPathError(f"cannot index '{folder}': it is not an existing folder; give a folder of documents")
    fingerprint(pipeline)  # checks the pipeline can index at all
    assert pipeline.indexing is not None
    return FolderSource(root.resolve(), pipeline.indexing, engine or LocalEngine(), select)


def index_folder(
    folder: str | os.PathLike[str],
    index_dir: str | os.PathLike[str],
    pipeline: Pipeline,
    *,
    strict: bool = False,
    rebuild: bool = False,
    wait: float = 0.0,
    progress: Progress | None = None,
    engine: IndexingEngine | None = None,
    select: Callable[[str], bool] | None = None,
) -> IndexReport:
    """Index `folder` into `index_dir` with `pipeline`; see the module docstring.

    `engine` runs the reading, chunking and embedding (default: `LocalEngine`); `select`, when
    given, keeps only the files whose relative path it accepts (the others count as absent).
    """
    source = folder_source(folder, pipeline, engine, select)
    return update_index(
        index_dir, pipeline, source, strict=strict, rebuild=rebuild, wait=wait, progress=progress, engine=engine
    )


def update_index(
    index_dir: str | os.PathLike[str],
    pipeline: Pipeline,
    source: Source,
    *,
    strict: bool = False,
    rebuild: bool = False,
    wait: float = 0.0,
    progress: Progress | None = None,
    engine: IndexingEngine | None = None,
) -> IndexReport:
    """Bring the index in step with `source` (a `Source`), under the index's write lock: the one update flow.

    The previous generation (none with `rebuild`) must come from a compatible pipeline and the same source
    (its `label`, recorded in the manifest as the root). `source.sync` brings the chunk store in step with it.
    Then, when anything changed, the new chunks are embedded (through `engine`), removed ones dropped from
    every retriever, and a new generation is committed atomically. With `strict`, a failed item writes nothing.
    """
    with span("rag.index", pipeline=pipeline.name, rebuild=rebuild) as current:
        report = _update_index(index_dir, pipeline, source, strict, rebuild, wait, progress, engine)
        for key, value in (*report.to_dict()["files"].items(), ("chunks_embedded", report.chunks_embedded)):
            current.set_attribute(f"rag.{key}", value)
    return report


def _update_index(
    index_dir: str | os.PathLike[str],
    pipeline: Pipeline,
    source: Source,
    strict: bool,
    rebuild: bool,
    wait: float,
    progress: Progress | None,
    engine: IndexingEngine | None,
) -> IndexReport:
    started = time.perf_counter()
    index = IndexFolder(index_dir)
    wanted = fingerprint(pipeline)
    engine = engine or LocalEngine()
    with index.lock(wait):
        previous = None if rebuild else index.current()
        store = ChunkStore()
        if previous is not None:
            manifest = index.manifest(previous)
            check_compatible(manifest["fingerprint"], pipeline, index.root)
            if manifest["root"] != source.label:
                raise IncompatibleIndexError(
                    f"index {index.root} mirrors {source.kind}{manifest['root']}, not {source.label}; "
                    f"{source.mismatch_hint}"
                )
            store = ChunkStore.load(previous)
        report = IndexReport()
        before = set(store.chunks)
        changed_record = source.sync(store, report, progress)
        # by length, so each embedding call pads little (as one call over everything would)
        added = sorted((store.chunks[i] for i in store.chunks.keys() - before), key=lambda c: (len(c.text), c.id))
        removed = before - store.chunks.keys()
        report.chunks_total = len(store)
        if strict and report.failed:
            first = report.failures[0]
            raise LoaderError(
                f"{report.failed} {source.failed_items} (first: {first['path']}: {first['reason']}); nothing was "
                f"written because of {source.strict_name}"
            )
        if previous is None or added or removed or changed_record:
            with index.new_generation() as generation, engine.embedding(pipeline, added, progress):
                update_retrievers(pipeline, previous, generation, store, added, removed, progress)
                learn_fusion_weights(pipeline, previous, generation, store, bool(added or removed))
                store.save(generation)
                write_manifest(generation, pipeline, wanted, source.label, store, report.failures)
            report.committed = True
            report.chunks_embedded = len(added) if retrievers(pipeline) else 0
    report.seconds = time.perf_counter() - started
    return report


def _sync_files(
    root: Path,
    store: ChunkStore,
    settings: IndexingSettings,
    report: IndexReport,
    progress: Progress | None,
    engine: IndexingEngine,
    select: Callable[[str], bool] | None,
) -> bool:
    """Update `store` from the folder; returns whether any file record changed (which may bring no new chunks:
    a touched file, or one whose metadata alone changed: front matter, sidecar, path rules)."""
    seen: set[str] = set()
    todo: list[FileToRead] = []
    record_changed = False
    passed_over: list[tuple[str, str]] = []
    found: dict[str, Path] = {}
    walk = walk_folder(root, settings.include, settings.exclude, settings.symlinks, passed_over, found)
    documents = {path.relative_to(root).as_posix(): path for path in walk}  # the walk first: it finds the sidecars
    sidecars = sidecars_by_document(found)
    limits = settings.limits()
    for rel, path in documents.items():
        if select is not None and not select(rel):
            continue
        seen.add(rel)
        try:
            stat = path.stat()
            extra = extra_metadata(rel, sidecars.get(rel, ()), settings.metadata, limits)
        except OSError as exc:
            _fail(report, store, rel, f"cannot read: {exc.strerror or exc}")
            continue
        except LoaderError as exc:  # a sidecar that cannot be read: never index the file without its metadata
            _fail(report, store, rel, exc.reason)
            continue
        record = store.files.get(rel)
        same_metadata = record is not None and record.metadata_sha256 == extra.key
        if record and same_metadata and record.size == stat.st_size and record.mtime_ns == stat.st_mtime_ns:
            report.unchanged += 1
            continue
        try:
            digest = sha256_of(path)
        except OSError as exc:
            _fail(report, store, rel, f"cannot read: {exc.strerror or exc}")
            continue
        if record and same_metadata and record.sha256 == digest:
            store.files[rel] = FileRecord(rel, stat.st_size, stat.st_mtime_ns, digest, record.chunk_ids, extra.key)
            report.unchanged += 1
            record_changed = True
            continue
        try:  # parsed only now: the sidecar of an unchanged file is hashed, never parsed
            sidecar_fields = extra.sidecar_fields()
        except LoaderError as exc:
            _fail(report, store, rel, exc.reason)
            continue
        todo.append(
            FileToRead(path, rel, stat.st_size, stat.st_mtime_ns, digest, extra.key, extra.rule_fields, sidecar_fields)
        )
    for document, described in sidecars.items():
        if document not in documents and (select is None or select(document)):
            reason = f"a sidecar without its file: {document} is missing or not indexed"
            passed_over += [(sidecar, reason) for sidecar, _ in described]
    report.skipped += [{"path": rel, "reason": reason} for rel, reason in passed_over]
    for rel in sorted(set(store.files) - seen):
        store.remove_file(rel)
        report.removed += 1
    if todo:
        for file, result in zip(todo, engine.read(root, todo, settings, progress), strict=True):
            existed = file.rel in store.files
            if isinstance(result, str):
                _fail(report, store, file.rel, result)
                continue
            # the hash of the bytes that were parsed: a file rewritten between hashing and reading is recorded
            # as what was read, so the next run sees any difference from it
            chunk_ids = tuple(c.id for c in result.chunks)
            record = FileRecord(file.rel, file.size, file.mtime_ns, result.sha256, chunk_ids, file.metadata_sha256)
            store.put_file(record, result.chunks)
            report.changed += existed
            report.added += not existed
            # its chunks may keep their ids with new metadata (front matter, sidecar, rules): commit, embed nothing
            record_changed = True
    return record_changed


def _fail(report: IndexReport, store: ChunkStore, rel: str, reason: str) -> None:
    logger.info("skipped %s: %s", rel, reason)
    report.failed += 1
    report.failures.append({"path": rel, "reason": reason})
    store.remove_file(rel)  # the index never serves what the file no longer says


def update_retrievers(
    pipeline: Pipeline,
    previous: Path | None,
    generation: Path,
    store: ChunkStore,
    added: list[Chunk],
    removed: set[str],
    progress: Progress | None,
) -> None:
    """Bring every retriever from the `previous` generation's state to `generation`'s."""
    for name, retriever in retrievers(pipeline).items():
        old = previous / "components" / name if previous else None
        new = generation / "components" / name
        if old is not None and not added and not removed:
            shutil.copytree(old, new, copy_function=os.link)  # unchanged: share the files
            continue
        update_retriever(name, retriever, old, new, store, added, removed, progress)


def learn_fusion_weights(
    pipeline: Pipeline, previous: Path | None, generation: Path, store: ChunkStore, changed: bool
) -> None:
    """For every score fusion with `weights: auto`, the leg weights learned from the documents' titles
    (`rag.fuse.adapt`), saved in `generation` (its retrievers already saved there); kept from `previous` when no
    chunk was added or removed."""
    for name, senders in auto_fusions(pipeline).items():
        old, new = (previous / "components" / name if previous else None), generation / "components" / name
        if old is not None and not changed and (old / WEIGHTS_FILE).is_file():
            shutil.copytree(old, new, copy_function=os.link)
            continue
        # changed: every retriever holds this generation's state already; else some were only copied, so load them
        folders = {leg: None if changed else generation / "components" / leg for leg in senders}
        estimate = estimate_fusion_weights(pipeline, name, folders, store)
        if estimate is not None:
            estimate.save(new)


def estimate_fusion_weights(
    pipeline: Pipeline, fusion: str, legs: Mapping[str, Path | None], store: ChunkStore
) -> LegWeights | None:
    """The weights of `fusion`'s legs learned from `store`'s titles (`rag.fuse.adapt`), each leg first loaded from
    its folder in `legs` (None: as it is); None when a leg is not one of the index's retrievers or there are too
    few titles to learn from."""
    own = retrievers(pipeline)
    queries = title_queries(store.chunks.values())
    if any(leg not in own for leg in legs) or len(queries) < MIN_QUERIES:
        return None
    texts = [title for title, _ in queries]
    answers = []
    for leg, folder in legs.items():
        if folder is not None:
            own[leg].load(folder, store)
        own[leg].warm_up()
        answers.append(own[leg].run_batch(texts))
    fusion_component = pipeline.components[fusion]
    assert isinstance(fusion_component, ScoreFusion)
    weights = leg_weights(answers, [path for _, path in queries], fusion_component.method)
    logger.info("fusion %s: leg weights %s learned from %d titles", fusion, weights, len(queries))
    return LegWeights(tuple(legs), weights, len(queries), fusion_component.method)


def update_retriever(
    name: str,
    retriever: Retriever,
    old: Path | None,
    new: Path,
    store: ChunkStore,
    added: list[Chunk],
    removed: set[str],
    progress: Progress | None,
) -> None:
    """Load one retriever's state from `old` (None: empty), apply the changes, save it into `new`."""
    retriever.load(old, store)
    if removed:
        retriever.remove(removed)
    if added:
        retriever.warm_up()
        for start in range(0, len(added), _BATCH):
            retriever.add(added[start : start + _BATCH])
            if progress:
                progress(f"embedding ({name})", min(start + _BATCH, len(added)), len(added))
    new.mkdir(parents=True)
    retriever.save(new)


def write_manifest(
    generation: Path,
    pipeline: Pipeline,
    wanted: dict[str, Any],
    root: Path | str,
    store: ChunkStore,
    failures: Sequence[dict[str, str]] = (),
) -> None:
    """The generation's manifest: format, settings fingerprint, source, pipeline, counts, and the items that could
    not be read (path and reason, what `rag check` tells from new files)."""
    manifest = {
        "format_version": FORMAT_VERSION,
        "rag_version": __version__,
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        "root": str(root),
        "fingerprint": wanted,
        "pipeline": pipeline.to_dict(),
        "counts": {"files": len(store.files), "chunks": len(store)},
        "failures": list(failures),
    }
    (generation / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
