"""Tests of the loaders, with real files of every format created in tmp_path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import docx
import pytest
from fpdf import FPDF

from rag.core.errors import LoaderError
from rag.core.limits import ReadLimits
from rag.ingest.loaders import LOADERS, load_document, supported_extensions
from rag.ingest.walk import is_binary


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def _make_pdf(path: Path, pages: list[str], title: str | None = None) -> Path:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.cell(text=text)
    if title:
        pdf.set_title(title)
    pdf.output(str(path))
    return path


def test_registry_lists_the_formats() -> None:
    for ext in (".txt", ".md", ".rst", ".html", ".pdf", ".docx", ".json", ".jsonl", ".csv", ".py"):
        assert ext in LOADERS
    assert supported_extensions() == sorted(LOADERS)


def test_plain_text_path_and_metadata(tmp_path: Path) -> None:
    path = _write(tmp_path / "sub" / "notes.txt", "line one\nline two\n")
    doc = load_document(path, tmp_path)
    assert doc.path == "sub/notes.txt"
    assert doc.text == "line one\nline two\n"
    assert doc.metadata["title"] == "notes"
    assert doc.metadata["size"] == path.stat().st_size
    assert doc.metadata["mtime"] == pytest.approx(path.stat().st_mtime)
    assert isinstance(doc.metadata["mtime"], float)


def test_unknown_extension_is_plain_text(tmp_path: Path) -> None:
    doc = load_document(_write(tmp_path / "README", "plain words"), tmp_path)
    assert doc.text == "plain words"
    assert doc.metadata["title"] == "README"


def test_markdown_title_is_first_h1_outside_code(tmp_path: Path) -> None:
    text = "Intro\n\n```sh\n# not a title\n```\n\n## Sub\n\n# Real Title #\n\nBody\n"
    doc = load_document(_write(tmp_path / "a.md", text), tmp_path)
    assert doc.text == text
    assert doc.metadata["title"] == "Real Title"
    assert doc.metadata["format"] == "markdown"


def test_rst_title_is_first_underlined_heading(tmp_path: Path) -> None:
    text = ".. comment\n\n=========\nUser Guide\n==========\n\nIntro\n-----\n"
    doc = load_document(_write(tmp_path / "guide.rst", text), tmp_path)
    assert doc.metadata["title"] == "User Guide"


def test_utf8_bom_and_utf16_are_decoded(tmp_path: Path) -> None:
    bom = load_document(_write(tmp_path / "bom.txt", "\ufeffcafé".encode()), tmp_path)
    assert bom.text == "café"
    utf16 = load_document(_write(tmp_path / "u16.txt", "naïve text".encode("utf-16")), tmp_path)
    assert utf16.text == "naïve text"


def test_html_drops_scripts_and_keeps_blocks(tmp_path: Path) -> None:
    html = (
        "<html><head><title> Page  Title </title><style>p {color: red}</style></head><body>"
        "<script>var secret = 1;</script><h1>Heading</h1><p>Hello <b>bold</b> world.</p>"
        "<ul><li>one</li><li>two</li></ul><table><tr><th>k</th><th>v</th></tr>"
        "<tr><td>a</td><td>1</td></tr></table><!-- comment --></body></html>"
    )
    doc = load_document(_write(tmp_path / "page.html", html), tmp_path)
    assert doc.metadata["title"] == "Page Title"
    assert doc.text == "Heading\n\nHello bold world.\n\none\ntwo\n\nk | v\na | 1"
    assert "secret" not in doc.text and "color" not in doc.text and "comment" not in doc.text


def test_html_title_falls_back_to_h1(tmp_path: Path) -> None:
    doc = load_document(_write(tmp_path / "p.htm", "<h1>Only <i>H1</i></h1><p>x</p>"), tmp_path)
    assert doc.metadata["title"] == "Only H1"


def test_pdf_pages_and_page_starts(tmp_path: Path) -> None:
    path = _make_pdf(tmp_path / "report.pdf", ["Alpha first page", "Beta second page", "Gamma third"])
    doc = load_document(path, tmp_path)
    assert doc.text == "Alpha first page\n\nBeta second page\n\nGamma third"
    starts = doc.metadata["page_starts"]
    assert starts == [0, 18, 36]
    assert [doc.text[start:].split("\n")[0] for start in starts] == [
        "Alpha first page",
        "Beta second page",
        "Gamma third",
    ]
    assert doc.metadata["pages"] == 3
    assert doc.metadata["title"] == "Alpha first page"
    assert doc.metadata["format"] == "pdf"


def test_pdf_title_from_metadata(tmp_path: Path) -> None:
    path = _make_pdf(tmp_path / "t.pdf", ["Body text"], title="Annual Report")
    assert load_document(path, tmp_path).metadata["title"] == "Annual Report"


def test_pdf_without_text_layer(tmp_path: Path) -> None:
    path = _make_pdf(tmp_path / "scan.pdf", ["", ""])
    with pytest.raises(LoaderError, match=r"no text could be extracted.*OCR"):
        load_document(path, tmp_path)


def test_docx_paragraphs_tables_and_title(tmp_path: Path) -> None:
    document = docx.Document()
    document.add_heading("Quarterly Plan", level=1)
    document.add_paragraph("First paragraph.")
    table = document.add_table(rows=2, cols=2)
    for (r, c), value in {(0, 0): "name", (0, 1): "qty", (1, 0): "bolts", (1, 1): "40"}.items():
        table.cell(r, c).text = value
    document.add_paragraph("After the table.")
    document.save(tmp_path / "plan.docx")
    doc = load_document(tmp_path / "plan.docx", tmp_path)
    assert doc.text == "Quarterly Plan\n\nFirst paragraph.\n\nname | qty\nbolts | 40\n\nAfter the table."
    assert doc.metadata["title"] == "Quarterly Plan"

    document.core_properties.title = "Official Title"
    document.save(tmp_path / "titled.docx")
    assert load_document(tmp_path / "titled.docx", tmp_path).metadata["title"] == "Official Title"


def test_json_rendering(tmp_path: Path) -> None:
    data = {"name": "x", "author": {"name": "Ada", "age": 36}, "tags": ["a", "b"], "refs": [{"id": 1}]}
    doc = load_document(_write(tmp_path / "d.json", json.dumps(data)), tmp_path)
    assert doc.text == "name: x\nauthor.name: Ada\nauthor.age: 36\ntags: a, b\nrefs[0].id: 1"


def test_json_top_level_array_is_one_paragraph_per_item(tmp_path: Path) -> None:
    doc = load_document(_write(tmp_path / "l.json", '[{"a": 1}, {"a": 2, "b": null}]'), tmp_path)
    assert doc.text == "a: 1\n\na: 2\nb: null"


def test_jsonl_one_paragraph_per_record(tmp_path: Path) -> None:
    doc = load_document(_write(tmp_path / "r.jsonl", '{"q": "hi"}\n\n{"q": "yo", "m": {"ok": true}}\n'), tmp_path)
    assert doc.text == "q: hi\n\nq: yo\nm.ok: true"


def test_csv_rows_as_column_value_paragraphs(tmp_path: Path) -> None:
    path = _write(tmp_path / "people.csv", 'name,city\nAda,London\n"Bob, Jr",\n')
    doc = load_document(path, tmp_path)
    assert doc.text == "columns: name, city\n\nname: Ada\ncity: London\n\nname: Bob, Jr"


def test_semicolon_csv_is_sniffed(tmp_path: Path) -> None:
    doc = load_document(_write(tmp_path / "s.csv", "a;b\n1;2\n3;4\n"), tmp_path)
    assert doc.text == "columns: a, b\n\na: 1\nb: 2\n\na: 3\nb: 4"


def test_python_file_has_language(tmp_path: Path) -> None:
    source = "def f():\n    return 1\n"
    doc = load_document(_write(tmp_path / "m.py", source), tmp_path)
    assert doc.text == source
    assert doc.metadata["language"] == "python"
    assert load_document(_write(tmp_path / "c.yml", "a: 1\n"), tmp_path).metadata["language"] == "yaml"


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.txt", b"", "empty file"),
        ("blank.md", b"  \n\n", "no text could be extracted"),
        ("bad.pdf", os.urandom(64) + b"not a pdf", "corrupt PDF"),
        ("bad.docx", b"PK\x03\x04 definitely not a zip", "corrupt DOCX"),
        ("bad.json", b'{"a": 1,', "malformed JSON: .* line 1 column 9"),
        ("bad.jsonl", b'{"a": 1}\n{oops}\n', "malformed JSON on line 2"),
        ("nul.dat", b"abc\0def", "binary file"),
        ("tags.html", b"<script>only()</script>", "no text could be extracted"),
    ],
)
def test_bad_files_raise_loader_error(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = _write(tmp_path / name, content)
    with pytest.raises(LoaderError, match=reason) as info:
        load_document(path, tmp_path)
    assert name in str(info.value)


def test_too_large_names_size_limit_and_setting(tmp_path: Path) -> None:
    path = _write(tmp_path / "big.txt", "x" * 2000)
    with pytest.raises(LoaderError, match=r"2,000 bytes.*limit of 1,000 bytes.*indexing\.max_file_mb"):
        load_document(path, tmp_path, ReadLimits(max_bytes=1000))
    assert load_document(path, tmp_path, ReadLimits(max_bytes=None)).text == "x" * 2000


def test_permission_error_becomes_loader_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "locked.txt", "secret")

    real_open = open

    def deny(file: object, *args: object, **kwargs: object) -> object:
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", deny)
    with pytest.raises(LoaderError, match="cannot read: Permission denied"):
        load_document(path, tmp_path)


def test_unexpected_parser_exception_becomes_loader_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(data: bytes, path: Path, limits: ReadLimits) -> tuple[str, dict]:
        raise RuntimeError("parser blew up")

    monkeypatch.setitem(LOADERS, ".txt", explode)
    with pytest.raises(LoaderError, match="parser blew up"):
        load_document(_write(tmp_path / "a.txt", "x"), tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read files whatever their mode")
def test_unreadable_file_really_chmodded(tmp_path: Path) -> None:
    path = _write(tmp_path / "locked.txt", "secret")
    path.chmod(0)
    try:
        with pytest.raises(LoaderError, match="cannot read"):
            load_document(path, tmp_path)
    finally:
        path.chmod(0o644)


def test_the_document_carries_the_hash_of_the_bytes_it_was_parsed_from(tmp_path: Path) -> None:
    import hashlib

    path = _write(tmp_path / "a.md", "# Title\n\nsome words")
    document = load_document(path, tmp_path)
    assert document.metadata["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert document.metadata["size"] == len(path.read_bytes())


@pytest.mark.parametrize(
    ("content", "text", "encoding"),
    [
        ("café crème brûlée".encode("cp1252"), "café crème brûlée", "cp1252"),
        ("Grüße aus Köln".encode("latin-1"), "Grüße aus Köln", None),  # a code page that reads it the same
        ("plain words in UTF-16".encode("utf-16-le"), "plain words in UTF-16", "utf-16-le"),
        ("plain words in UTF-16".encode("utf-16-be"), "plain words in UTF-16", "utf-16-be"),
        ("ümlaut".encode("utf-16"), "ümlaut", "utf-16"),
    ],
)
def test_text_in_other_encodings_is_read_and_the_encoding_recorded(
    tmp_path: Path, content: bytes, text: str, encoding: str | None
) -> None:
    document = load_document(_write(tmp_path / "legacy.txt", content), tmp_path)
    assert document.text == text
    assert document.metadata["encoding"] != "utf-8"
    if encoding is not None:
        assert document.metadata["encoding"] == encoding
    assert not is_binary(tmp_path / "legacy.txt")  # the walker does not skip it as binary


def test_deep_html_and_huge_csv_fields_are_read() -> None:
    from rag.ingest.loaders.html import load_html
    from rag.ingest.loaders.structured import load_csv

    deep = ("<div>" * 20000 + "deep text" + "</div>" * 20000).encode()
    assert load_html(deep, Path("deep.html"), ReadLimits())[0] == "deep text"
    field = "y" * 1_000_000
    text, meta = load_csv(f"name,body\nx,{field}\n".encode(), Path("big.csv"), ReadLimits())
    assert meta["rows"] == 1 and field in text


def test_a_docx_bomb_is_refused_before_it_is_inflated(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "bomb.docx"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:p>" + "<w:r><w:t>boom</w:t></w:r>" * 1_500_000 + "</w:p>")
    assert path.stat().st_size < 1_000_000
    with pytest.raises(LoaderError, match="decompression bomb, not read"):
        load_document(path, tmp_path)


def test_text_that_expands_past_the_size_limit_is_refused(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    for n in range(400):
        document.add_paragraph(f"paragraph {n} " + "words that repeat and compress well " * 5)
    document.save(tmp_path / "long.docx")
    size = (tmp_path / "long.docx").stat().st_size
    with pytest.raises(LoaderError, match="max_file_mb applies to the extracted text"):
        load_document(tmp_path / "long.docx", tmp_path, ReadLimits(max_bytes=size + 1000))
    assert load_document(tmp_path / "long.docx", tmp_path).text.startswith("paragraph 0")


def test_records_give_their_fields_typed_and_long_text_left_out(tmp_path: Path) -> None:
    body = "b" * 201
    line = {"t": "x", "n": 2, "ok": True, "tags": ["a"], "m": {"k": 1.5}, "refs": [{"id": 1}], "body": body}
    doc = load_document(_write(tmp_path / "r.jsonl", json.dumps(line) + "\n\n" + json.dumps([1, 2]) + "\n"), tmp_path)
    assert doc.metadata["record_fields"] == [{"t": "x", "n": 2, "ok": True, "tags": ["a"], "m.k": 1.5}, {}]
    starts = doc.metadata["record_starts"]
    assert [doc.text[s : s + 4] for s in starts] == ["t: x", "1, 2"]
    csv_doc = load_document(_write(tmp_path / "c.csv", "zip,n,x,d\n007,1,-2.5e3,2026-01-05\n100,,1,\n"), tmp_path)
    assert csv_doc.metadata["record_fields"] == [
        {"zip": "007", "n": 1, "x": -2500.0, "d": "2026-01-05"},
        {"zip": "100", "x": 1},
    ]
    assert csv_doc.text[csv_doc.metadata["record_starts"][0] :].startswith("zip: 007")
