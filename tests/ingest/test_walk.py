"""Tests of the folder walker: patterns, skipped files and folders, symlinks, bad roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rag.core.errors import InputPathError
from rag.ingest.walk import is_binary, match_pattern, walk_folder


def _touch(root: Path, *names: str, content: bytes = b"text\n") -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def _walk(root: Path, **kwargs: object) -> list[str]:
    return [p.relative_to(root).as_posix() for p in walk_folder(root, **kwargs)]


def test_yields_absolute_paths_in_sorted_order(tmp_path: Path) -> None:
    _touch(tmp_path, "b.txt", "a/z.md", "a/b/c.txt", "A.txt")
    paths = list(walk_folder(tmp_path))
    assert all(p.is_absolute() for p in paths)
    assert _walk(tmp_path) == ["A.txt", "a/b/c.txt", "a/z.md", "b.txt"]


@pytest.mark.parametrize(
    ("relative", "pattern", "expected"),
    [
        ("a/b/c.md", "*.md", True),
        ("c.md", "*.md", True),
        ("c.md.txt", "*.md", False),
        ("docs/x.md", "docs/*.md", True),
        ("docs/a/x.md", "docs/*.md", False),
        ("docs/x.md", "docs/**/*.md", True),
        ("docs/a/b/x.md", "docs/**/*.md", True),
        ("other/docs/x.md", "docs/**/*.md", False),
        ("a/b/c", "**/*", True),
        ("a/file1.txt", "file?.txt", True),
        ("a/file10.txt", "file?.txt", False),
        ("x/b.txt", "[ab].txt", True),
        ("c.txt", "[!ab].txt", True),
        ("a.txt", "[!ab].txt", False),
    ],
)
def test_match_pattern(relative: str, pattern: str, expected: bool) -> None:
    assert match_pattern(relative, pattern) is expected


def test_include_and_exclude(tmp_path: Path) -> None:
    _touch(tmp_path, "a.md", "notes/b.md", "notes/c.txt", "drafts/d.md", "build/out/e.md")
    assert _walk(tmp_path, include=["*.md"]) == ["a.md", "build/out/e.md", "drafts/d.md", "notes/b.md"]
    assert _walk(tmp_path, include=["*.md"], exclude=["drafts/**", "build"]) == ["a.md", "notes/b.md"]
    assert _walk(tmp_path, include=["notes/*"]) == ["notes/b.md", "notes/c.txt"]
    assert _walk(tmp_path, exclude=["*.md"]) == ["notes/c.txt"]


def test_skips_hidden_vcs_and_tool_folders(tmp_path: Path) -> None:
    _touch(
        tmp_path,
        "keep.txt",
        ".hidden.txt",
        ".secret/inside.txt",
        ".git/config",
        ".git/objects/ab",
        ".hg/store",
        ".svn/entries",
        "__pycache__/m.txt",
        "node_modules/pkg/index.js",
        "sub/.env",
        "sub/ok.txt",
    )
    assert _walk(tmp_path) == ["keep.txt", "sub/ok.txt"]


def test_skips_binary_files_but_keeps_pdf_and_docx(tmp_path: Path) -> None:
    _touch(tmp_path, "blob.bin", "image.png", "scan.pdf", "letter.docx", content=b"\x89PNG\0\0\0data")
    _touch(tmp_path, "text.txt")
    (tmp_path / "utf16.txt").write_text("hello", encoding="utf-16")
    assert _walk(tmp_path) == ["letter.docx", "scan.pdf", "text.txt", "utf16.txt"]
    assert is_binary(tmp_path / "blob.bin")
    assert not is_binary(tmp_path / "scan.pdf")
    assert not is_binary(tmp_path / "utf16.txt")


def test_nul_after_first_8_kib_is_not_binary(tmp_path: Path) -> None:
    _touch(tmp_path, "late.log", content=b"x" * 8192 + b"\0")
    assert not is_binary(tmp_path / "late.log")


def test_symlink_loop_terminates_and_yields_each_file_once(tmp_path: Path) -> None:
    _touch(tmp_path, "top.txt", "sub/inner.txt")
    (tmp_path / "sub" / "loop").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "sub" / "self").symlink_to(tmp_path / "sub", target_is_directory=True)
    assert _walk(tmp_path) == ["sub/inner.txt", "top.txt"]


def _linked_root(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    _touch(outside, "far.txt", "other/deep.txt")
    root = tmp_path / "root"
    _touch(root, "near.txt", "inner/deep.txt")
    (root / "linked").symlink_to(outside / "other", target_is_directory=True)
    (root / "far-link.txt").symlink_to(outside / "far.txt")
    (root / "passwd.txt").symlink_to("/etc/passwd")
    (root / "zz-alias.txt").symlink_to(root / "near.txt")
    (root / "inner-link").symlink_to(root / "inner", target_is_directory=True)
    (root / "broken.txt").symlink_to(tmp_path / "missing.txt")
    return root


def test_links_are_followed_only_inside_the_folder_by_default(tmp_path: Path) -> None:
    root = _linked_root(tmp_path)
    skipped: list[tuple[str, str]] = []
    assert _walk(root, skipped=skipped) == ["inner/deep.txt", "near.txt"]
    reasons = dict(skipped)
    assert set(reasons) == {"broken.txt", "far-link.txt", "inner-link", "linked", "passwd.txt", "zz-alias.txt"}
    assert reasons["passwd.txt"] == reasons["linked"] == "a link to outside the indexed folder (symlinks: inside)"
    assert reasons["broken.txt"].startswith("broken link")
    assert reasons["zz-alias.txt"] == "a second path to a file already indexed"
    assert "already indexed under another path" in reasons["inner-link"]


def test_the_symlink_policy_never_and_follow(tmp_path: Path) -> None:
    root = _linked_root(tmp_path)
    skipped: list[tuple[str, str]] = []
    assert _walk(root, symlinks="never", skipped=skipped) == ["inner/deep.txt", "near.txt"]
    assert dict(skipped)["zz-alias.txt"] == "a symbolic link (symlinks: never)"
    followed = _walk(root, symlinks="follow")
    assert followed == ["far-link.txt", "inner/deep.txt", "linked/deep.txt", "near.txt", "passwd.txt"]
    with pytest.raises(InputPathError, match="symlinks must be one of"):
        _walk(root, symlinks="sometimes")


def test_special_files_are_reported_not_read(tmp_path: Path) -> None:
    _touch(tmp_path, "ok.txt")
    os.mkfifo(tmp_path / "pipe.txt")
    (tmp_path / "pipe-link.txt").symlink_to(tmp_path / "pipe.txt")
    skipped: list[tuple[str, str]] = []
    assert _walk(tmp_path, skipped=skipped) == ["ok.txt"]
    assert dict(skipped) == {
        "pipe-link.txt": "not a regular file (a FIFO, socket or device)",
        "pipe.txt": "not a regular file (a FIFO, socket or device)",
    }


def test_missing_root_raises_input_path_error(tmp_path: Path) -> None:
    with pytest.raises(InputPathError, match=r"folder not found.*nope"):
        list(walk_folder(tmp_path / "nope"))


def test_file_root_raises_input_path_error(tmp_path: Path) -> None:
    _touch(tmp_path, "file.txt")
    with pytest.raises(InputPathError, match="not a folder"):
        list(walk_folder(tmp_path / "file.txt"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any folder")
def test_unreadable_subfolder_is_skipped(tmp_path: Path) -> None:
    _touch(tmp_path, "ok.txt", "locked/secret.txt")
    (tmp_path / "locked").chmod(0)
    try:
        assert _walk(tmp_path) == ["ok.txt"]
    finally:
        (tmp_path / "locked").chmod(0o755)
