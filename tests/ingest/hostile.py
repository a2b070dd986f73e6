"""A hostile folder, built by the tests: every entry a careless user or an attacker could put in a folder that gets
indexed, each with the one outcome it must get (indexed, failed with a reason, or skipped with a reason).

`build(root)` writes the folder at `root / "docs"` (and a secret beside it, outside) and returns the entries.
`LIMITS` are the indexing settings the folder is indexed with: small limits, so the bombs stay small to build.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

SECRET = "root:x:0:0:the-secret-outside-the-folder"
LIMITS = {"max_file_mb": 1.0, "max_pages": 50, "max_records": 1000, "max_depth": 100, "max_expansion": 100}


@dataclass(frozen=True)
class Entry:
    """`path` relative to the folder; `outcome` "indexed", "failed" or "skipped"; `reason` a regex of the report's
    reason (failed, skipped) or a text the indexed chunks hold (indexed)."""

    path: str
    outcome: str
    reason: str


def build(root: Path) -> list[Entry]:
    docs, outside = root / "docs", root / "outside"
    docs.mkdir(parents=True)
    outside.mkdir()
    (outside / "passwd").write_text(SECRET)
    (outside / "notes.md").write_text(SECRET)
    entries: list[Entry] = []

    def add(path: str, outcome: str, reason: str, data: bytes | str | None = None) -> Path:
        target = docs / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            target.write_text(data, encoding="utf-8")
        elif data is not None:
            target.write_bytes(data)
        entries.append(Entry(path, outcome, reason))
        return target

    # links and special files
    add("passwd.txt", "skipped", "a link to outside the indexed folder").symlink_to(outside / "passwd")
    add("outside-folder", "skipped", "a link to outside the indexed folder").symlink_to(outside)
    add("real.md", "indexed", "the real file", "# Real\n\nthe real file")
    # the first path met in walk order (names sorted) is indexed, a later one is an alias
    add("zz-alias.md", "skipped", "a second path to a file already indexed").symlink_to(docs / "real.md")
    add("self-loop.md", "skipped", "a link that loops").symlink_to(docs / "self-loop.md")
    add("sub/up", "skipped", "a folder already indexed under another path").symlink_to(docs)
    add("dangling.md", "skipped", "broken link").symlink_to(docs / "missing.md")
    os.mkfifo(add("pipe.txt", "skipped", r"not a regular file \(a FIFO"))
    add("pipe-link.txt", "skipped", r"not a regular file \(a FIFO").symlink_to(docs / "pipe.txt")
    # names that are terminal markup
    add("notes[/x].md", "indexed", "bracketed name", "bracketed name")
    add("[red]red.md", "indexed", "markup name", "markup name")
    add("root:x:0:0.md", "indexed", "emoji code name", "emoji code name")
    add("line\nbreak.md", "indexed", "newline name", "newline name")
    # bombs and limits
    add("bomb.docx", "failed", r"times its size, over indexing\.max_expansion 100\): a decompression bomb", docx_bomb())
    add("markup-bomb.docx", "failed", "a decompression bomb", docx_bomb(markup_only=True))
    add("long.docx", "failed", r"over 1,048,576 characters", docx_paragraphs(1_200_000))
    add("pages.pdf", "failed", r"60 pages, over the limit of 50; .*indexing\.max_pages", blank_pdf(60))
    add("deep.json", "failed", r"levels of JSON nesting, over the limit of 100", b"[" * 100_000 + b"]" * 100_000)
    add("many.json", "failed", r"1,001 records, over the limit of 1,000", json.dumps(list(range(1001))))
    add("many.csv", "failed", r"1,001 rows, over the limit of 1,000", "n\n" + "".join(f"{i}\n" for i in range(1001)))
    add("big.txt", "failed", r"over the limit of 1\.0 MiB", "x" * (1024 * 1024 + 1))
    add("deep.html", "indexed", "deep words", "<div>" * 20_000 + "deep words" + "</div>" * 20_000)
    add("wide.csv", "indexed", "wide field", "name,body\nwide field," + "y" * 500_000 + "\n")
    # encodings
    add("cp1252.txt", "indexed", "café crème", "café crème – “quoted”".encode("cp1252"))
    add("latin1.txt", "indexed", "naïve façade", "naïve façade".encode("latin-1"))
    add("utf16-bom.txt", "indexed", "utf-16 with a mark", "utf-16 with a mark".encode("utf-16"))
    no_bom = ("utf-16 without a byte order mark\n" * 4).encode("utf-16-le")
    add("utf16-nobom.txt", "indexed", "utf-16 without a byte order mark", no_bom)
    add("utf8-bom.md", "indexed", "utf-8 with a bom", codecs.BOM_UTF8 + b"utf-8 with a bom")
    add("garbage.txt", "skipped", r"binary content \(NUL bytes\)", bytes(range(256)) * 8)
    # damaged files
    add("corrupt.pdf", "failed", "corrupt PDF", b"%PDF-1.4 this is not a pdf")
    add("corrupt.docx", "failed", "corrupt DOCX", b"PK\x03\x04 not a zip")
    add("empty.md", "failed", "empty file", b"")
    add("malformed.json", "failed", "malformed JSON", '{"a": [1, 2')
    # changed while the run reads: see `rewrite_during_run`
    add("zzz-rewritten.md", "indexed", "version B", "version A")
    add("zzz-vanishes.md", "failed", "cannot read", "gone before it is read")
    return entries


def rewrite_during_run(docs: Path) -> None:
    """What the test does after the first file was read and before the others are: one file rewritten (after it
    was hashed), one deleted."""
    (docs / "zzz-rewritten.md").write_text("version B")
    (docs / "zzz-vanishes.md").unlink()


def _zip(parts: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    return buffer.getvalue()


_W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def _docx(body: bytes) -> bytes:
    types = (
        b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        b'<Default Extension="xml" ContentType="application/xml"/>'
        b'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        b'<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.'
        b'wordprocessingml.document.main+xml"/></Types>'
    )
    rels = (
        b'<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        b'<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        b'officeDocument" Target="word/document.xml"/></Relationships>'
    )
    document = f'<?xml version="1.0"?><w:document {_W}><w:body>'.encode() + body + b"</w:body></w:document>"
    return _zip({"[Content_Types].xml": types, "_rels/.rels": rels, "word/document.xml": document})


def docx_bomb(markup_only: bool = False, expanded: int = 40_000_000) -> bytes:
    """A DOCX of `expanded` bytes of XML (about 340 times smaller zipped): words, or only empty runs."""
    paragraph = b"<w:p><w:r><w:t/></w:r></w:p>" if markup_only else b"<w:p><w:r><w:t>bomb words</w:t></w:r></w:p>"
    return _docx(paragraph * (expanded // len(paragraph)))


def docx_paragraphs(characters: int) -> bytes:
    """A DOCX under the expansion limit whose text is `characters` long."""
    paragraph = b"<w:p><w:r><w:t>" + b"w" * 9_999 + b"</w:t></w:r></w:p>"
    return _docx(paragraph * (characters // 10_000))


def blank_pdf(pages: int) -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=100, height=100)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()
