"""Without Ray: `import rag` and the CLI work, and asking for Ray names the extra to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rag.cli import main
from rag.core.errors import MissingDependencyError
from tests.indexing_helpers import make_corpus

EXTRA = "pip install 'rag[ray]'"


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError


def test_modules_import_without_importing_ray() -> None:
    code = (
        "import sys, rag, rag.cli, rag.distributed.ray_engine, rag.distributed.shards, rag.distributed.ray_serve;"
        "print('ray' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.usefixtures("no_ray")
def test_ray_engine_without_ray_names_the_extra(tmp_path: Path) -> None:
    from rag.distributed.ray_engine import RayEngine

    with pytest.raises(MissingDependencyError, match=r"pip install 'rag\[ray\]'"):
        RayEngine()
    make_corpus(tmp_path / "docs")
    runner = CliRunner()
    result = runner.invoke(main, ["index", str(tmp_path / "docs"), "--index-dir", str(tmp_path), "--engine", "ray"])
    assert result.exit_code == 1 and EXTRA in result.stderr
    assert not (tmp_path / "default").exists()  # failed before touching the index
    result = runner.invoke(
        main, ["shard", "index", str(tmp_path / "docs"), "--index-dir", str(tmp_path), "--shards", "2",
               "--pipeline", "dense", "--engine", "ray"],
    )  # fmt: skip
    assert result.exit_code == 1 and EXTRA in result.stderr
    result = runner.invoke(main, ["shard", "query", "x", "--index-dir", str(tmp_path), "--fanout", "ray"])
    assert result.exit_code == 1 and EXTRA in result.stderr
    result = runner.invoke(main, ["serve", "--index-dir", str(tmp_path), "--engine", "ray"])
    assert result.exit_code == 1 and EXTRA in result.stderr


def test_ray_options_need_the_ray_engine(tmp_path: Path) -> None:
    make_corpus(tmp_path / "docs")
    runner = CliRunner()
    result = runner.invoke(main, ["index", str(tmp_path / "docs"), "--index-dir", str(tmp_path), "--address", "auto"])
    assert result.exit_code == 1 and "give --engine ray too" in result.stderr
    result = runner.invoke(main, ["serve", "--index-dir", str(tmp_path), "--address", "auto"])
    assert result.exit_code == 1 and "give --engine ray too" in result.stderr
    result = runner.invoke(main, ["serve", "--index-dir", str(tmp_path), "--engine", "ray", "--autoscale", "4"])
    assert result.exit_code == 1 and "--autoscale must be MIN-MAX" in result.stderr
