"""API keys and what each one may see: the collections it may use, and a filter ANDed into everything it asks.

The key file (`rag serve --api-keys-file FILE`) is either one key per line (each may use everything), or YAML
written by `rag keys add`, which stores each key's SHA-256, never the key::

    keys:
      - name: acme                 # who holds it (logs, `rag keys list`)
        sha256: 9f86d081884c7d65...
        collections: [shared]      # only these collections (left out: all)
        tenant: acme               # sees only chunks whose `tenant` is "acme"; its uploads get `tenant: acme`
        filter: "type in [pdf]"    # ANDed into every request it makes (the filter language of docs/filters.md)

A key is compared by its hash against every stored hash, each in constant time. The server reads the file again
when it changes (checked at most once a second), so keys are added or revoked without a restart; a file that no
longer reads is logged and the keys read before stay in force.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rag.core.errors import ConfigError
from rag.core.filters import Filter, parse_filter

__all__ = ["FULL_ACCESS", "ApiKey", "KeyRing", "add_key", "hash_key", "list_keys", "read_key_file", "remove_key"]

logger = logging.getLogger(__name__)

_NAME_RULE = "letters, digits, '_', '.' or '-', starting and ending with a letter or digit"
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,62}[A-Za-z0-9])?$")
_HEX = re.compile(r"^[0-9a-f]{64}$")
_ENTRY_FIELDS = {"name", "sha256", "collections", "tenant", "filter"}
_RECHECK_S = 1.0


def hash_key(key: str) -> str:
    """The SHA-256 of a key, as the key file stores it (hex)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    """One key's identity and scope: `collections` it may use (None: all), the `tenant` whose documents it sees
    and uploads, and a `filter` ANDed into every request; a key with none of them may use everything."""

    name: str
    digest: bytes = field(repr=False)
    collections: frozenset[str] | None = None
    tenant: str | None = None
    filter: Filter | None = None

    @property
    def scoped(self) -> bool:
        """Whether the key is limited in any way (such a key is refused what only an operator may see)."""
        return self.collections is not None or self.tenant is not None or self.filter is not None

    def scope(self) -> Filter | None:
        """The filter ANDed into every retrieval this key makes (None: it sees every chunk)."""
        parts = [Filter("==", "tenant", self.tenant)] if self.tenant is not None else []
        parts += [self.filter] if self.filter is not None else []
        return parts[0] if len(parts) == 1 else Filter("and", children=tuple(parts)) if parts else None

    def may_use(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections


FULL_ACCESS = ApiKey("open", b"")
"""Who a request is on a server without keys: it may use everything."""


def read_key_file(path: str | os.PathLike[str], collections: Collection[str] | None = None) -> list[ApiKey]:
    """The keys of a key file (see the module docstring); a ConfigError names what is wrong and where. With
    `collections`, a key whose scope names any other collection is refused."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the API keys file {path}: {exc}; give a text or YAML file") from None
    data = _yaml(text)
    if isinstance(data, dict) and "keys" in data:
        entries = data["keys"] or []
        if not isinstance(entries, list):
            raise ConfigError(f"API keys file {path}: 'keys' must be a list of entries (name, sha256, ...)")
        keys = [_entry(item, i, path, collections) for i, item in enumerate(entries)]
    else:
        keys = [_plain(line.strip(), path) for line in text.splitlines() if line.strip() and line[0] != "#"]
    names = [key.name for key in keys]
    if len(set(names)) != len(names):
        raise ConfigError(f"API keys file {path}: two keys are named '{_first_repeat(names)}'; names must differ")
    return keys


def plain_keys(keys: Iterable[str]) -> list[ApiKey]:
    """Unscoped keys given as text (`$RAG_API_KEYS`)."""
    return [ApiKey(f"key-{i + 1}", bytes.fromhex(hash_key(key))) for i, key in enumerate(keys)]


class KeyRing:
    """The server's keys: those given as text (full access) and those of the key file, read again when the file
    changes. `find` tells which key a request bears."""

    def __init__(
        self, keys: Sequence[str] = (), path: str | os.PathLike[str] | None = None, collections: Collection[str] = ()
    ) -> None:
        self._plain = plain_keys(keys)
        self._path = Path(path) if path is not None else None
        self._collections = frozenset(collections)
        self._lock = threading.Lock()
        self._stamp = self._file_stamp()
        self._keys = self._plain + (read_key_file(self._path, self._collections) if self._path is not None else [])
        self._checked = time.monotonic()

    def __bool__(self) -> bool:
        """Whether the server needs keys at all (decided at start-up: an emptied key file admits no one)."""
        return self._path is not None or bool(self._plain)

    def find(self, given: str) -> ApiKey | None:
        """The key `given` is, or None; its hash is compared with every key's, each in constant time."""
        self._reload_if_changed()
        digest = hashlib.sha256(given.encode("utf-8")).digest()
        found = None
        for key in self._keys:
            if hmac.compare_digest(digest, key.digest) and found is None:
                found = key
        return found

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self._path.stat() if self._path is not None else None
        except OSError:
            return None
        return None if stat is None else (stat.st_mtime_ns, stat.st_size)

    def _reload_if_changed(self) -> None:
        if self._path is None or time.monotonic() - self._checked < _RECHECK_S:
            return
        with self._lock:
            self._checked = time.monotonic()
            stamp = self._file_stamp()
            if stamp == self._stamp:
                return
            self._stamp = stamp
            try:
                self._keys = self._plain + read_key_file(self._path, self._collections)
            except ConfigError as exc:
                logger.error("%s; the keys read before stay in force until the file is fixed", exc)
                return
            logger.info("API keys read again from %s (%d keys)", self._path, len(self._keys))


def add_key(
    path: str | os.PathLike[str],
    name: str,
    collections: Sequence[str] = (),
    tenant: str | None = None,
    filter_text: str | None = None,
) -> str:
    """Make a new key named `name` with this scope, store its hash in the YAML key file `path` (created if need
    be), and return the key: the only time it is seen."""
    entries = _entries_of(path)
    if any(entry.get("name") == name for entry in entries):
        raise ConfigError(f"the API keys file {path} already has a key named '{name}'; remove it first or pick another")
    key = "rag-" + secrets.token_urlsafe(32)
    entry: dict[str, Any] = {"name": name, "sha256": hash_key(key)}
    if collections:
        entry["collections"] = list(collections)
    if tenant is not None:
        entry["tenant"] = tenant
    if filter_text is not None:
        entry["filter"] = filter_text
    _entry(entry, len(entries), path, None)  # the same checks as when the server reads it
    _write_entries(path, [*entries, entry])
    return key


def remove_key(path: str | os.PathLike[str], name: str) -> None:
    """Revoke the key named `name` (a running server stops admitting it within a second)."""
    entries = _entries_of(path)
    kept = [entry for entry in entries if entry.get("name") != name]
    if len(kept) == len(entries):
        raise ConfigError(f"the API keys file {path} has no key named '{name}' (see `rag keys list`)")
    _write_entries(path, kept)


def list_keys(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The entries of a key file without their hashes."""
    return [{k: v for k, v in entry.items() if k != "sha256"} for entry in _entries_of(path)]


def _entries_of(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    if not Path(path).exists():
        return []
    read_key_file(path)  # refuses a file that does not read, before anything is written
    data = _yaml(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ConfigError(
            f"the API keys file {path} lists keys as plain text; `rag keys` writes YAML files: give a new file"
        )
    return list(data.get("keys") or [])


def _write_entries(path: str | os.PathLike[str], entries: list[dict[str, Any]]) -> None:
    """Write the key file aside, readable by its owner only, then rename it into place."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".keys-", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yaml.safe_dump({"keys": entries}, fh, sort_keys=False)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _yaml(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None  # plain keys may hold characters YAML does not take


def _plain(line: str, path: str | os.PathLike[str]) -> ApiKey:
    """A key line: the key itself, or `sha256:HEX`."""
    if line.startswith("sha256:"):
        hexdigest = line.removeprefix("sha256:").lower()
        if not _HEX.match(hexdigest):
            raise ConfigError(f"API keys file {path}: 'sha256:' must be followed by 64 hex digits")
        return ApiKey(f"sha256:{hexdigest[:8]}", bytes.fromhex(hexdigest))
    return ApiKey(f"key-{hash_key(line)[:8]}", bytes.fromhex(hash_key(line)))


def _entry(item: Any, i: int, path: str | os.PathLike[str], collections: Collection[str] | None) -> ApiKey:
    """One entry of a YAML key file, checked."""
    where = f"API keys file {path}, key {i + 1}"
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: an entry is a mapping with name and sha256")
    if extra := set(item) - _ENTRY_FIELDS:
        raise ConfigError(f"{where}: unknown fields {sorted(extra)}; an entry has {sorted(_ENTRY_FIELDS)}")
    name, digest = item.get("name"), str(item.get("sha256", "")).lower()
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}: 'name' must be {_NAME_RULE} (got {name!r})")
    if not _HEX.match(digest):
        raise ConfigError(f"{where} ('{name}'): 'sha256' must be the key's SHA-256 in 64 hex digits")
    scope = item.get("collections")
    if scope is not None and (not isinstance(scope, list) or not all(isinstance(c, str) for c in scope)):
        raise ConfigError(f"{where} ('{name}'): 'collections' must be a list of collection names")
    if scope is not None and collections is not None and (unknown := sorted(set(scope) - set(collections))):
        raise ConfigError(
            f"{where} ('{name}'): no collection named {', '.join(unknown)} is served (collections: "
            f"{', '.join(sorted(collections))}); fix the key's scope or serve that collection"
        )
    tenant = item.get("tenant")
    if tenant is not None and (not isinstance(tenant, str) or not _NAME.match(tenant)):
        raise ConfigError(f"{where} ('{name}'): 'tenant' must be {_NAME_RULE} (got {tenant!r})")
    flt = item.get("filter")
    if flt is not None:
        try:
            flt = parse_filter(flt) if isinstance(flt, str) else Filter.from_dict(flt)
        except ConfigError as exc:
            raise ConfigError(f"{where} ('{name}'): {exc}") from None
    return ApiKey(name, bytes.fromhex(digest), frozenset(scope) if scope is not None else None, tenant, flt)


def _first_repeat(names: list[str]) -> str:
    return next(name for i, name in enumerate(names) if name in names[:i])
