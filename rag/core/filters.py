"""Metadata filters: one typed expression, written as a string (CLI) or as JSON (Python, HTTP), checked against the
fields an index holds before any search.

String form::

    type in [pdf, md] and modified >= 2026-01-01
    path matches "contracts/**" and not (status == draft or pages > 40)
    tags exists

Comparisons `==`, `!=`, `<`, `<=`, `>`, `>=`; `in [..]`, `not in [..]`; `exists`; `matches "GLOB"` (the glob rules
of `rag.core.globs`); `and`, `or`, `not` and parentheses (`not` binds tightest, then `and`, then `or`). Values are
numbers, dates (`2026-01-01`, `2026-01-01T12:00`), `true`/`false`, quoted strings, or bare words.

JSON form (Mongo-like)::

    {"type": {"$in": ["pdf", "md"]}, "modified": {"$gte": "2026-01-01"}}
    {"$or": [{"status": "draft"}, {"pages": {"$gt": 40}}]}

A mapping is the `and` of its entries; `{"field": value}` is equality; operators are `$eq $ne $lt $lte $gt $gte
$in $nin $exists $matches`, and `$and`/`$or` take lists, `$not` one filter.

Matching follows the fields' values: a missing field fails every test but `!=`, `not in` and `not exists`; a
list-valued field (`tags`, `pages`) matches when any of its items does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from rag.core.errors import ConfigError
from rag.core.globs import match_pattern

__all__ = ["FIELD_TYPES", "Filter", "chunk_fields", "field_types", "parse_filter"]

FIELD_TYPES = ("string", "number", "date", "bool")
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
_JSON_OPS = {"$eq": "==", "$ne": "!=", "$lt": "<", "$lte": "<=", "$gt": ">", "$gte": ">="}
_INTERNAL = frozenset({"page_starts", "page_breaks", "sha256", "mtime"})
"""Chunk metadata that is bookkeeping, not a field to filter on."""


@dataclass(frozen=True)
class Filter:
    """A node of a filter expression: `op` is a comparison, "in", "nin", "exists", "matches" (with `field` and
    `value`), or "and", "or", "not" (with `children`)."""

    op: str
    field: str = ""
    value: Any = None
    children: tuple[Filter, ...] = ()

    def matches(self, fields: Mapping[str, Any]) -> bool:
        """Whether a chunk with these fields (see `chunk_fields`) passes."""
        if self.op == "and":
            return all(child.matches(fields) for child in self.children)
        if self.op == "or":
            return any(child.matches(fields) for child in self.children)
        if self.op == "not":
            return not self.children[0].matches(fields)
        present = fields.get(self.field)
        if self.op == "exists":
            return (present is not None) == self.value
        if present is None:
            return self.op in ("!=", "nin")
        items = present if isinstance(present, list) else [present]
        if self.op == "in":
            return any(item in self.value for item in items)
        if self.op == "nin":
            return not any(item in self.value for item in items)
        if self.op == "matches":
            return any(isinstance(item, str) and match_pattern(item, self.value) for item in items)
        if self.op == "!=":
            return all(item != self.value for item in items)
        compare = _COMPARISONS[self.op]
        return any(compare(item, self.value) for item in items)

    def fields(self) -> set[str]:
        """The fields the expression reads."""
        if self.children:
            return set().union(*(child.fields() for child in self.children))
        return {self.field}

    def checked(self, known: Mapping[str, str], allow_unknown: bool = False) -> Filter:
        """This filter with its values converted to the types of the fields in `known` (name -> type, see
        `field_types`): a ConfigError names an unknown field (listing the known ones) or a value of the wrong type.
        With `allow_unknown`, a test of an unknown field stays (it matches nothing, or everything when negated)."""
        if self.children:
            return Filter(self.op, children=tuple(c.checked(known, allow_unknown) for c in self.children))
        if self.field not in known:
            if allow_unknown:
                return self
            raise ConfigError(
                f"filter: no chunk of this index has a field '{self.field}'; known fields: "
                f"{', '.join(sorted(known)) or 'none'} (or pass --allow-unknown-fields)"
            )
        kind = known[self.field]
        if self.op == "exists":
            return self
        if self.op == "matches":
            if kind != "string" or not isinstance(self.value, str):
                raise ConfigError(f"filter: '{self.field} matches' needs a string field and a quoted glob pattern")
            return self
        values = self.value if self.op in ("in", "nin") else [self.value]
        converted = [_typed(self.field, kind, value) for value in values]
        return Filter(self.op, self.field, tuple(converted) if self.op in ("in", "nin") else converted[0])

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        if self.op in ("and", "or"):
            return {f"${self.op}": [child.to_dict() for child in self.children]}
        if self.op == "not":
            return {"$not": self.children[0].to_dict()}
        op = {v: k for k, v in _JSON_OPS.items()}.get(self.op, f"${self.op}")
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {self.field: {op: value.isoformat() if isinstance(value, datetime) else value}}

    @classmethod
    def from_dict(cls, data: Any) -> Filter:
        """A filter from its JSON form (see the module docstring); a ConfigError says what is malformed."""
        if not isinstance(data, Mapping) or not data:
            raise ConfigError(f"filter: a filter is a non-empty JSON object, got {data!r:.80}")
        parts = [cls._entry(str(key), value) for key, value in data.items()]
        return parts[0] if len(parts) == 1 else Filter("and", children=tuple(parts))

    @classmethod
    def _entry(cls, key: str, value: Any) -> Filter:
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise ConfigError(f"filter: '{key}' takes a non-empty list of filters")
            return Filter(key[1:], children=tuple(cls.from_dict(item) for item in value))
        if key == "$not":
            return Filter("not", children=(cls.from_dict(value),))
        if key.startswith("$"):
            raise ConfigError(f"filter: unknown operator '{key}' at the top; use $and, $or or $not, or a field name")
        if not isinstance(value, Mapping):
            return Filter("==", key, value)
        tests = []
        for op, operand in value.items():
            if op in _JSON_OPS:
                tests.append(Filter(_JSON_OPS[op], key, operand))
            elif op in ("$in", "$nin"):
                if not isinstance(operand, list):
                    raise ConfigError(f"filter: '{key}': {op} takes a list of values")
                tests.append(Filter(op[1:], key, tuple(operand)))
            elif op == "$exists":
                tests.append(Filter("exists", key, bool(operand)))
            elif op == "$matches":
                tests.append(Filter("matches", key, operand))
            else:
                raise ConfigError(
                    f"filter: '{key}': unknown operator '{op}'; use one of "
                    f"{', '.join([*_JSON_OPS, '$in', '$nin', '$exists', '$matches'])}"
                )
        if not tests:
            raise ConfigError(f"filter: '{key}' has an empty operator object")
        return tests[0] if len(tests) == 1 else Filter("and", children=tuple(tests))


def parse_filter(text: str) -> Filter:
    """A filter from its string form (see the module docstring); a ConfigError points at what is malformed."""
    return _Parser(text).parse()


def chunk_fields(path: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a filter sees in a chunk itself: `path`, `type` (the extension, lower case, without the dot),
    and every metadata entry whose value is a string, number, bool or list of them (`title`, `pages`, `section`,
    `encoding`, user metadata, ...). The chunk store adds the file's `size` and `modified` time."""
    fields: dict[str, Any] = {
        "path": path,
        "type": path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else "",
    }
    for key, value in metadata.items():
        if key in _INTERNAL or key in fields:
            continue
        if _scalar(value) or (isinstance(value, list) and value and all(_scalar(item) for item in value)):
            fields[key] = value
    return fields


def field_types(all_fields: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Field name -> its type ("string", "number", "date", "bool"; the first seen wins) over many chunks."""
    types: dict[str, str] = {}
    for fields in all_fields:
        for name, value in fields.items():
            if name not in types:
                sample = value[0] if isinstance(value, list) else value
                types[name] = _type_of(sample)
    return types


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and value is not None


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, datetime):
        return "date"
    return "string"


def _typed(field: str, kind: str, value: Any) -> Any:
    """`value` as a value of type `kind`, or a ConfigError naming the field and what it takes."""
    if kind == "date":
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                pass
            else:
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
        raise ConfigError(f"filter: '{field}' is a date; compare it with a date such as 2026-01-01, not {value!r}")
    if kind == "number":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        raise ConfigError(f"filter: '{field}' is a number; compare it with a number, not {value!r}")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise ConfigError(f"filter: '{field}' is true or false; compare it with true or false, not {value!r}")
    return value if isinstance(value, str) else _word(value)


def _word(value: Any) -> str:
    """A bare value read as a string (a string field compared with `2024` means "2024")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat()
    return str(value)


_TOKEN = re.compile(
    r"""\s*(?:(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)"""
    r"""|(?P<word>[^\s()\[\],=!<>"']+))"""
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?$")
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")


class _Parser:
    """A recursive-descent parser of the string form."""

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not text.strip():
            raise ConfigError("filter: the filter is empty; write one such as 'type == pdf'")
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []
        at = 0
        while at < len(text):
            found = _TOKEN.match(text, at)
            if found is None or found.end() == at:
                if text[at:].strip():
                    raise ConfigError(f"filter: cannot read {text[at : at + 20]!r} (at character {at + 1})")
                break
            kind = found.lastgroup or ""
            self.tokens.append((kind, found.group(kind), found.start(kind)))
            at = found.end()
        self.at = 0

    def parse(self) -> Filter:
        node = self._or()
        if self.at < len(self.tokens):
            _, token, where = self.tokens[self.at]
            raise ConfigError(f"filter: unexpected {token!r} at character {where + 1}; join tests with and / or")
        return node

    def _peek(self) -> str | None:
        return self.tokens[self.at][1].lower() if self.at < len(self.tokens) else None

    def _take(self, expected: str | None = None) -> tuple[str, str, int]:
        if self.at >= len(self.tokens):
            raise ConfigError(f"filter: {self.text!r} ends too soon" + (f"; expected {expected!r}" if expected else ""))
        token = self.tokens[self.at]
        if expected is not None and token[1].lower() != expected:
            raise ConfigError(f"filter: expected {expected!r} at character {token[2] + 1}, found {token[1]!r}")
        self.at += 1
        return token

    def _or(self) -> Filter:
        parts = [self._and()]
        while self._peek() == "or":
            self._take()
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else Filter("or", children=tuple(parts))

    def _and(self) -> Filter:
        parts = [self._not()]
        while self._peek() == "and":
            self._take()
            parts.append(self._not())
        return parts[0] if len(parts) == 1 else Filter("and", children=tuple(parts))

    def _not(self) -> Filter:
        if self._peek() == "not":
            self._take()
            return Filter("not", children=(self._not(),))
        if self._peek() == "(":
            self._take()
            node = self._or()
            self._take(")")
            return node
        return self._test()

    def _test(self) -> Filter:
        kind, field, where = self._take()
        if kind != "word" or field.lower() in ("and", "or", "not", "in", "exists", "matches"):
            raise ConfigError(f"filter: expected a field name at character {where + 1}, found {field!r}")
        following = self._peek()
        if following in _COMPARISONS:
            op = self._take()[1]
            return Filter(op, field, self._value())
        if following == "in":
            self._take()
            return Filter("in", field, self._list())
        if following == "not":
            self._take()
            self._take("in")
            return Filter("nin", field, self._list())
        if following == "exists":
            self._take()
            return Filter("exists", field, True)
        if following == "matches":
            self._take()
            pattern = self._value()
            return Filter("matches", field, pattern if isinstance(pattern, str) else _word(pattern))
        raise ConfigError(
            f"filter: after '{field}' expected ==, !=, <, <=, >, >=, in, not in, exists or matches"
            + (f", found {following!r}" if following else "")
        )

    def _list(self) -> tuple[Any, ...]:
        self._take("[")
        values = [self._value()]
        while self._peek() == ",":
            self._take()
            values.append(self._value())
        self._take("]")
        return tuple(values)

    def _value(self) -> Any:
        kind, token, where = self._take()
        if kind == "string":
            return re.sub(r"\\(.)", r"\1", token[1:-1])
        if kind != "word":
            raise ConfigError(f"filter: expected a value at character {where + 1}, found {token!r}")
        lowered = token.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        if _NUMBER.match(token):
            return float(token) if "." in token else int(token)
        if _DATE.match(token):
            return datetime.fromisoformat(token.replace(" ", "T")).replace(tzinfo=UTC)
        return token
