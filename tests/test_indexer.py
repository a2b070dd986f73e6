import json
import os
from pathlib import Path

import pytest

from rag.api import RAG
from rag.core.errors import IncompatibleIndexError, InputPathError, LoaderError
from rag.indexer import index_folder
from rag.store.index_folder import IndexFolder
from tests.indexing_helpers import ALLOWED, check_consistent, fake_pipeline, make_corpus, paragraph


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    make_corpus(tmp_path / "docs")
    return tmp_path / "docs"


def run(corpus: Path, index: Path, **kwargs):
    pipeline = kwargs.pop("pipeline", None) or fake_pipeline()
    return index_folder(corpus, index, pipeline, **kwargs), pipeline


def test_first_run_indexes_every_file(corpus: Path, tmp_path: Path) -> None:
    report, pipeline = run(corpus, tmp_path / "idx")
    assert report.to_dict()["files"] == {"added": 5, "changed": 0, "removed": 0, "unchanged": 0, "failed": 0}
    assert report.chunks_embedded == report.chunks_total == pipeline.components["vec"].embedded > 5
    store = check_consistent(tmp_path / "idx", {f"doc{i}.md" for i in range(5)})
    chunk = next(iter(store.chunks.values()))
    assert chunk.metadata["title"].startswith("Doc ")
    source = (corpus / chunk.path).read_text()
    assert source[chunk.start : chunk.end] == chunk.text


def test_unchanged_folder_costs_nothing(corpus: Path, tmp_path: Path) -> None:
    run(corpus, tmp_path / "idx")
    generation = IndexFolder(tmp_path / "idx").current()
    report, pipeline = run(corpus, tmp_path / "idx")
    assert report.unchanged == 5 and report.chunks_embedded == 0 and not report.committed
    assert pipeline.components["vec"].embedded == 0
    assert IndexFolder(tmp_path / "idx").current() == generation


def test_touched_file_with_same_content_is_not_reembedded(corpus: Path, tmp_path: Path) -> None:
    run(corpus, tmp_path / "idx")
    os.utime(corpus / "doc1.md", ns=(1, 1))
    report, pipeline = run(corpus, tmp_path / "idx")
    assert report.unchanged == 5 and pipeline.components["vec"].embedded == 0
    # the new modification time was recorded: the next run is a stat check only
    report, _ = run(corpus, tmp_path / "idx")
    assert not report.committed


def test_changed_file_reembeds_only_its_new_chunks(corpus: Path, tmp_path: Path) -> None:
    run(corpus, tmp_path / "idx")
    before = check_consistent(tmp_path / "idx")
    old_ids = set(before.files["doc2.md"].chunk_ids)
    text = (corpus / "doc2.md").read_text()
    (corpus / "doc2.md").write_text(text + "\n\nA brand new closing paragraph about zebras.")
    report, pipeline = run(corpus, tmp_path / "idx")
    assert report.to_dict()["files"] == {"added": 0, "changed": 1, "removed": 0, "unchanged": 4, "failed": 0}
    after = check_consistent(tmp_path / "idx")
    new_ids = set(after.files["doc2.md"].chunk_ids)
    assert pipeline.components["vec"].embedded == report.chunks_embedded == len(new_ids - old_ids) >= 1
    assert old_ids & new_ids, "unchanged chunks keep their ids"
    hits = RAG(tmp_path / "idx", fake_pipeline()).query("zebras", top_k=1)
    assert hits[0].chunk.path == "doc2.md" and "zebras" in hits[0].chunk.text


def test_deleted_file_disappears_from_store_and_retriever(corpus: Path, tmp_path: Path) -> None:
    run(corpus, tmp_path / "idx")
    (corpus / "doc3.md").unlink()
    report, _ = run(corpus, tmp_path / "idx")
    assert report.removed == 1 and report.unchanged == 4
    store = check_consistent(tmp_path / "idx", {f"doc{i}.md" for i in (0, 1, 2, 4)})
    assert all(c.path != "doc3.md" for c in store.chunks.values())
    hits = RAG(tmp_path / "idx", fake_pipeline()).query("topic3 facts", top_k=10)
    assert all(h.chunk.path != "doc3.md" for h in hits)


def test_renamed_file_leaves_no_stale_chunks(corpus: Path, tmp_path: Path) -> None:
    run(corpus, tmp_path / "idx")
    (corpus / "sub").mkdir()
    (corpus / "doc0.md").rename(corpus / "sub" / "moved.md")
    report, _ = run(corpus, tmp_path / "idx")
    assert (report.added, report.removed) == (1, 1)
    store = check_consistent(tmp_path / "idx")
    assert "doc0.md" not in store.files and "sub/moved.md" in store.files
    assert {c.path for c in store.chunks.values()} == set(store.files)


def test_bad_files_are_reported_and_skipped(corpus: Path, tmp_path: Path) -> None:
    (corpus / "empty.txt").write_text("")
    (corpus / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (corpus / "big.txt").write_text("x" * 3000)
    pipeline = fake_pipeline()
    pipeline.indexing = type(pipeline.indexing)(chunker=pipeline.indexing.chunker, max_file_mb=0.002)
    report, _ = run(corpus, tmp_path / "idx", pipeline=pipeline)
    reasons = {f["path"]: f["reason"] for f in report.failures}
    assert report.added == 6 and report.failed == 3  # latin1.txt is read in its own encoding
    assert set(reasons) == {"empty.txt", "broken.pdf", "big.txt"}
    assert "empty" in reasons["empty.txt"] and "max_file_mb" in reasons["big.txt"]
    store = check_consistent(tmp_path / "idx", {f"doc{i}.md" for i in range(5)} | {"latin1.txt"})
    [latin] = [c for c in store.chunks.values() if c.path == "latin1.txt"]
    assert latin.text == "café crème" and latin.metadata["encoding"] == "cp1252"


def test_file_that_becomes_unreadable_loses_its_old_chunks(corpus: Path, tmp_path: Path) -> None:
    run(corpus, tmp_path / "idx")
    (corpus / "doc4.md").write_bytes(b"")  # now empty: nothing to read
    report, _ = run(corpus, tmp_path / "idx")
    assert report.failed == 1 and report.failures[0]["path"] == "doc4.md"
    check_consistent(tmp_path / "idx", {f"doc{i}.md" for i in range(4)})


def test_strict_writes_nothing_when_a_file_fails(corpus: Path, tmp_path: Path) -> None:
    run(corpus, tmp_path / "idx")
    generation = IndexFolder(tmp_path / "idx").current()
    (corpus / "new.md").write_text("new content")
    (corpus / "empty.md").write_text("")
    with pytest.raises(LoaderError, match=r"empty.md.*--strict"):
        run(corpus, tmp_path / "idx", strict=True)
    assert IndexFolder(tmp_path / "idx").current() == generation


def test_other_retriever_settings_are_refused_and_nothing_is_overwritten(corpus: Path, tmp_path: Path) -> None:
    run(corpus, tmp_path / "idx")
    generation = IndexFolder(tmp_path / "idx").current()
    with pytest.raises(
        IncompatibleIndexError, match=r"retrievers.vec.dim=64 but the pipeline has retrievers.vec.dim=32.*--rebuild"
    ):
        run(corpus, tmp_path / "idx", pipeline=fake_pipeline(dim=32))
    assert IndexFolder(tmp_path / "idx").current() == generation
    with pytest.raises(IncompatibleIndexError, match=r"chunk_size=120 but the pipeline has .*chunk_size=80"):
        run(corpus, tmp_path / "idx", pipeline=fake_pipeline(chunk_size=80))
    report, _ = run(corpus, tmp_path / "idx", pipeline=fake_pipeline(dim=32), rebuild=True)
    assert report.added == 5
    assert RAG(tmp_path / "idx", allowed=ALLOWED).pipeline.components["vec"].settings["dim"] == 32


def test_query_time_settings_may_differ(corpus: Path, tmp_path: Path) -> None:
    run(corpus, tmp_path / "idx")
    pipeline = fake_pipeline()
    pipeline.components["vec"].top_k = 2
    assert len(RAG(tmp_path / "idx", pipeline).query("facts")) == 2


def test_index_mirrors_one_folder(corpus: Path, tmp_path: Path) -> None:
    run(corpus, tmp_path / "idx")
    make_corpus(tmp_path / "other", 2)
    with pytest.raises(IncompatibleIndexError, match=r"mirrors the folder .*docs"):
        run(tmp_path / "other", tmp_path / "idx")


def test_index_from_another_format_version_is_refused(corpus: Path, tmp_path: Path) -> None:
    run(corpus, tmp_path / "idx")
    manifest = IndexFolder(tmp_path / "idx").current() / "manifest.json"
    data = json.loads(manifest.read_text())
    data["format_version"] = 99
    manifest.write_text(json.dumps(data))
    with pytest.raises(IncompatibleIndexError, match=r"format version 99.*--rebuild"):
        run(corpus, tmp_path / "idx")
    with pytest.raises(IncompatibleIndexError, match=r"format version 99"):
        RAG(tmp_path / "idx").query("x")


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputPathError, match=r"nope': it is not an existing folder"):
        run(tmp_path / "nope", tmp_path / "idx")
    assert not (tmp_path / "idx").exists()


def test_stored_pipeline_is_used_when_none_is_given(corpus: Path, tmp_path: Path) -> None:
    run(corpus, tmp_path / "idx", pipeline=fake_pipeline(dim=256))
    rag = RAG(tmp_path / "idx", allowed=["tests.fakes.HashRetriever"])
    assert rag.pipeline.components["vec"].settings["dim"] == 256
    assert rag.query("topic1 facts", top_k=1)[0].chunk.path == "doc1.md"


def test_query_after_reindex_sees_the_new_generation(corpus: Path, tmp_path: Path) -> None:
    rag = RAG(tmp_path / "idx", fake_pipeline())
    rag.index(corpus)
    assert rag.query("walrus", top_k=1)[0].chunk.path != "walrus.md"
    (corpus / "walrus.md").write_text(paragraph("walrus"))
    rag.index(corpus)
    assert rag.query("walrus", top_k=1)[0].chunk.path == "walrus.md"


def test_links_out_of_the_folder_are_reported_and_never_indexed(corpus: Path, tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("the launch code is swordfish")
    (corpus / "secret-link.txt").symlink_to(secret)
    (corpus / "passwd.txt").symlink_to("/etc/passwd")
    report, _ = run(corpus, tmp_path / "index")
    skipped = {entry["path"]: entry["reason"] for entry in report.skipped}
    assert set(skipped) == {"secret-link.txt", "passwd.txt"} and "outside the indexed folder" in skipped["passwd.txt"]
    assert report.to_dict()["skipped"] == report.skipped and report.failed == 0
    rag = RAG(tmp_path / "index", allowed=ALLOWED)
    texts = [hit.chunk.text for hit in rag.query("launch code swordfish root", top_k=50)]
    assert not any("swordfish" in text or "root:" in text for text in texts)


def test_a_file_rewritten_between_hashing_and_reading_is_never_left_stale(corpus: Path, tmp_path: Path) -> None:
    from rag.indexer import LocalEngine

    class RewritingEngine(LocalEngine):
        """Rewrites every file it is asked to read just before reading it (a writer racing the indexer)."""

        def read(self, root, files, settings, progress):
            for file in files:
                file.path.write_text("# Doc\n\nrewritten mid-run: brand new zebra words here")
            yield from super().read(root, files, settings, progress)

    index = tmp_path / "index"
    run(corpus, index)
    doc = corpus / "doc0.md"
    doc.write_text("# Doc\n\nthe second version of this file, about giraffes")
    pipeline = fake_pipeline()
    index_folder(corpus, index, pipeline, engine=RewritingEngine())  # hashed v2, read the rewrite
    doc.write_text("# Doc\n\nthe second version of this file, about giraffes")  # back to v2
    report = index_folder(corpus, index, pipeline)
    assert report.changed == 1  # the record holds the hash of what was read, so v2 differs from it
    store = check_consistent(index, {f"doc{i}.md" for i in range(5)})
    texts = [c.text for c in store.chunks.values() if c.path == "doc0.md"]
    assert any("giraffes" in t for t in texts) and not any("zebra" in t for t in texts)
