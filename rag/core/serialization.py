"""Pipelines to and from YAML.

Loading never imports arbitrary code: `type:` names a built-in component, or a class the caller
allows by its full dotted name. The YAML is read with `yaml.safe_load` (no Python tags).

    name: default
    indexing: {include: ["**/*"], exclude: [], max_file_mb: 20, chunker: {type: RecursiveChunker, init: {...}},
               metadata: [{match: "contracts/**", fields: {kind: contract}}]}   # metadata: optional path rules
    components:
      bm25: {type: BM25Retriever, init: {top_k: 20}}
      ...
    connections:
      - {sender: bm25.hits, receiver: fusion.hits}
    inputs: [query]
    outputs: {hits: fusion.hits, answer: answer.answer}
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml

from rag.core.component import Component
from rag.core.errors import ConfigError, PipelineError
from rag.core.limits import LIMIT_SETTINGS
from rag.core.metadata import metadata_rules
from rag.core.pipeline import IndexingSettings, Pipeline
from rag.core.registry import resolve_type

__all__ = [
    "dump_pipeline",
    "find_pipeline",
    "load_pipeline",
    "loads_pipeline",
    "pipeline_from_dict",
    "pipelines_dir",
    "shipped_pipelines",
]

_TOP_KEYS = {"name", "description", "indexing", "components", "connections", "inputs", "outputs"}
_INDEXING_KEYS = {"include", "exclude", "max_file_mb", "symlinks", "metadata", "chunker", *LIMIT_SETTINGS}


def _component(spec: Any, where: str, allowed: Collection[str]) -> Component:
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ConfigError(f"{where}: expected a mapping with 'type' and optional 'init', got {spec!r}")
    extra = set(spec) - {"type", "init"}
    if extra:
        raise ConfigError(f"{where}: unknown key '{sorted(extra)[0]}'; a component has only 'type' and 'init'")
    init = spec.get("init") or {}
    if not isinstance(init, Mapping):
        raise ConfigError(f"{where}.init: expected a mapping of settings, got {init!r}")
    cls = resolve_type(str(spec["type"]), allowed, where)
    try:
        return cls(**init)
    except TypeError as exc:
        raise ConfigError(f"{where}: bad settings for {spec['type']}: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def pipeline_from_dict(data: Any, allowed: Collection[str] = (), source: str = "pipeline") -> Pipeline:
    """Build (and so validate) a pipeline from plain data as written in YAML."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a pipeline must be a mapping with 'components', got {type(data).__name__}")
    unknown = set(data) - _TOP_KEYS
    typos = [key for key in unknown if difflib.get_close_matches(str(key), _TOP_KEYS, n=1, cutoff=0.8)]
    if "components" not in data and not typos:  # not a pipeline file at all: say so without quoting what it holds
        raise ConfigError(f"{source}: not a pipeline file (no 'components'); see pipelines/default.yaml")
    if unknown:
        raise ConfigError(f"{source}: unknown key '{sorted(unknown)[0]}'; allowed: {', '.join(sorted(_TOP_KEYS))}")
    specs = data.get("components")
    if not isinstance(specs, Mapping) or not specs:
        raise ConfigError(f"{source}: 'components' must be a non-empty mapping of name -> {{type, init}}")
    components = {str(n): _component(s, f"{source}: components.{n}", allowed) for n, s in specs.items()}
    connections = []
    for i, conn in enumerate(data.get("connections") or []):
        if not isinstance(conn, Mapping) or set(conn) != {"sender", "receiver"}:
            raise ConfigError(f"{source}: connections[{i}] must be {{sender: comp.output, receiver: comp.input}}")
        connections.append((str(conn["sender"]), str(conn["receiver"])))
    indexing = None
    if data.get("indexing") is not None:
        spec = data["indexing"]
        if not isinstance(spec, Mapping) or "chunker" not in spec:
            raise ConfigError(f"{source}: 'indexing' must be a mapping with a 'chunker'")
        unknown = set(spec) - _INDEXING_KEYS
        if unknown:
            raise ConfigError(
                f"{source}: indexing has unknown key '{sorted(unknown)[0]}'; allowed: "
                f"{', '.join(sorted(_INDEXING_KEYS))}"
            )
        indexing = IndexingSettings(
            chunker=_component(spec["chunker"], f"{source}: indexing.chunker", allowed),
            include=tuple(spec.get("include") or ("**/*",)),
            exclude=tuple(spec.get("exclude") or ()),
            max_file_mb=float(spec.get("max_file_mb", 20.0)),
            symlinks=str(spec.get("symlinks", "inside")),
            metadata=metadata_rules(spec.get("metadata"), f"{source}: indexing.metadata"),
            **{name: spec[name] for name in LIMIT_SETTINGS if name in spec},
        )
    try:
        return Pipeline(
            components,
            connections,
            inputs=data.get("inputs") or ("query",),
            outputs=data.get("outputs"),
            indexing=indexing,
            name=str(data.get("name") or ""),
            description=str(data.get("description") or ""),
        )
    except PipelineError as exc:
        raise PipelineError(f"{source}: {exc}") from None


def loads_pipeline(text: str, allowed: Collection[str] = (), source: str = "pipeline") -> Pipeline:
    """A pipeline from YAML text."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # the file's name and the position, never a line of what it holds
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "characters YAML cannot hold (a binary file?)"
        raise ConfigError(f"{source}: not valid YAML{where}: {problem}") from None
    return pipeline_from_dict(data, allowed, source)


def dump_pipeline(pipeline: Pipeline) -> str:
    """The pipeline as YAML text (loads back to an equal pipeline)."""
    return yaml.safe_dump(pipeline.to_dict(), sort_keys=False, allow_unicode=True)


def pipelines_dir() -> Path:
    """Where shipped pipelines live: `$RAG_PIPELINES_DIR`, else the project's `pipelines/`."""
    env = os.environ.get("RAG_PIPELINES_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "pipelines"


def shipped_pipelines() -> dict[str, Path]:
    """Shipped pipeline names and their files."""
    folder = pipelines_dir()
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


def find_pipeline(name_or_path: str | os.PathLike[str]) -> Path:
    """The file for a pipeline given by path or by the name of a file in `pipelines/`."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    shipped = shipped_pipelines()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    names = ", ".join(shipped) or "none found"
    raise ConfigError(
        f"no pipeline '{name_or_path}': not a file, and not a shipped pipeline name ({names}); "
        "give a path to a YAML file or one of those names"
    )


def load_pipeline(name_or_path: str | os.PathLike[str], allowed: Collection[str] = ()) -> Pipeline:
    """Load a pipeline by file path or shipped name; `allowed` lists extra classes by dotted name."""
    path = find_pipeline(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read pipeline file {path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read pipeline file {path}: {exc.strerror or exc}") from None
    return loads_pipeline(text, allowed, source=str(path))
