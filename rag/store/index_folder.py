"""An index on disk: generations of immutable folders and an atomically replaced pointer.

    indexes/NAME/
        CURRENT          name of the live generation ("gen-000003"), replaced with os.replace
        gen-000003/      manifest.json, chunks.parquet, files.parquet, components/<name>/...
        gen-000002/      the previous generation, kept for readers that opened it just before a swap
        tmp-000004-.../  a generation being written (or left by a crash; removed by the next writer)
        .lock            held by the process that updates the index

An update writes a complete new generation aside, fsyncs it, renames it into place and only
then points CURRENT at it, so a crash at any moment leaves the previous generation live.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from rag.core.errors import IncompatibleIndexError, IndexLockedError, IndexNotFoundError, IndexStoreError

__all__ = ["FORMAT_VERSION", "IndexFolder"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_GEN = re.compile(r"^gen-(\d{6})$")


class IndexFolder:
    """The folder of one index; see the module docstring for the layout."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def current(self) -> Path | None:
        """The live generation folder, or None when no index has been committed yet."""
        pointer = self.root / "CURRENT"
        try:
            name = pointer.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        if not _GEN.match(name) or not (self.root / name).is_dir():
            raise IndexStoreError(
                f"index {self.root} is damaged: CURRENT names '{name}', which is missing; "
                "rebuild it with `rag index PATH --rebuild`"
            )
        return self.root / name

    def last_manifest(self) -> dict[str, Any] | None:
        """The live generation's manifest; when the pointer is damaged, that of the newest generation whose manifest
        reads (what a rebuild should build); None when there is no index."""
        try:
            current = self.current()
        except IndexStoreError:
            current = None
            for generation in sorted(self.root.glob("gen-*"), reverse=True):
                try:
                    return self.manifest(generation)
                except IndexStoreError:
                    continue
        return None if current is None else self.manifest(current)

    def require_current(self) -> Path:
        current = self.current()
        if current is None:
            raise IndexNotFoundError(
                f"no index at {self.root}; build one with `rag index FOLDER --index {self.root.name}`"
            )
        return current

    def manifest(self, generation: Path | None = None) -> dict[str, Any]:
        """The manifest of a generation (the live one by default), checked for its format version."""
        folder = generation or self.require_current()
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise IndexStoreError(f"index {self.root}: cannot read {folder.name}/manifest.json ({exc})") from None
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise IncompatibleIndexError(
                f"index {self.root} has format version {version}; this version of rag reads format "
                f"{FORMAT_VERSION}; rebuild it with `rag index FOLDER --index {self.root.name} --rebuild`"
            )
        return manifest

    @contextmanager
    def lock(self, wait: float = 0.0) -> Iterator[None]:
        """Hold the write lock; another holder makes this wait up to `wait` s, then fail. Taking it clears what a
        killed writer left (unfinished `tmp-*` generations, `CURRENT.tmp`), even when nothing is written after."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.root / ".lock")
        try:
            lock.acquire(timeout=wait)
        except Timeout:
            raise IndexLockedError(
                f"index {self.root} is being updated by another process; wait for it to finish "
                "(or pass --wait SECONDS) and run again"
            ) from None
        try:
            self._remove_leftovers()
            yield
        finally:
            lock.release()

    @contextmanager
    def new_generation(self) -> Iterator[Path]:
        """A fresh empty folder to write a generation into; committed if the block succeeds.

        Call only while holding `lock()`.
        """
        self._remove_leftovers()
        # after the newest generation there is (not the live one: a damaged pointer must not stop a rebuild)
        numbers = [int(found.group(1)) for entry in self.root.iterdir() if (found := _GEN.match(entry.name))]
        number = max(numbers, default=0) + 1
        tmp = Path(tempfile.mkdtemp(prefix=f"tmp-{number:06d}-", dir=self.root))
        try:
            yield tmp
            _fsync_tree(tmp)
            final = self.root / f"gen-{number:06d}"
            os.rename(tmp, final)
            pointer = self.root / "CURRENT.tmp"
            with open(pointer, "w", encoding="utf-8") as fh:
                fh.write(final.name)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(pointer, self.root / "CURRENT")
            _fsync_dir(self.root)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        """Delete unfinished generations, a pointer left half-written, and all generations but the live and
        previous ones (all unfinished ones only, when the live one cannot be read)."""
        (self.root / "CURRENT.tmp").unlink(missing_ok=True)
        try:
            current = self.current()
        except IndexStoreError:  # a damaged pointer: keep every finished generation for `rag index --rebuild`
            current = None
            keep_all = True
        else:
            keep_all = False
        keep = {current.name} if current else set()
        if current:
            keep.add(f"gen-{int(current.name[4:]) - 1:06d}")
        for entry in self.root.iterdir():
            stale_gen = not keep_all and _GEN.match(entry.name) and entry.name not in keep
            if entry.is_dir() and (stale_gen or entry.name.startswith("tmp-")):
                logger.debug("removing %s", entry)
                shutil.rmtree(entry, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for folder, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(folder))
