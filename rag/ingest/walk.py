"""Find the files to index under a folder.

Patterns are globs matched against a file's path relative to the root, in POSIX form:

- a pattern without `/` matches the file *name* at any depth: `*.md` matches `a/b/c.md`;
- a pattern with `/` matches the whole relative path: `docs/*.md` matches `docs/x.md` only,
  and `**` spans any number of folders (none included): `docs/**/*.md` matches `docs/x.md`
  and `docs/a/b/x.md`; `*` and `?` never cross a `/`; `[abc]` and `[!abc]` are classes.

A file is yielded when it matches an `include` pattern and no `exclude` pattern; a folder that
matches an `exclude` pattern (`build`, `build/**`) is not entered. Hidden files and folders
(name starting with `.`, so `.git`, `.hg`, `.svn`, `.venv`), `__pycache__` and `node_modules`
are skipped, as are binary files (see `is_binary`): silently for images, archives and the like, with a reason in
`skipped` when the file's name says text (an extension with a loader, or none).

Symbolic links follow the `symlinks` policy (`SYMLINK_POLICIES`): "inside" (the default) follows a link only
when its target resolves inside the walked folder, so a cloned repository or an unpacked archive cannot make
the index read `/etc/passwd`; "never" follows none; "follow" follows every link. Every real folder and file is
visited once (by device and inode), the first time it is met in walk order, so link loops terminate and aliases
do not duplicate files. Each entry passed over for one of these reasons (a link outside the folder or not
followed, a broken link, a special file such as a FIFO or socket, a second path to a file already met, a loop)
is added to `skipped` as (relative path, reason) when a list is given.

Sidecar files (`report.pdf.meta.json`, see `rag.ingest.metadata`) are never yielded: they are collected into
`sidecars` (relative path -> path) when a mapping is given, whatever `include` and `exclude` say (a sidecar goes
with its file), under the same symbolic link policy and in the same folders.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from rag.core.errors import InputPathError
from rag.core.globs import match_pattern
from rag.ingest.loaders import BINARY_DOCUMENT_SUFFIXES, LOADERS, SNIFF_BYTES, looks_binary
from rag.ingest.metadata import is_sidecar

__all__ = ["SKIPPED_FOLDERS", "SYMLINK_POLICIES", "is_binary", "match_pattern", "walk_folder"]

logger = logging.getLogger(__name__)

SKIPPED_FOLDERS = frozenset({"__pycache__", "node_modules"})
"""Folder names never entered (besides hidden ones)."""
SYMLINK_POLICIES = ("inside", "never", "follow")
Skipped = list[tuple[str, str]]


def walk_folder(
    root: Path,
    include: Sequence[str] = ("**/*",),
    exclude: Sequence[str] = (),
    symlinks: str = "inside",
    skipped: Skipped | None = None,
    sidecars: dict[str, Path] | None = None,
) -> Iterator[Path]:
    """Yield the absolute paths of the files to index under `root` (see the module docstring).

    The order is deterministic: depth first, each folder's entries sorted by name. Raises
    InputPathError when `root` does not exist or is not a folder. `sidecars` is complete once the walk has
    ended (a file is yielded before its sidecar is met): finish the walk before looking a sidecar up.
    """
    if symlinks not in SYMLINK_POLICIES:
        raise InputPathError(f"symlinks must be one of {', '.join(SYMLINK_POLICIES)}, got {symlinks!r}")
    root = Path(root).expanduser()
    if not root.exists():
        raise InputPathError(f"folder not found: {root}; check the path, or create the folder first")
    if not root.is_dir():
        raise InputPathError(f"not a folder: {root}; pass the folder that holds your documents")
    root = root.absolute()
    seen: set[tuple[int, int]] = set()
    _mark(seen, root.stat())
    walk = _Walk(
        root.resolve(),
        tuple(include),
        tuple(exclude),
        symlinks,
        skipped if skipped is not None else [],
        sidecars if sidecars is not None else {},
    )
    yield from walk.folder(root, "", seen)


def is_binary(path: Path) -> bool:
    """True when `path` is not a PDF/DOCX and its first 8 KiB hold a NUL byte (unreadable: False)."""
    if Path(path).suffix.lower() in BINARY_DOCUMENT_SUFFIXES:
        return False
    try:
        with open(path, "rb") as handle:
            return looks_binary(handle.read(SNIFF_BYTES))
    except OSError:
        return False  # let the loader report why it cannot be read


class _Walk:
    """One walk's settings and report (see `walk_folder`)."""

    def __init__(
        self,
        real_root: Path,
        include: tuple[str, ...],
        exclude: tuple[str, ...],
        symlinks: str,
        skipped: Skipped,
        sidecars: dict[str, Path],
    ) -> None:
        self.real_root = real_root
        self.include = include
        self.exclude = exclude
        self.symlinks = symlinks
        self.skipped = skipped
        self.sidecars = sidecars

    def folder(self, folder: Path, prefix: str, seen: set[tuple[int, int]]) -> Iterator[Path]:
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except OSError as exc:
            logger.warning("skipping folder %s: %s", folder, exc.strerror or exc)
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            relative = prefix + entry.name
            if entry.is_symlink() and not self._follows(entry, relative):
                continue
            try:
                is_dir = entry.is_dir()
                is_file = not is_dir and entry.is_file()
                stat = entry.stat()
            except FileNotFoundError:
                self.skipped.append((relative, "broken link: its target does not exist"))
                continue
            except OSError as exc:
                self.skipped.append((relative, f"cannot read: {exc.strerror or exc}"))
                continue
            if is_dir:
                if entry.name in SKIPPED_FOLDERS or _prunes(relative, self.exclude):
                    continue
                if _mark(seen, stat):
                    yield from self.folder(Path(entry.path), relative + "/", seen)
                else:
                    self.skipped.append((relative, "a folder already indexed under another path (a link loop)"))
            elif not is_file:
                self.skipped.append((relative, "not a regular file (a FIFO, socket or device)"))
            elif is_sidecar(entry.name):
                self.sidecars[relative] = Path(entry.path)
            elif _matches_any(relative, self.include) and not _matches_any(relative, self.exclude):
                if is_binary(Path(entry.path)):  # an image or archive is passed over; a "text" file is reported
                    if Path(entry.name).suffix.lower() in LOADERS or not Path(entry.name).suffix:
                        self.skipped.append((relative, "binary content (NUL bytes) in a file named as text"))
                    continue
                if _mark(seen, stat):
                    yield Path(entry.path)
                else:
                    self.skipped.append((relative, "a second path to a file already indexed"))

    def _follows(self, entry: os.DirEntry[str], relative: str) -> bool:
        """Whether the link `entry` is followed under the policy; records the reason when it is not."""
        if self.symlinks == "follow":
            return True
        if self.symlinks == "never":
            self.skipped.append((relative, "a symbolic link (symlinks: never)"))
            return False
        try:
            target = Path(entry.path).resolve(strict=True)
        except FileNotFoundError:
            self.skipped.append((relative, "broken link: its target does not exist"))
            return False
        except (OSError, RuntimeError):  # a loop of links
            self.skipped.append((relative, "a link that loops"))
            return False
        if not target.is_relative_to(self.real_root):
            self.skipped.append((relative, "a link to outside the indexed folder (symlinks: inside)"))
            return False
        return True


def _mark(seen: set[tuple[int, int]], stat: os.stat_result) -> bool:
    """Record a real file or folder; False when it was already visited."""
    key = (stat.st_dev, stat.st_ino)
    if key in seen:
        return False
    seen.add(key)
    return True


def _matches_any(relative: str, patterns: tuple[str, ...]) -> bool:
    return any(match_pattern(relative, p) for p in patterns)


def _prunes(relative: str, patterns: tuple[str, ...]) -> bool:
    """True when an exclude pattern names this folder itself (`build`) or all under it (`build/**`)."""
    return any(match_pattern(relative, p) or (p.endswith("/**") and match_pattern(relative, p[:-3])) for p in patterns)
