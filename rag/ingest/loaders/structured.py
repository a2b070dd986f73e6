"""Loaders for JSON, JSON Lines and CSV: records rendered as readable `key: value` lines.

Nested keys are dotted (`author.name: Ada`), list items indexed (`tags[0].id: 7`), and a list of
plain values is written on one line (`tags: a, b`). Each record is one paragraph: the items of a
top-level JSON array, the lines of a JSONL file, the rows of a CSV file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rag.core.errors import LoaderError
from rag.core.limits import ReadLimits
from rag.ingest.loaders._common import decode_text, shorten

__all__ = ["load_csv", "load_json", "load_jsonl", "render_record"]


def render_record(value: Any, prefix: str = "") -> str:
    """One JSON value as `key: value` lines."""
    return "\n".join(_lines(value, prefix))


def load_json(data: bytes, path: Path, limits: ReadLimits) -> tuple[str, dict[str, Any]]:
    """A JSON file; a top-level array gives one paragraph per item. Its nesting is measured before it is parsed."""
    text = decode_text(data)
    limits.check("max_depth", json_depth(text), "levels of JSON nesting")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LoaderError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    records = value if isinstance(value, list) else [value]
    limits.check("max_records", len(records), "records")
    return _paragraphs(render_record(record) for record in records), {"format": "json"}


def load_jsonl(data: bytes, path: Path, limits: ReadLimits) -> tuple[str, dict[str, Any]]:
    """A JSON Lines file: one paragraph per record."""
    rendered: list[str] = []
    for number, line in enumerate(decode_text(data).splitlines(), start=1):
        if not line.strip():
            continue
        limits.check("max_records", len(rendered) + 1, "records")
        limits.check("max_depth", json_depth(line), f"levels of JSON nesting on line {number}")
        try:
            rendered.append(render_record(json.loads(line)))
        except json.JSONDecodeError as exc:
            raise LoaderError(f"malformed JSON on line {number}: {exc.msg} at column {exc.colno}") from None
    return _paragraphs(rendered), {"format": "jsonl"}


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def json_depth(text: str) -> int:
    """How deeply the arrays and objects of JSON `text` nest (brackets inside strings do not count), measured
    without parsing it: a file nested beyond Python's recursion limit gets a reason instead of a RecursionError."""
    brackets = np.frombuffer(_JSON_STRING.sub("", text).encode("utf-8"), dtype=np.uint8)
    steps = (
        (brackets == ord("[")).astype(np.int32)
        + (brackets == ord("{"))
        - (brackets == ord("]"))
        - (brackets == ord("}"))
    )
    return int(np.cumsum(steps).max(initial=0))


def load_csv(data: bytes, path: Path, limits: ReadLimits) -> tuple[str, dict[str, Any]]:
    """A CSV or TSV file: a `columns:` line, then one paragraph of `column: value` lines per row."""
    text = decode_text(data)
    dialect: Any = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
    if dialect is csv.excel:
        with contextlib.suppress(csv.Error):  # not enough evidence: keep plain commas
            dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    csv.field_size_limit(max(csv.field_size_limit(), len(text)))  # one field may be the whole (size-limited) file
    try:
        rows = []
        for row in csv.reader(io.StringIO(text, newline=""), dialect):
            if any(cell.strip() for cell in row):
                rows.append(row)
                limits.check("max_records", len(rows) - 1, "rows")
    except csv.Error as exc:
        raise LoaderError(f"malformed CSV: {shorten(exc)}") from None
    if not rows:
        return "", {"format": "csv"}
    header = [name.strip() or f"column {i}" for i, name in enumerate(rows[0], start=1)]
    paragraphs = ["columns: " + ", ".join(header)]
    for row in rows[1:]:
        names = header + [f"column {i}" for i in range(len(header) + 1, len(row) + 1)]
        paragraphs.append("\n".join(f"{n}: {v.strip()}" for n, v in zip(names, row, strict=False) if v.strip()))
    return _paragraphs(paragraphs), {"format": "csv", "rows": len(rows) - 1}


def _lines(value: Any, prefix: str) -> Iterator[str]:
    if isinstance(value, dict):
        if not value and prefix:
            yield f"{prefix}: {{}}"
        for key, item in value.items():
            yield from _lines(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and any(isinstance(item, dict | list) for item in value):
        for index, item in enumerate(value):
            yield from _lines(item, f"{prefix}[{index}]")
    elif isinstance(value, list):
        yield f"{prefix}: {', '.join(map(_scalar, value))}" if prefix else ", ".join(map(_scalar, value))
    else:
        yield f"{prefix}: {_scalar(value)}" if prefix else _scalar(value)


def _scalar(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _paragraphs(parts: Iterator[str] | list[str]) -> str:
    return "\n\n".join(part for part in parts if part.strip())
