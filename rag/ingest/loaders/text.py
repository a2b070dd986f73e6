"""Loaders for plain text, Markdown, reStructuredText and source code: the text as it is."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import yaml

from rag.core.limits import ReadLimits
from rag.core.metadata import fields_of
from rag.ingest.loaders._common import decode_text

__all__ = ["CODE_LANGUAGES", "load_code", "load_markdown", "load_rst", "load_text"]

CODE_LANGUAGES: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".java": "java",
    ".go": "go",
    ".rs": "rust",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".cs": "csharp",
    ".rb": "ruby",
    ".php": "php",
    ".sh": "shell",
    ".bash": "shell",
    ".zsh": "shell",
    ".ps1": "powershell",
    ".sql": "sql",
    ".toml": "toml",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".ini": "ini",
    ".cfg": "ini",
    ".css": "css",
    ".scss": "scss",
    ".scala": "scala",
    ".kt": "kotlin",
    ".kts": "kotlin",
    ".swift": "swift",
    ".r": "r",
    ".lua": "lua",
    ".pl": "perl",
    ".m": "objective-c",
    ".dart": "dart",
    ".ex": "elixir",
    ".exs": "elixir",
    ".erl": "erlang",
    ".hs": "haskell",
    ".jl": "julia",
    ".vue": "vue",
    ".xml": "xml",
    ".proto": "protobuf",
    ".tf": "terraform",
}
"""Source-code extensions and the `language` recorded in their metadata."""

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)
_MD_TITLE = re.compile(r"^#[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_MD_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_RST_ADORNMENT = re.compile(r"""^([=\-`:'"~^_*+#<>.])\1+\s*$""")


def load_text(data: bytes, path: Path, limits: ReadLimits) -> tuple[str, dict[str, Any]]:
    """A plain-text file."""
    return decode_text(data), {"format": "text"}


def load_markdown(data: bytes, path: Path, limits: ReadLimits) -> tuple[str, dict[str, Any]]:
    """A Markdown file; the title is its front matter's `title`, else its first `# ` heading. YAML front matter
    (between `---` lines at the very top) is taken out of the text and its entries become `fields` (metadata
    every chunk carries, for filters): strings, numbers, true/false, dates (as ISO strings) and lists of them (see
    `rag.core.metadata`, which also says how a sidecar file and path rules add to them)."""
    text, fields = front_matter(decode_text(data))
    title = fields.get("title") if isinstance(fields.get("title"), str) else _markdown_title(text.splitlines())
    return text, {"format": "markdown", "title": title, "fields": fields}


def front_matter(text: str) -> tuple[str, dict[str, Any]]:
    """`text` without its YAML front matter, and the front matter's usable entries; text that does not start
    with a well-formed front matter mapping comes back whole, with no entries."""
    found = _FRONT_MATTER.match(text)
    if found is None:
        return text, {}
    try:
        data = yaml.safe_load(found.group(1))
    except yaml.YAMLError:
        return text, {}
    if not isinstance(data, dict):
        return text, {}
    return text[found.end() :], fields_of(data)


def load_rst(data: bytes, path: Path, limits: ReadLimits) -> tuple[str, dict[str, Any]]:
    """A reStructuredText file; the title is its first underlined heading."""
    text = decode_text(data)
    return text, {"format": "rst", "title": _rst_title(text.splitlines())}


def load_code(data: bytes, path: Path, limits: ReadLimits) -> tuple[str, dict[str, Any]]:
    """A source-code or configuration file, with its `language`."""
    text = decode_text(data)
    return text, {"format": "code", "language": CODE_LANGUAGES.get(path.suffix.lower(), "text")}


def _markdown_title(lines: list[str]) -> str | None:
    in_fence = False
    for line in lines:
        if _MD_FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and (match := _MD_TITLE.match(line)):
            return match.group(1)
    return None


def _rst_title(lines: list[str]) -> str | None:
    for line, under in itertools.pairwise(lines):
        title = line.strip()
        if (
            title
            and not _RST_ADORNMENT.match(line)
            and _RST_ADORNMENT.match(under)
            and len(under.strip()) >= len(title)
        ):
            return title
    return None
