"""Index SciFact (one file per abstract) with a pipeline; compare with raw sentence-transformers encoding.

    python benchmarks/index_scifact.py [--limit N] [--pipeline default] [--out docs/benchmarks.md]

Measured in one process, in this order:
1. `rag index` of the folder (first run): wall time, chunks, chunks/s, and the time spent inside
   sentence-transformers' encode (instrumented), so overhead = (wall - encode) / encode;
2. a raw `SentenceTransformer.encode_document` of the very same chunk texts in one call, the
   baseline the issue names; overhead vs raw = (wall - raw) / raw;
3. a second `rag index` with nothing changed;
4. peak resident memory of the process (ru_maxrss).
The table is printed and written into the benchmarks page between markers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from report import DATA, PAGE, command_line, header, markdown_table, peak_memory_mb, write_section

from rag.api import RAG
from rag.core.serialization import load_pipeline
from rag.embed.dense import SentenceTransformerEmbedder
from rag.indexer import retrievers
from rag.runtime.models import resolve_model
from rag.store.chunk_store import ChunkStore
from rag.store.index_folder import IndexFolder

CORPUS = DATA / "scifact" / "corpus.jsonl"


def write_corpus(folder: Path, limit: int | None) -> int:
    count = 0
    with open(CORPUS, encoding="utf-8") as fh:
        for line in fh:
            if limit is not None and count >= limit:
                break
            doc = json.loads(line)
            (folder / f"{doc['_id']}.txt").write_text(f"{doc['title']}\n\n{doc['text']}\n", encoding="utf-8")
            count += 1
    return count


class EncodeTimer:
    """Adds up the time spent in the embedder's document encoding during indexing."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._original = SentenceTransformerEmbedder.encode_documents

    def __enter__(self) -> EncodeTimer:
        original, timer = self._original, self

        def timed(embedder, texts):  # type: ignore[no-untyped-def]
            began = time.perf_counter()
            try:
                return original(embedder, texts)
            finally:
                timer.seconds += time.perf_counter() - began

        SentenceTransformerEmbedder.encode_documents = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        SentenceTransformerEmbedder.encode_documents = self._original  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="index only the first N abstracts")
    parser.add_argument("--pipeline", default="default")
    parser.add_argument("--out", default=str(PAGE))
    args = parser.parse_args()
    pipeline = load_pipeline(args.pipeline)
    dense = next(r for r in retrievers(pipeline).values() if type(r).__name__ == "DenseRetriever")
    with tempfile.TemporaryDirectory() as tmp:
        folder, index = Path(tmp) / "scifact", Path(tmp) / "index"
        folder.mkdir()
        files = write_corpus(folder, args.limit)
        rag = RAG(index, pipeline)
        with EncodeTimer() as timer:
            began = time.perf_counter()
            first = rag.index(folder)
            first_wall = time.perf_counter() - began
        peak_mb = peak_memory_mb()
        texts = [c.text for c in ChunkStore.load(IndexFolder(index).require_current()).chunks.values()]
        raw = SentenceTransformerEmbedder(
            resolve_model(dense.settings["model"]), batch_size=dense.settings["batch_size"]
        )
        raw.load()
        model = raw._loaded()
        began = time.perf_counter()
        model.encode_document(
            texts, batch_size=dense.settings["batch_size"], normalize_embeddings=True, show_progress_bar=False
        )
        raw_seconds = time.perf_counter() - began
        began = time.perf_counter()
        second = RAG(index, pipeline).index(folder)
        second_wall = time.perf_counter() - began
    rows = [
        ("abstracts (files)", f"{files:,}"),
        ("chunks", f"{first.chunks_total:,}"),
        ("first run, wall", f"{first_wall:.1f} s"),
        ("chunks per second", f"{first.chunks_total / first_wall:.1f}"),
        ("encode time inside indexing (sentence-transformers)", f"{timer.seconds:.1f} s"),
        ("overhead over encode inside indexing", f"{(first_wall - timer.seconds) / timer.seconds:.1%}"),
        ("raw `encode_document` of the same chunks, one call", f"{raw_seconds:.1f} s"),
        ("overhead over raw encode (target ≤ 15%)", f"{(first_wall - raw_seconds) / raw_seconds:.1%}"),
        ("peak resident memory", f"{peak_mb:,.0f} MB"),
        ("second run, nothing changed (target < 5 s)", f"{second_wall:.2f} s ({second.unchanged:,} unchanged)"),
    ]
    table = header(command_line()) + "\n\n" + markdown_table(["measure", "value"], [list(row) for row in rows])
    print(table)
    write_section("index_scifact", table, "Indexing SciFact with the default pipeline", Path(args.out))


if __name__ == "__main__":
    sys.exit(main())
