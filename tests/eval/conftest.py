"""A small BEIR-format slice of SciFact (read from ../shared/data, written to a temporary folder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SCIFACT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "scifact"


def write_beir(folder: Path, corpus: list[dict], queries: list[dict], qrels: list[tuple[str, str, int]]) -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in qrels]
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="session")
def scifact_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 SciFact documents: every one judged relevant to one of 60 test queries, plus others."""
    if not SCIFACT.is_dir():
        pytest.skip(f"SciFact is not at {SCIFACT}")
    rows = [line.split("\t") for line in (SCIFACT / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    qrels = [(q, d, int(s)) for q, d, s in rows]
    query_ids = list(dict.fromkeys(q for q, _, _ in qrels))[:60]
    qrels = [row for row in qrels if row[0] in query_ids]
    wanted = {d for _, d, _ in qrels}
    corpus = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").read_text().splitlines()]
    chosen = [d for d in corpus if d["_id"] in wanted]
    chosen += [d for d in corpus if d["_id"] not in wanted][: 300 - len(chosen)]
    queries = [json.loads(line) for line in (SCIFACT / "queries.jsonl").read_text().splitlines()]
    queries = [q for q in queries if q["_id"] in query_ids]
    return write_beir(tmp_path_factory.mktemp("scifact"), chosen, queries, qrels)
