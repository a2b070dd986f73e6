"""Glob patterns over POSIX relative paths, as `indexing.include`/`exclude` and filters' `matches` use them.

- a pattern without `/` matches the file *name* at any depth: `*.md` matches `a/b/c.md`;
- a pattern with `/` matches the whole relative path: `docs/*.md` matches `docs/x.md` only, and `**` spans any
  number of folders (none included): `docs/**/*.md` matches `docs/x.md` and `docs/a/b/x.md`;
- `*` and `?` never cross a `/`; `[abc]` and `[!abc]` are classes.
"""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["match_pattern"]


def match_pattern(relative: str, pattern: str) -> bool:
    """True when the POSIX relative path matches the glob `pattern` (rules in the module docstring)."""
    pattern = pattern.removeprefix("./")
    if "/" not in pattern:
        relative = relative.rsplit("/", 1)[-1]
    return _compile(pattern).fullmatch(relative) is not None


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end].replace("\\", "\\\\")
            body = "^" + body[1:] if body[0] == "!" else "\\" + body if body[0] == "^" else body
            out.append(f"[{body}]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))
