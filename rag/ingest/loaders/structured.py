"""Loaders for JSON, JSON Lines and CSV: records rendered as readable `key: value` lines.

Nested keys are dotted (`author.name: Ada`), list items indexed (`tags[0].id: 7`), and a list of
plain values is written on one line (`tags: a, b`). Each record is one paragraph: the items of a
top-level JSON array (or the one top-level value), the lines of a JSONL file, the rows of a CSV file.

Each record also gives fields to the chunks made from it (`record_fields`): the document's metadata holds
`record_starts` (the offset of each record's paragraph) and `record_fields` (its fields), and chunkers keep every
chunk inside one record (`rag.ingest.chunkers.base`). A JSON record's fields are its values that a filter can test
(strings, numbers, true/false, lists of those; nested objects by dotted name, `author.name`); a CSV row's are its
cells by column, a column whose every cell is a number being numbers. Strings over `RECORD_FIELD_CHARS` characters
are text, not fields, and are left out.
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
from rag.core.metadata import field_value
from rag.ingest.loaders._common import decode_text, shorten

__all__ = ["RECORD_FIELD_CHARS", "load_csv", "load_json", "load_jsonl", "record_fields", "render_record"]

RECORD_FIELD_CHARS = 200
"""The longest string a record gives as a field; a longer one is text to search, not a value to filter by."""


def render_record(value: Any, prefix: str = "") -> str:
    """One JSON value as `key: value` lines."""
    return "\n".join(_lines(value, prefix))


def record_fields(value: Any, prefix: str = "") -> dict[str, Any]:
    """The fields a JSON record gives its chunks: its testable values by (dotted) name; none unless it is an
    object."""
    fields: dict[str, Any] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(item, dict):
                fields.update(record_fields(item, name))
            elif _short(typed := field_value(item)):
                fields[name] = typed
    return fields


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
    return _records([(render_record(record), record_fields(record)) for record in records], {"format": "json"})


def load_jsonl(data: bytes, path: Path, limits: ReadLimits) -> tuple[str, dict[str, Any]]:
    """A JSON Lines file: one paragraph per record."""
    records: list[tuple[str, dict[str, Any]]] = []
    for number, line in enumerate(decode_text(data).splitlines(), start=1):
        if not line.strip():
            continue
        limits.check("max_records", len(records) + 1, "records")
        limits.check("max_depth", json_depth(line), f"levels of JSON nesting on line {number}")
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LoaderError(f"malformed JSON on line {number}: {exc.msg} at column {exc.colno}") from None
        records.append((render_record(record), record_fields(record)))
    return _records(records, {"format": "jsonl"})


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
    cells = []
    for row in rows[1:]:
        names = header + [f"column {i}" for i in range(len(header) + 1, len(row) + 1)]
        cells.append([(n, v.strip()) for n, v in zip(names, row, strict=False) if v.strip()])
    numeric = _numeric_columns(cells)
    records = [
        (
            "\n".join(f"{n}: {v}" for n, v in row),
            {n: _number(v) if n in numeric else v for n, v in row if n in numeric or _short(v)},
        )
        for row in cells
    ]
    return _records(records, {"format": "csv", "rows": len(rows) - 1}, "columns: " + ", ".join(header))


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


def _records(
    records: list[tuple[str, dict[str, Any]]], metadata: dict[str, Any], heading: str = ""
) -> tuple[str, dict[str, Any]]:
    """The text of rendered records (one paragraph each, after `heading` when there is one; blank ones left out)
    and `metadata` with each record's start offset and fields."""
    parts, starts, fields = [heading] if heading else [], [], []
    at = len(heading) + 2 if heading else 0
    for text, own in records:
        if text.strip():
            parts.append(text)
            starts.append(at)
            fields.append(own)
            at += len(text) + 2
    return "\n\n".join(parts), {**metadata, "record_starts": starts, "record_fields": fields}


def _numeric_columns(rows: list[list[tuple[str, str]]]) -> set[str]:
    """The columns whose every (non-empty) cell is a number."""
    seen: set[str] = set()
    other: set[str] = set()
    for row in rows:
        for name, value in row:
            (seen if _NUMBER.fullmatch(value) else other).add(name)
    return seen - other


_NUMBER = re.compile(r"[-+]?(?:(?:0|[1-9]\d*)(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
"""A number as a CSV cell writes it; a leading zero (`007`, a code) keeps a cell a string."""


def _number(text: str) -> int | float:
    return int(text) if text.lstrip("+-").isdigit() else float(text)


def _short(value: Any) -> bool:
    """Whether a field value (None: none) is short enough to be a field."""
    if value is None:
        return False
    items = value if isinstance(value, list) else [value]
    return all(not isinstance(item, str) or len(item) <= RECORD_FIELD_CHARS for item in items)
