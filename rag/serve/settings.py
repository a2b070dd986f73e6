"""`ServerSettings`: what `rag serve` serves (index, pipelines) and the limits every request is held to."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rag.core.errors import ConfigError
from rag.core.pipeline import Pipeline

__all__ = ["API_KEYS_ENV", "SETTINGS_ENV", "ServerSettings", "is_loopback", "load_api_keys"]

API_KEYS_ENV = "RAG_API_KEYS"
"""Environment variable holding API keys, comma-separated."""
SETTINGS_ENV = "RAG_SERVE_SETTINGS"
"""Environment variable through which `rag serve --workers N` hands its settings (JSON) to each worker."""


@dataclass(frozen=True)
class ServerSettings:
    """Everything a server is built from; every field has a safe default except `index`.

    `pipelines` are the pipelines served over the one index, each a shipped name, a YAML path, a
    `Pipeline`, or None for the pipeline the index was built with; the first is the default and
    OpenAI requests pick one by its name in `model`. Nothing a request sends can add to them.
    `api_keys` empty means no authentication. Limits bound what one request may ask for, and what one indexing
    job of uploads may use (`job_memory_mb` of resident memory, `job_timeout_s`; see `rag.serve.index_job`).
    """

    index: Path
    pipelines: tuple[str | Pipeline | None, ...] = (None,)
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
        object.__setattr__(self, "index", Path(self.index))
        for name in ("pipelines", "allowed", "api_keys", "cors_origins"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
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

    def to_json(self) -> str:
        """The settings as JSON for worker processes; API keys are left out (each worker reads them again)."""
        if any(isinstance(p, Pipeline) for p in self.pipelines):
            raise ConfigError("settings holding Pipeline objects cannot be handed to worker processes; name them")
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "api_keys"}
        data["index"] = str(self.index)
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str, environ: Mapping[str, str] = os.environ) -> ServerSettings:
        """Settings from `to_json()`, with the API keys read again from the environment and the keys file."""
        data = json.loads(text)
        return cls(**data, api_keys=load_api_keys(data.get("api_keys_file"), environ))


def load_api_keys(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] = os.environ
) -> tuple[str, ...]:
    """API keys from `$RAG_API_KEYS` (comma-separated) and from a file (one per line, `#` comments)."""
    keys = [k.strip() for k in environ.get(API_KEYS_ENV, "").split(",")]
    if path is not None:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            message = f"cannot read the API keys file {path}: {exc}; give a text file with one key per line"
            raise ConfigError(message) from None
        keys += [line.strip() for line in lines if not line.strip().startswith("#")]
    return tuple(dict.fromkeys(k for k in keys if k))


def is_loopback(host: str) -> bool:
    """Whether `host` only listens on this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
