"""User metadata fields, whichever source gives them: what a field's value may be, and the path rules of a pipeline.

A file's chunks get user fields (what filters test, see `rag.core.filters`) from three sources, each overriding the
one before it field by field: the pipeline's path rules (`indexing.metadata`, in order, a later rule over an earlier
one), the file's own front matter (Markdown), and its sidecar file (`NAME.meta.json` or `NAME.meta.yaml` beside
`NAME`, see `rag.ingest.sidecars`). `merge_fields` is that order, written once.

A field's value is a string, a number, true/false, a date (kept as its ISO string, which orders as dates do) or a
non-empty list of those (`field_value`).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rag.core.errors import ConfigError
from rag.core.globs import match_pattern

__all__ = ["MetadataRule", "field_value", "fields_of", "merge_fields", "metadata_rules", "rule_fields"]


def field_value(value: Any) -> Any:
    """`value` as a field of chunk metadata: dates as ISO strings (which order as dates do); None for what a filter
    cannot test (mappings, None, empty lists, lists holding anything else)."""
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple) and value:
        items = [field_value(item) for item in value]
        return items if all(isinstance(item, str | int | float | bool) for item in items) else None
    return None


def fields_of(data: Mapping[Any, Any]) -> dict[str, Any]:
    """The usable entries of a mapping (front matter, a sidecar) as fields: those `field_value` keeps, by name."""
    return {str(key): value for key, value in ((k, field_value(v)) for k, v in data.items()) if value is not None}


def merge_fields(
    rules: Mapping[str, Any], own: Mapping[str, Any], sidecar: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A file's user fields: its path rules' (`rule_fields`), overridden by its own (front matter), overridden by
    its sidecar's."""
    return {**rules, **own, **(sidecar or {})}


@dataclass(frozen=True)
class MetadataRule:
    """One entry of `indexing.metadata`: every file whose relative path matches the glob `match` (the rules of
    `rag.core.globs`) gets `fields`."""

    match: str
    fields: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"match": self.match, "fields": dict(self.fields)}


def metadata_rules(value: Any, where: str = "indexing.metadata") -> tuple[MetadataRule, ...]:
    """The path rules written as `value` (a list of `{match: GLOB, fields: {NAME: VALUE}}`, or `MetadataRule`s),
    checked: a ConfigError names the entry that is wrong and how to write it."""
    if value is None:
        return ()
    example = '[{match: "contracts/**", fields: {kind: contract}}]'
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise ConfigError(f"{where} must be a list of rules such as {example}, got {type(value).__name__}")
    rules = []
    for i, entry in enumerate(value):
        if isinstance(entry, MetadataRule):
            entry = entry.to_dict()
        at = f"{where}[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{at} must be a mapping {{match: GLOB, fields: {{...}}}}, got {entry!r:.80}")
        unknown = set(entry) - {"match", "fields"}
        if unknown:
            raise ConfigError(f"{at} has unknown key '{sorted(map(str, unknown))[0]}'; a rule has 'match' and 'fields'")
        match = entry.get("match")
        if not isinstance(match, str) or not match.strip():
            raise ConfigError(f"{at} needs 'match', a glob over relative paths such as \"contracts/**\", got {match!r}")
        fields = entry.get("fields")
        if not isinstance(fields, Mapping) or not fields:
            raise ConfigError(f"{at}.fields must be a non-empty mapping of field names to values, got {fields!r:.80}")
        checked = {}
        for name, raw in fields.items():
            typed = field_value(raw)
            if typed is None:
                raise ConfigError(
                    f"{at}.fields.{name} is {raw!r:.80}; a field is a string, number, true/false, date or a "
                    "non-empty list of those"
                )
            checked[str(name)] = typed
        rules.append(MetadataRule(match, checked))
    return tuple(rules)


def rule_fields(relative: str, rules: Sequence[MetadataRule]) -> dict[str, Any]:
    """The fields the rules give the file at POSIX relative path `relative`: every matching rule's, in order (a
    later rule overrides an earlier one)."""
    fields: dict[str, Any] = {}
    for rule in rules:
        if match_pattern(relative, rule.match):
            fields.update(rule.fields)
    return fields
