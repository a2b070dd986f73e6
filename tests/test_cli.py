"""The CLI through click's runner (in process) and once as a real subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from rag.cli import main
from rag.core.serialization import dump_pipeline, loads_pipeline
from tests.indexing_helpers import ALLOWED, fake_pipeline, make_corpus


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, str]:
    make_corpus(tmp_path / "docs", 4)
    pipeline_file = tmp_path / "fake.yaml"
    pipeline_file.write_text(dump_pipeline(fake_pipeline()))
    return {"docs": str(tmp_path / "docs"), "pipeline": str(pipeline_file), "dir": str(tmp_path / "indexes")}


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def index(setup: dict[str, str], *extra: str) -> tuple[int, str, str]:
    return cli(
        "index",
        setup["docs"],
        "--index-dir",
        setup["dir"],
        "--pipeline",
        setup["pipeline"],
        "--allow",
        ALLOWED[0],
        *extra,
    )


def test_index_json_report(setup: dict[str, str]) -> None:
    code, out, _ = index(setup, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["files"] == {"added": 4, "changed": 0, "removed": 0, "unchanged": 0, "failed": 0}
    assert data["failures"] == [] and data["chunks"]["total"] == data["chunks"]["embedded"] > 0
    assert isinstance(data["seconds"], float)
    assert (Path(setup["dir"]) / "default" / "CURRENT").exists()
    code, out, _ = index(setup, "--json")
    assert json.loads(out)["files"]["unchanged"] == 4 and json.loads(out)["chunks"]["embedded"] == 0


def test_index_human_report_lists_skipped_files(setup: dict[str, str]) -> None:
    (Path(setup["docs"]) / "empty.txt").write_text("")
    code, out, err = index(setup)
    assert code == 0
    assert "added" in out and "4" in out
    assert "skipped empty.txt: empty file" in err


def test_failures_exit_zero_unless_nothing_was_indexed_or_strict(setup: dict[str, str]) -> None:
    (Path(setup["docs"]) / "empty.txt").write_text("")
    code, out, _ = index(setup, "--strict", "--json")
    assert code == 1 and "--strict" in json.loads(out)["error"]["message"]
    assert not (Path(setup["dir"]) / "default" / "CURRENT").exists()
    for f in Path(setup["docs"]).glob("*.md"):
        f.write_text("")
    code, out, err = index(setup, "--json")
    assert code == 1 and json.loads(out)["files"]["failed"] == 5
    assert "no file could be indexed" in err


def test_query_json(setup: dict[str, str]) -> None:
    index(setup)
    code, out, _ = cli(
        "query", "topic2 facts", "--index-dir", setup["dir"], "--allow", ALLOWED[0], "--top-k", "2", "--json"
    )
    assert code == 0
    hits = json.loads(out)["hits"]
    assert len(hits) == 2 and set(hits[0]) == {"id", "score", "text", "source"}
    assert hits[0]["source"]["path"] == "doc2.md" and "topic2" in hits[0]["text"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["index", "/no/such/folder"], "not an existing folder"),
        (["query", "x", "--index", "missing"], "no index at"),
        (["index", ".", "--pipeline", "nope"], "no pipeline 'nope'"),
        (["pipeline", "show", "nope"], "no pipeline 'nope'"),
        (["index", ".", "--index", "../../x"], "--index takes an index name"),
        (["query", "x", "--index", "a/b"], "--index takes an index name"),
        (["query", "  ", "--index", "missing"], "the query is empty"),
    ],
)
def test_errors_are_one_line_and_exit_nonzero(args: list[str], message: str, tmp_path: Path) -> None:
    code, out, err = cli(*args, "--index-dir", str(tmp_path)) if args[0] != "pipeline" else cli(*args)
    assert code == 1 and out == ""
    assert message in err and err.strip().count("\n") == 0 and "Traceback" not in err


def test_malformed_pipeline_file_overwrites_nothing(setup: dict[str, str], tmp_path: Path) -> None:
    index(setup)
    current = (Path(setup["dir"]) / "default" / "CURRENT").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text("components:\n  vec: {type: HashRetriver}\n")
    code, _, err = cli("index", setup["docs"], "--index-dir", setup["dir"], "--pipeline", str(bad))
    assert code == 1 and "bad.yaml: components.vec: unknown component type 'HashRetriver'" in err
    assert (Path(setup["dir"]) / "default" / "CURRENT").read_text() == current


def test_pipelines_list_and_show() -> None:
    code, out, _ = cli("pipelines")
    names = [line.split()[0] for line in out.splitlines()]
    assert code == 0 and {"default", "bm25", "hybrid", "dense", "colbert", "hybrid-rerank"} <= set(names)
    code, out, _ = cli("pipeline", "show", "default")
    assert code == 0 and loads_pipeline(out).name == "default"
    fusion = yaml.safe_load(out)["components"]["fusion"]
    assert fusion["type"] == "ScoreFusion" and fusion["init"]["weights"] == "auto"  # shown as written, to load back


def test_json_mode_prints_exactly_one_document_from_the_real_command(setup: dict[str, str]) -> None:
    root = Path(__file__).resolve().parents[1]
    command = [str(Path(sys.executable).with_name("rag"))]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [
            *command,
            "index",
            setup["docs"],
            "--index-dir",
            setup["dir"],
            "--pipeline",
            setup["pipeline"],
            "--allow",
            ALLOWED[0],
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["files"]["added"] == 4


def test_paths_and_text_print_as_they_are_not_as_markup_or_emoji(setup: dict[str, str]) -> None:
    docs = Path(setup["docs"])
    (docs / "notes[").mkdir()
    (docs / "notes[" / "x].md").write_text("marker words root:x:0:0 in the passwd style")
    (docs / "[red]red.md").write_text("marker words in red")
    (docs / "esc\x1b[31m.md").write_text("marker words with an escape")
    index(setup)
    code, out, _ = cli("query", "marker words", "--index-dir", setup["dir"], "--allow", ALLOWED[0], "--top-k", "5")
    assert code == 0
    assert "notes[/x].md" in out and "[red]red.md" in out and "root:x:0:0" in out
    assert "\x1b" not in out and "esc\\x1b[31m.md" in out


def test_a_damaged_pdf_is_one_line_of_the_report(setup: dict[str, str]) -> None:
    import subprocess
    import sys

    truncated = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n"
    (Path(setup["docs"]) / "broken.pdf").write_bytes(truncated)  # pypdf warns "EOF marker not found" itself
    args = ["index", setup["docs"], "--index-dir", setup["dir"], "--pipeline", setup["pipeline"], "--allow", ALLOWED[0]]
    # a real process: under pytest, logging is captured and pypdf's stray warning would not show
    done = subprocess.run(
        [sys.executable, "-c", "from rag.cli import main; main()", *args], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "pdf" in line.lower() or "EOF" in line]
    assert len(lines) == 1 and lines[0].startswith("skipped broken.pdf: corrupt PDF")
