"""The default pipeline end to end with the real packaged models (MiniLM, SmolLM2)."""

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from rag.api import RAG
from rag.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOCS = {
    "otters.md": "# Sea otters\n\nSea otters eat sea urchins, crabs and clams. They open shells with stones.",
    "volcano.txt": "Mount Etna is an active volcano on the east coast of Sicily. It erupts several times a year.",
    "bread.md": "# Baking bread\n\nBread dough rises because yeast ferments sugars and releases carbon dioxide gas.",
    "notes/rust.md": "# Rust\n\nRust is a systems programming language: memory safety without garbage collection.",
}


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("default")
    folder = root / "docs"
    for name, text in DOCS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    report = RAG(root / "index", "default").index(folder)
    assert report.added == len(DOCS) and report.failed == 0
    return folder, root / "index"


def test_hybrid_retrieval_finds_the_right_document(indexed: tuple[Path, Path]) -> None:
    _, index = indexed
    rag = RAG(index)
    assert rag.pipeline.name == "default"
    hits = rag.query("What do sea otters eat?", top_k=3)
    assert hits[0].chunk.path == "otters.md"
    # a paraphrase with no shared content words: only the dense retriever can find it
    hits = rag.query("Which island has a mountain that spews lava?", top_k=2)
    assert hits[0].chunk.path == "volcano.txt"


def test_ask_answers_from_the_passages_with_citations(indexed: tuple[Path, Path]) -> None:
    _, index = indexed
    answer = RAG(index).ask("Why does bread dough rise?", top_k=3)
    assert answer.text.strip()
    assert answer.hits and answer.hits[0].chunk.path == "bread.md"
    assert answer.usage["completion_tokens"] > 0 and answer.usage["prompt_tokens"] > 50
    assert all(c.hit is answer.hits[c.n - 1] and c.n > 0 for c in answer.citations)
    assert any(word in answer.text.lower() for word in ("yeast", "carbon", "gas", "ferment"))


def test_cli_ask_json(indexed: tuple[Path, Path]) -> None:
    _, index = indexed
    result = CliRunner().invoke(
        main,
        [
            "ask",
            "What tools do sea otters use?",
            "--index",
            index.name,
            "--index-dir",
            str(index.parent),
            "--passages",
            "2",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) >= {"answer", "citations", "hits"}
    assert data["hits"][0]["source"]["path"] == "otters.md"
    assert all(set(c) == {"n", "id", "source"} for c in data["citations"])


def test_incremental_update_with_real_models(indexed: tuple[Path, Path], tmp_path: Path) -> None:
    folder, _ = indexed
    work_folder, work_index = tmp_path / "docs", tmp_path / "index"
    shutil.copytree(folder, work_folder)
    rag = RAG(work_index, "default")
    rag.index(work_folder)
    (work_folder / "volcano.txt").unlink()
    (work_folder / "notes" / "rust.md").rename(work_folder / "rust-language.md")
    (work_folder / "tea.md").write_text("# Tea\n\nGreen tea leaves are steamed or pan-fired to stop oxidation.")
    report = rag.index(work_folder)
    assert (report.added, report.removed, report.unchanged) == (2, 2, 2)
    assert report.chunks_embedded == 2
    paths = {h.chunk.path for h in rag.query("volcano Sicily lava", top_k=10)}
    assert "volcano.txt" not in paths and "notes/rust.md" not in paths
    assert rag.query("How is green tea processed?", top_k=1)[0].chunk.path == "tea.md"
