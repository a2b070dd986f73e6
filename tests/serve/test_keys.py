"""Scoped API keys: the key file (hashes only), `rag keys`, scopes checked at start-up, and reloading."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from rag.cli import main
from rag.core.errors import ConfigError
from rag.core.filters import Filter
from rag.serve import keys as keys_module
from rag.serve.keys import KeyRing, add_key, hash_key, list_keys, read_key_file, remove_key
from rag.serve.settings import CollectionSettings, ServerSettings
from tests.serve.fakes import answer_pipeline
from tests.serve.helpers import assert_envelope, build_index, serving


def test_the_key_file_holds_hashes_and_scopes_never_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    key = add_key(path, "acme", ["shared"], tenant="acme", filter_text="type == md")
    text = path.read_text()
    assert key not in text and hash_key(key) in text and oct(path.stat().st_mode & 0o777) == "0o600"
    [read] = read_key_file(path, {"shared"})
    assert read.name == "acme" and read.collections == frozenset({"shared"}) and read.tenant == "acme"
    assert read.scope() == Filter("and", children=(Filter("==", "tenant", "acme"), Filter("==", "type", "md")))
    assert list_keys(path) == [{"name": "acme", "collections": ["shared"], "tenant": "acme", "filter": "type == md"}]
    with pytest.raises(ConfigError, match="already has a key named 'acme'"):
        add_key(path, "acme")
    remove_key(path, "acme")
    assert list_keys(path) == []
    with pytest.raises(ConfigError, match="no key named 'acme'"):
        remove_key(path, "acme")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "a", "sha256": "abc"}, "64 hex digits"),
        ({"name": "a b", "sha256": "0" * 64}, "'name' must be"),
        ({"name": "a", "sha256": "0" * 64, "collections": "shared"}, "list of collection names"),
        ({"name": "a", "sha256": "0" * 64, "collections": ["elsewhere"]}, "no collection named elsewhere"),
        ({"name": "a", "sha256": "0" * 64, "tenant": "../b"}, "'tenant' must be"),
        ({"name": "a", "sha256": "0" * 64, "filter": "type =="}, r"key 1 \('a'\): filter"),
        ({"name": "a", "sha256": "0" * 64, "role": "admin"}, "unknown fields"),
    ],
)
def test_a_bad_entry_is_named_with_its_fix(tmp_path: Path, entry: dict[str, object], message: str) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text(yaml.safe_dump({"keys": [entry]}))
    with pytest.raises(ConfigError, match=message):
        read_key_file(path, {"shared"})


def test_plain_and_hashed_lines(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text(f"# keys\nplain-key\nsha256:{hash_key('hashed-key')}\n")
    ring = KeyRing((), path)
    assert ring.find("plain-key") is not None and ring.find("hashed-key") is not None
    assert ring.find("sha256:" + hash_key("hashed-key")) is None


def test_the_ring_reads_the_file_again_and_keeps_the_last_good_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keys_module, "_RECHECK_S", 0.0)
    path = tmp_path / "keys.yaml"
    first = add_key(path, "first")
    ring = KeyRing((), path)
    second = add_key(path, "second")
    assert ring.find(first) is not None and ring.find(second) is not None
    remove_key(path, "first")
    assert ring.find(first) is None
    path.write_text("keys: [{name: broken}]")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert ring.find(second) is not None  # a broken file is logged; the keys read before stay


def test_a_served_key_file_changes_take_effect_without_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keys_module, "_RECHECK_S", 0.0)
    index = build_index(tmp_path, answer_pipeline())
    path = tmp_path / "keys.yaml"
    old = add_key(path, "old")
    with serving(index, answer_pipeline(), api_keys_file=str(path)) as client:
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {old}"}).status_code == 200
        new = add_key(path, "new")
        remove_key(path, "old")
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {new}"}).status_code == 200
        assert_envelope(client.get("/v1/models", headers={"Authorization": f"Bearer {old}"}), 403)


def test_a_scope_naming_an_unknown_collection_is_refused_at_start_up(tmp_path: Path) -> None:
    index = build_index(tmp_path, answer_pipeline())
    path = tmp_path / "keys.yaml"
    add_key(path, "lost", ["elsewhere"])
    settings = ServerSettings(
        collections=(CollectionSettings("docs", index, (answer_pipeline(),)),), api_keys_file=str(path)
    )
    from rag.serve.app import create_app

    with pytest.raises(ConfigError, match="no collection named elsewhere is served"):
        create_app(settings)


def test_rag_keys_commands(tmp_path: Path) -> None:
    path = str(tmp_path / "keys.yaml")
    runner = CliRunner()
    added = runner.invoke(main, ["keys", "add", "acme", "--file", path, "--tenant", "acme"])
    assert added.exit_code == 0, added.output
    key = added.stdout.strip().splitlines()[0]
    assert key.startswith("rag-") and KeyRing((), path).find(key) is not None
    listed = runner.invoke(main, ["keys", "list", "--file", path])
    assert listed.exit_code == 0 and '"tenant": "acme"' in listed.output and key not in listed.output
    bad = runner.invoke(main, ["keys", "add", "x", "--file", path, "--tenant", "a/b"])
    assert bad.exit_code == 1 and "'tenant' must be" in bad.output
    assert runner.invoke(main, ["keys", "remove", "acme", "--file", path]).exit_code == 0
