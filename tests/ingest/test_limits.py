"""Limits on what one file may expand to (rag.core.limits), each a setting of the pipeline's indexing section."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from rag.core.errors import ConfigError, LoaderError
from rag.core.limits import ReadLimits
from rag.core.pipeline import IndexingSettings
from rag.core.serialization import pipeline_from_dict
from rag.ingest.loaders import load_document


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_json_nested_deeper_than_the_limit_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    deep = write(tmp_path / "deep.json", b"[" * 200_000 + b"]" * 200_000)  # beyond Python's recursion limit
    with pytest.raises(
        LoaderError, match=r"200,000 levels of JSON nesting, over the limit of 100; raise .*indexing.max_depth"
    ):
        load_document(deep, tmp_path)
    brackets_in_strings = write(tmp_path / "strings.json", json.dumps({"text": "[[[[ {{{{ \\" * 50}).encode())
    assert "[[[[" in load_document(brackets_in_strings, tmp_path, ReadLimits(max_depth=1)).text
    line = write(tmp_path / "deep.jsonl", b'{"a": 1}\n' + b"[" * 50 + b"]" * 50 + b"\n")
    with pytest.raises(LoaderError, match="50 levels of JSON nesting on line 2, over the limit of 10"):
        load_document(line, tmp_path, ReadLimits(max_depth=10))


def test_records_over_the_limit_are_refused(tmp_path: Path) -> None:
    array = write(tmp_path / "many.json", json.dumps([{"n": i} for i in range(11)]).encode())
    with pytest.raises(LoaderError, match=r"11 records, over the limit of 10; .*indexing.max_records"):
        load_document(array, tmp_path, ReadLimits(max_records=10))
    assert "n: 10" in load_document(array, tmp_path, ReadLimits(max_records=11)).text
    lines = write(tmp_path / "many.jsonl", b"".join(b'{"n": %d}\n' % i for i in range(11)))
    with pytest.raises(LoaderError, match="11 records, over the limit of 10"):
        load_document(lines, tmp_path, ReadLimits(max_records=10))
    rows = write(tmp_path / "many.csv", b"n\n" + b"".join(b"%d\n" % i for i in range(11)))
    with pytest.raises(LoaderError, match="11 rows, over the limit of 10"):
        load_document(rows, tmp_path, ReadLimits(max_records=10))
    assert "n: 10" in load_document(rows, tmp_path, ReadLimits(max_records=11)).text


def test_pdf_pages_are_counted_before_any_is_read(tmp_path: Path) -> None:
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(5):
        writer.add_blank_page(width=200, height=200)
    buffer = io.BytesIO()
    writer.write(buffer)
    pdf = write(tmp_path / "pages.pdf", buffer.getvalue())
    with pytest.raises(LoaderError, match=r"5 pages, over the limit of 3; .*indexing.max_pages"):
        load_document(pdf, tmp_path, ReadLimits(max_pages=3))
    with pytest.raises(LoaderError, match="no text could be extracted"):  # within the limit: read (and empty)
        load_document(pdf, tmp_path, ReadLimits(max_pages=5))


def test_docx_expansion_limit_is_a_setting(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    for _ in range(170):  # 17 MB of XML (over the 16 MiB floor) that compresses ~1000x
        document.add_paragraph("x" * 100_000)
    document.save(tmp_path / "long.docx")
    path = tmp_path / "long.docx"
    with pytest.raises(LoaderError, match=r"over indexing\.max_expansion 100"):
        load_document(path, tmp_path)
    assert load_document(path, tmp_path, ReadLimits(max_expansion=10_000)).text.count("x") == 17_000_000


def test_limits_are_indexing_settings_checked_when_the_pipeline_is_read() -> None:
    spec = {
        "name": "limits",
        "components": {"bm25": {"type": "BM25Retriever"}},
        "indexing": {"chunker": {"type": "RecursiveChunker"}, "max_pages": 10, "max_depth": 20},
    }
    settings = pipeline_from_dict(spec).indexing
    assert settings is not None
    assert settings.limits() == ReadLimits(max_pages=10, max_depth=20)
    assert settings.to_dict()["max_pages"] == 10
    for bad in (0, -1, "ten", True):
        with pytest.raises(ConfigError, match=r"indexing\.max_records must be a whole number of at least 1"):
            pipeline_from_dict({**spec, "indexing": {**spec["indexing"], "max_records": bad}})
    assert IndexingSettings(settings.chunker).limits() == ReadLimits()
