"""What one file may expand to while it is read: each limit is a setting of the pipeline's `indexing` section.

The limits are checked while a file is parsed, before its whole content is in memory where the format allows
(PDF pages are counted before any is extracted, a DOCX's expansion is read from its zip directory, JSON nesting is
measured before it is parsed, CSV rows are counted as they are read), so a decompression bomb is refused cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass

from rag.core.errors import ConfigError, LoaderError

__all__ = ["LIMIT_SETTINGS", "ReadLimits"]

LIMIT_SETTINGS = ("max_pages", "max_records", "max_depth", "max_expansion")
"""The `indexing` settings that are limits, besides `max_file_mb` (which gives `max_bytes`)."""


@dataclass(frozen=True)
class ReadLimits:
    """Limits on one file. `max_bytes`: its size, and the characters of its extracted text (None: no limit);
    `max_pages`: PDF pages; `max_records`: JSON array items, JSON Lines lines, CSV rows; `max_depth`: JSON nesting;
    `max_expansion`: how many times its own size a DOCX's XML may inflate to."""

    max_bytes: int | None = 20 * 1024 * 1024
    max_pages: int = 5_000
    max_records: int = 1_000_000
    max_depth: int = 100
    max_expansion: int = 100

    def __post_init__(self) -> None:
        for name in LIMIT_SETTINGS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"indexing.{name} must be a whole number of at least 1, got {value!r}")

    def check_text(self, characters: int) -> None:
        """Refuse extracted text longer than `max_bytes` characters (checked as it grows, where a loader can)."""
        if self.max_bytes is not None and characters > self.max_bytes:
            raise LoaderError(
                f"its text has over {self.max_bytes:,} characters (indexing.max_file_mb applies to the extracted "
                "text as well); a decompression bomb, or raise max_file_mb"
            )

    def check(self, name: str, found: int, what: str) -> None:
        """Refuse `found` `what` (pages, rows, ...) when that is over the limit `name` (an attribute of this object)."""
        limit = getattr(self, name)
        if found > limit:
            raise LoaderError(
                f"{found:,} {what}, over the limit of {limit:,}; raise the pipeline's indexing.{name} to read it"
            )
