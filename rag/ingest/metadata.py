"""Metadata a file gets from outside itself: its sidecar file and the pipeline's path rules (`indexing.metadata`).

A sidecar is `NAME.meta.json` (a JSON object) or `NAME.meta.yaml` / `NAME.meta.yml` (a YAML mapping) beside the
file `NAME` (`report.pdf.meta.json` beside `report.pdf`); its entries become fields of that file's chunks, typed as
front matter's are (`rag.core.metadata`, which also gives the precedence: path rules, then front matter, then the
sidecar). A sidecar is never indexed as a document: `rag.ingest.walk.walk_folder` collects sidecars apart from
documents, under the folder's symbolic link policy and whatever `include` and `exclude` say (a sidecar goes with its
file). It is read under the same size limit as any file.

A sidecar that cannot be read, is over the limit, does not parse or is not a mapping, and two sidecars for one
file, make that file fail (`extra_metadata` and `ExtraMetadata.sidecar_fields` raise a LoaderError naming the
sidecar): it is reported and not indexed, never indexed without its metadata.

`ExtraMetadata.key` is what the indexer records per file (`FileRecord.metadata_sha256`) to tell that this metadata
changed while the file did not: it hashes the fields of the rules the file matches and the sidecar's name and bytes,
and is empty when there are neither (as in an index written before sidecars existed).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from rag.core.errors import LoaderError
from rag.core.limits import ReadLimits
from rag.core.metadata import MetadataRule, fields_of, merge_fields, rule_fields
from rag.core.types import Document
from rag.ingest.loaders import read_bytes
from rag.ingest.loaders._common import shorten

__all__ = [
    "SIDECAR_SUFFIXES",
    "ExtraMetadata",
    "Sidecar",
    "document_of",
    "extra_metadata",
    "is_sidecar",
    "sidecars_by_document",
    "with_fields",
]

SIDECAR_SUFFIXES = (".meta.json", ".meta.yaml", ".meta.yml")
"""The endings of sidecar file names (compared without regard to case)."""
_KINDS = {"list": "a list", "str": "a string", "int": "a number", "float": "a number", "bool": "true or false"}


def is_sidecar(name: str) -> bool:
    """Whether a file of this name is a sidecar (it then is never indexed as a document)."""
    return name.lower().endswith(SIDECAR_SUFFIXES)


def document_of(sidecar: str) -> str:
    """The (relative) path of the file a sidecar describes: its own without the sidecar ending."""
    lowered = sidecar.lower()
    for suffix in SIDECAR_SUFFIXES:
        if lowered.endswith(suffix):
            return sidecar[: -len(suffix)]
    return sidecar


@dataclass(frozen=True)
class Sidecar:
    """A sidecar's relative path and the bytes read from it (read once: what is hashed is what is parsed)."""

    relative: str
    data: bytes

    @property
    def name(self) -> str:
        return self.relative.rsplit("/", 1)[-1]

    def fields(self) -> dict[str, Any]:
        """Its entries as fields (mappings and empty values left out, as in front matter); a LoaderError naming
        the sidecar when it is not UTF-8 text, does not parse, or is not a mapping."""
        is_json = self.name.lower().endswith(".json")
        try:
            text = self.data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise self._error(f"not UTF-8 text (byte offset {exc.start}); save it as UTF-8") from None
        try:
            data = json.loads(text) if is_json else yaml.safe_load(text)
        except json.JSONDecodeError as exc:
            raise self._error(f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise self._error(f"not valid YAML{where}: {getattr(exc, 'problem', None) or shorten(exc)}") from None
        except RecursionError:
            raise self._error("nested too deeply to parse; a sidecar is a flat mapping of fields") from None
        if not isinstance(data, dict):
            what, holds = ("a JSON object", "{...}") if is_json else ("a YAML mapping", "NAME: VALUE lines")
            found = "nothing" if data is None else _KINDS.get(type(data).__name__, type(data).__name__)
            raise self._error(f"not {what} (it holds {found}); write its fields as {holds}")
        return fields_of(data)

    def _error(self, reason: str) -> LoaderError:
        return LoaderError(f"sidecar {self.name}: {reason}")


def sidecars_by_document(found: Mapping[str, Path]) -> dict[str, list[tuple[str, Path]]]:
    """The sidecars `walk_folder` found (relative path -> path), by the relative path of the file each describes."""
    grouped: dict[str, list[tuple[str, Path]]] = {}
    for relative in sorted(found):
        grouped.setdefault(document_of(relative), []).append((relative, found[relative]))
    return grouped


@dataclass(frozen=True)
class ExtraMetadata:
    """What one file gets from outside itself: the fields of the path rules it matches, and its sidecar (None:
    none); `key` changes whenever either does (see the module docstring)."""

    rule_fields: dict[str, Any] = field(default_factory=dict)
    sidecar: Sidecar | None = None

    @property
    def key(self) -> str:
        if not self.rule_fields and self.sidecar is None:
            return ""
        sidecar = [self.sidecar.relative, hashlib.sha256(self.sidecar.data).hexdigest()] if self.sidecar else None
        text = json.dumps({"rules": self.rule_fields, "sidecar": sidecar}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    def sidecar_fields(self) -> dict[str, Any]:
        """The sidecar's fields ({} without one); a LoaderError naming the sidecar when it cannot be used."""
        return self.sidecar.fields() if self.sidecar is not None else {}


def extra_metadata(
    relative: str, sidecars: Sequence[tuple[str, Path]], rules: Sequence[MetadataRule], limits: ReadLimits
) -> ExtraMetadata:
    """The extra metadata of the file at POSIX relative path `relative`, whose sidecars (relative path and path,
    from `sidecars_by_document`) are `sidecars`: the sidecar is read (not parsed), under `limits`. A LoaderError
    names the sidecar that cannot be read or is over the limit, or the two sidecars of one file."""
    sidecar = None
    if len(sidecars) > 1:
        names = " and ".join(path.name for _, path in sidecars)
        raise LoaderError(f"sidecars {names} both give this file's metadata; keep one")
    if sidecars:
        sidecar_relative, path = sidecars[0]
        try:
            sidecar = Sidecar(sidecar_relative, read_bytes(path, limits))
        except LoaderError as exc:
            raise LoaderError(f"sidecar {path.name}: {exc.reason}") from None
    return ExtraMetadata(rule_fields(relative, rules), sidecar)


def with_fields(document: Document, rules: Mapping[str, Any], sidecar: Mapping[str, Any]) -> Document:
    """`document` with the fields of its path rules under its own (front matter) and its sidecar's over them; a
    sidecar's `title` (a string) is the document's title, as front matter's is."""
    if not rules and not sidecar:
        return document
    metadata = {**document.metadata, "fields": merge_fields(rules, document.metadata.get("fields") or {}, sidecar)}
    if isinstance(sidecar.get("title"), str):
        metadata["title"] = sidecar["title"]
    return replace(document, metadata=metadata)
