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


def test_ask_quotes_the_passage_and_cites_its_span(indexed: tuple[Path, Path]) -> None:
    folder, index = indexed
    answer = RAG(index).ask("Why does bread dough rise?", top_k=3)
    assert answer.mode == "extractive" and not answer.abstained
    assert answer.text == "Bread dough rises because yeast ferments sugars and releases carbon dioxide gas [1]."
    assert answer.usage.get("completion_tokens", 0) == 0  # nothing generated
    [citation] = answer.citations
    assert citation.hit is answer.hits[citation.n - 1] and citation.hit.chunk.path == "bread.md"
    document = (folder / "bread.md").read_text()
    assert document[citation.start : citation.end] == answer.text.replace(" [1].", ".")


def test_ask_abstains_when_the_documents_do_not_answer(indexed: tuple[Path, Path]) -> None:
    _, index = indexed
    answer = RAG(index).ask("Who painted the Mona Lisa?", top_k=3)
    assert answer.abstained and answer.citations == [] and answer.text.startswith("I don't know")
    assert answer.answerability is not None and answer.answerability < 0.4


def test_generate_and_grounded_modes_run_smollm2(indexed: tuple[Path, Path]) -> None:
    _, index = indexed
    rag = RAG(index)
    generated = rag.ask("Why does bread dough rise?", top_k=3, answer_mode="generate", decoding={"max_tokens": 24})
    assert generated.mode == "generate" and generated.usage["completion_tokens"] > 0
    assert all(c.hit is generated.hits[c.n - 1] for c in generated.citations)
    grounded = rag.ask("Why does bread dough rise?", top_k=3, answer_mode="grounded", decoding={"max_tokens": 24})
    assert grounded.mode in ("grounded", "extractive") and grounded.usage["completion_tokens"] > 0
    assert all(claim.supported for claim in grounded.claims)  # what is left was checked
    assert all(c.claim is not None and c.start is not None for c in grounded.citations)


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
    assert all(set(c) >= {"n", "id", "source", "claim", "span"} for c in data["citations"])
    assert data["mode"] == "extractive" and data["abstained"] is False


def test_cli_says_when_the_documents_do_not_answer(indexed: tuple[Path, Path]) -> None:
    _, index = indexed
    args = ["ask", "Who painted the Mona Lisa?", "--index", index.name, "--index-dir", str(index.parent)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("I don't know")
    assert "No answer: the passages retrieved do not answer" in result.stdout
    data = json.loads(CliRunner().invoke(main, [*args, "--json"]).stdout)
    assert data["abstained"] is True and data["citations"] == []


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
