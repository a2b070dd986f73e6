"""`ServerSettings`: what `rag serve` serves (collections: indexes with their pipelines) and the limits every request
is held to."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rag.core.errors import ConfigError
from rag.core.pipeline import Pipeline

__all__ = [
    "API_KEYS_ENV",
    "DEFAULT_COLLECTION",
    "SETTINGS_ENV",
    "CollectionSettings",
    "ServerSettings",
    "is_loopback",
    "load_api_keys",
]

API_KEYS_ENV = "RAG_API_KEYS"
"""Environment variable holding API keys, comma-separated."""
SETTINGS_ENV = "RAG_SERVE_SETTINGS"
"""Environment variable through which `rag serve --workers N` hands its settings (JSON) to each worker."""
DEFAULT_COLLECTION = "default"
"""The name of the collection of `ServerSettings.index`."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
PipelineRef = str | Pipeline | None


@dataclass(frozen=True)
class CollectionSettings:
    """One served collection: an index, and the pipelines served over it (None: the index's own; the first is the
    collection's default)."""

    name: str
    index: Path
    pipelines: tuple[PipelineRef, ...] = (None,)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", Path(self.index))
        object.__setattr__(self, "pipelines", tuple(self.pipelines))
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigError(
                f"collection name {self.name!r}: use letters, digits, '_', '.' or '-' (at most 64, first a letter "
                "or digit)"
            )
        if not self.pipelines:
            raise ConfigError(f"collection '{self.name}': name at least one pipeline (None: the index's own)")


@dataclass(frozen=True)
class ServerSettings:
    """Everything a server is built from; every field has a safe default except what to serve.

    What is served: `index` (the collection named "default") with `pipelines`, each a shipped name, a YAML path,
    a `Pipeline`, or None for the pipeline the index was built with, and/or `collections`, each an index with its
    own pipelines. The first collection is the default one; requests name another in `collection`, and OpenAI
    requests pick a pipeline by its name in `model`. Nothing a request sends can add to them.
    No `api_keys` and no `api_keys_file` means no authentication (see `rag.serve.keys` for scoped keys). Limits
    bound what one request may ask for, and what one indexing job of uploads may use (`job_memory_mb` of resident
    memory, `job_timeout_s`; see `rag.serve.index_job`).
    """

    index: Path | None = None
    pipelines: tuple[PipelineRef, ...] = (None,)
    collections: tuple[CollectionSettings, ...] = ()
    allowed: tuple[str, ...] = ()
    api_keys: tuple[str, ...] = ()
    api_keys_file: str | None = None
    host: str = "127.0.0.1"
    max_top_k: int = 50
    max_tokens: int = 1024
    max_candidates: int = 8
    max_query_chars: int = 4000
    max_embedding_inputs: int = 256
    max_body_mb: float = 1.0
    max_upload_mb: float = 20.0
    cors_origins: tuple[str, ...] = ()
    index_wait_s: float = 600.0
    job_memory_mb: float = 4096.0
    job_timeout_s: float = 3600.0
    otel: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", Path(self.index) if self.index is not None else None)
        for name in ("pipelines", "collections", "allowed", "api_keys", "cors_origins"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        served = self.served()
        names = [c.name for c in served]
        if not served:
            raise ConfigError("ServerSettings: give an index to serve, or collections")
        if len(set(names)) != len(names):
            repeated = next(name for i, name in enumerate(names) if name in names[:i])
            raise ConfigError(f"ServerSettings: two collections are named '{repeated}'; give each its own name")
        problems = [
            f"{name} must be a number > 0, got {getattr(self, name)!r}"
            for name in (
                "max_top_k",
                "max_tokens",
                "max_candidates",
                "max_query_chars",
                "max_embedding_inputs",
                "max_body_mb",
                "max_upload_mb",
                "job_memory_mb",
                "job_timeout_s",
            )
            if not isinstance(getattr(self, name), int | float) or getattr(self, name) <= 0
        ]
        if not self.pipelines:
            problems.append("pipelines must name at least one pipeline (None: the index's own)")
        if any(not key or key != key.strip() for key in self.api_keys):
            problems.append("API keys must be non-empty and carry no surrounding whitespace")
        if problems:
            raise ConfigError("ServerSettings: " + "; ".join(problems))

    def served(self) -> tuple[CollectionSettings, ...]:
        """Every collection served, the default one first."""
        own = (CollectionSettings(DEFAULT_COLLECTION, self.index, self.pipelines),) if self.index is not None else ()
        return own + self.collections

    def to_json(self) -> str:
        """The settings as JSON for worker processes; API keys are left out (each worker reads them again)."""
        if any(isinstance(p, Pipeline) for c in self.served() for p in c.pipelines):
            raise ConfigError("settings holding Pipeline objects cannot be handed to worker processes; name them")
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "api_keys"}
        data["index"] = str(self.index) if self.index is not None else None
        data["collections"] = [
            {"name": c.name, "index": str(c.index), "pipelines": list(c.pipelines)} for c in self.collections
        ]
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str, environ: Mapping[str, str] = os.environ) -> ServerSettings:
        """Settings from `to_json()`, with the API keys read again from the environment."""
        data = json.loads(text)
        data["collections"] = tuple(CollectionSettings(**c) for c in data.get("collections", ()))
        return cls(**data, api_keys=load_api_keys(environ))


def load_api_keys(environ: Mapping[str, str] = os.environ) -> tuple[str, ...]:
    """API keys from `$RAG_API_KEYS` (comma-separated); the keys file is read by the server (`rag.serve.keys`)."""
    keys = [k.strip() for k in environ.get(API_KEYS_ENV, "").split(",")]
    return tuple(dict.fromkeys(k for k in keys if k))


def is_loopback(host: str) -> bool:
    """Whether `host` only listens on this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
