"""BEIR-format datasets: `corpus.jsonl`, `queries.jsonl` and `qrels/SPLIT.tsv` in one folder.

    corpus.jsonl    {"_id": "4983", "title": "...", "text": "..."} per line
    queries.jsonl   {"_id": "1", "text": "..."} per line
    qrels/test.tsv  query-id <tab> corpus-id <tab> score, after a header line

Documents with relevance > 0 count as relevant; queries without any relevant document in the
split are left out (as BEIR does).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.core.errors import InputPathError

__all__ = ["BeirDataset", "jsonl_rows", "load_beir"]


@dataclass(frozen=True)
class BeirDataset:
    """A corpus, the queries of one split and their relevance judgements."""

    name: str
    split: str
    corpus: dict[str, tuple[str, str]]
    """Document id -> (title, text)."""
    queries: dict[str, str]
    """Query id -> text, only the queries judged in this split, in file order."""
    qrels: dict[str, dict[str, int]]
    """Query id -> {document id: relevance}."""
    corpus_sha256: str

    def first_queries(self, count: int) -> BeirDataset:
        """The same dataset with only its first `count` queries."""
        queries = dict(list(self.queries.items())[:count])
        return dataclasses.replace(self, queries=queries, qrels={q: self.qrels[q] for q in queries})

    def document_text(self, doc_id: str) -> str:
        """The text that is indexed for a document: its title, a blank line, its text."""
        title, text = self.corpus[doc_id]
        return f"{title}\n\n{text}" if title else text


def load_beir(folder: str | Path, split: str = "test") -> BeirDataset:
    """Read a BEIR-format folder; every problem is an InputPathError naming the file and line."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InputPathError(f"dataset folder '{folder}' does not exist; give a BEIR-format folder")
    corpus_file, queries_file = root / "corpus.jsonl", root / "queries.jsonl"
    qrels_file = root / "qrels" / f"{split}.tsv"
    for path in (corpus_file, queries_file):
        if not path.is_file():
            raise InputPathError(f"{path} is missing; a BEIR-format folder has corpus.jsonl, queries.jsonl and qrels/")
    if not qrels_file.is_file():
        found = sorted(p.stem for p in (root / "qrels").glob("*.tsv"))
        raise InputPathError(f"{qrels_file} is missing; splits in this folder: {', '.join(found) or 'none'}")
    digest = hashlib.sha256()
    corpus: dict[str, tuple[str, str]] = {}
    for line_no, row in jsonl_rows(corpus_file, digest):
        doc_id = _field(row, "_id", corpus_file, line_no)
        corpus[doc_id] = (str(row.get("title") or ""), str(row.get("text") or ""))
    all_queries = {
        _field(row, "_id", queries_file, n): str(row.get("text") or "") for n, row in jsonl_rows(queries_file)
    }
    qrels = _qrels(qrels_file)
    missing = [qid for qid in qrels if qid not in all_queries]
    if missing:
        raise InputPathError(f"{qrels_file} judges query '{missing[0]}', which {queries_file} does not have")
    queries = {qid: text for qid, text in all_queries.items() if qid in qrels}
    return BeirDataset(root.resolve().name, split, corpus, queries, qrels, digest.hexdigest())


def jsonl_rows(path: Path, digest: Any = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) per non-empty line; `digest` (a hashlib object) sees every byte."""
    with open(path, "rb") as fh:
        for line_no, line in enumerate(fh, start=1):
            if digest is not None:
                digest.update(line)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise InputPathError(f"{path}:{line_no} is not valid JSON: {exc}") from exc
            if not isinstance(row, dict):
                raise InputPathError(f"{path}:{line_no} is not a JSON object")
            yield line_no, row


def _field(row: dict[str, Any], name: str, path: Path, line_no: int) -> str:
    value = row.get(name)
    if value is None or str(value) == "":
        raise InputPathError(f"{path}:{line_no} has no '{name}'")
    return str(value)


def _qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for line_no, row in enumerate(csv.reader(fh, delimiter="\t"), start=1):
            if not row or (line_no == 1 and row[0] == "query-id"):
                continue
            if len(row) != 3:
                raise InputPathError(f"{path}:{line_no} should be 'query-id<TAB>corpus-id<TAB>score', got {row!r}")
            try:
                score = int(row[2])
            except ValueError as exc:
                raise InputPathError(f"{path}:{line_no}: score {row[2]!r} is not an integer") from exc
            if score > 0:
                qrels.setdefault(row[0], {})[row[1]] = score
    return qrels
