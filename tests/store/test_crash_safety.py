"""SIGKILL an indexing process at many moments; the previous index must stay loadable."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag.api import RAG
from rag.core.errors import IndexLockedError
from rag.indexer import index_folder
from rag.store.index_folder import IndexFolder
from tests.indexing_helpers import check_consistent, fake_pipeline, make_corpus, paragraph

ROOT = Path(__file__).resolve().parents[2]
WORKER = """
import sys
from tests.indexing_helpers import fake_pipeline
from rag.indexer import index_folder
index_folder(sys.argv[1], sys.argv[2], fake_pipeline(delay=float(sys.argv[3])), wait=float(sys.argv[4]))
print("done", flush=True)
"""
HOLDER = """
import sys, time
from rag.store.index_folder import IndexFolder
with IndexFolder(sys.argv[1]).lock():
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def start(code: str, *args: object) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )


def mutate(corpus: Path, round_: int) -> set[str]:
    """Change, add and delete files; returns the files that should end up indexed."""
    (corpus / f"doc{round_ % 20}.md").write_text(paragraph(f"changed{round_}", 4))
    (corpus / f"new{round_}.md").write_text(paragraph(f"new{round_}", 4))
    victim = corpus / f"new{round_ - 1}.md"
    if victim.exists():
        victim.unlink()
    return {p.name for p in corpus.iterdir()}


@pytest.mark.slow
def test_sigkill_at_any_moment_leaves_a_loadable_index(tmp_path: Path) -> None:
    corpus, index = tmp_path / "docs", tmp_path / "idx"
    make_corpus(corpus, 20)
    index_folder(corpus, index, fake_pipeline())
    # how long one update takes, measured on a copy
    shutil.copytree(index, tmp_path / "probe")
    mutate(corpus, 0)
    began = time.perf_counter()
    probe = start(WORKER, corpus, tmp_path / "probe", 0.01, 0)
    assert probe.wait(60) == 0
    duration = time.perf_counter() - began
    killed_mid_run = 0
    for round_, fraction in enumerate((0.3, 0.5, 0.65, 0.8, 0.9, 0.95, 0.99), start=1):
        expected = mutate(corpus, round_)
        before = IndexFolder(index).current()
        worker = start(WORKER, corpus, index, 0.01, 0)
        time.sleep(duration * fraction)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        killed_mid_run += worker.returncode == -signal.SIGKILL
        after = IndexFolder(index).current()
        assert after is not None and after in {before, before.with_name(f"gen-{int(before.name[4:]) + 1:06d}")}
        check_consistent(index)  # whichever generation is live is whole
        assert RAG(index, fake_pipeline()).query("facts", top_k=3)
    assert killed_mid_run >= 4, "the kills should land while indexing runs"
    report = index_folder(corpus, index, fake_pipeline())
    assert report.failed == 0
    check_consistent(index, expected)
    leftovers = [p.name for p in index.iterdir() if p.name.startswith(("tmp-", "gen-"))]
    assert len(leftovers) <= 2 and not any(n.startswith("tmp-") for n in leftovers)


@pytest.mark.parametrize("fail_at", ["rename", "replace"])
def test_crash_during_commit_keeps_previous_generation(tmp_path: Path, monkeypatch, fail_at: str) -> None:
    corpus, index = tmp_path / "docs", tmp_path / "idx"
    make_corpus(corpus, 3)
    index_folder(corpus, index, fake_pipeline())
    before = IndexFolder(index).current()
    (corpus / "extra.md").write_text("an extra file about otters")

    def crash(*args: object) -> None:
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(os, fail_at, crash)
    with pytest.raises(KeyboardInterrupt):
        index_folder(corpus, index, fake_pipeline())
    monkeypatch.undo()
    assert IndexFolder(index).current() == before
    check_consistent(index, {f"doc{i}.md" for i in range(3)})
    index_folder(corpus, index, fake_pipeline())
    check_consistent(index, {f"doc{i}.md" for i in range(3)} | {"extra.md"})


def test_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path: Path) -> None:
    corpus, index = tmp_path / "docs", tmp_path / "idx"
    make_corpus(corpus, 3)
    holder = start(HOLDER, index, 60)
    assert holder.stdout.readline().strip() == "locked"
    try:
        with pytest.raises(IndexLockedError, match=r"being updated by another process.*--wait"):
            index_folder(corpus, index, fake_pipeline())
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    # a killed holder releases the lock
    assert index_folder(corpus, index, fake_pipeline()).added == 3


def test_second_writer_can_wait_for_the_first(tmp_path: Path) -> None:
    corpus, index = tmp_path / "docs", tmp_path / "idx"
    make_corpus(corpus, 3)
    holder = start(HOLDER, index, 1.0)
    assert holder.stdout.readline().strip() == "locked"
    report = index_folder(corpus, index, fake_pipeline(), wait=30)
    holder.wait(10)
    assert report.added == 3
    check_consistent(index)
