"""The Ray indexing engine: loading, chunking and embedding as Ray Data jobs.

`index_folder(..., engine=RayEngine())` keeps every decision of the local indexer (which files
are new, changed, renamed or deleted; which chunks are new) and moves only the work to Ray:

1. `read`: the changed files are read and chunked in parallel by Ray tasks (each worker process
   builds the pipeline's chunker once) with the same `rag.indexer.read_file` the local engine calls (each file
   with the fields of its path rules and sidecar, worked out on the driver);
   the chunks are written as Parquet shards into a staging folder, read back on the driver in
   file order and applied to the chunk store exactly as the local engine's would be.
2. `embedding`: the texts of the new chunks go to a pool of embedding actors (one GPU each when
   the cluster has GPUs and the model's device allows it, else one CPU each), in batches sorted
   by length; the vectors are written as Parquet shards, read back, and the pipeline's dense
   retrievers take them instead of encoding (each retriever's `add` is otherwise unchanged, so
   the FAISS index is built by the same code). Retrievers without a sentence-transformers
   embedder (BM25, SPLADE, ColBERT) embed on the driver as they do locally.

So chunk ids are the same as the local engine's, vectors equal within float tolerance (batches
differ, and so does the padding), and queries return the same hits.

The staging folders (`tmp-ray-*`) go under `staging` (default: the system's temporary folder;
the CLI uses the index folder, whose next writer removes any a crash left behind). On a cluster
of several machines the indexed folder and `staging` must be on storage that every node sees
(NFS, EFS, a shared volume); see docs/scaling.md.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rag.core.errors import BrokenContractError, ConfigError
from rag.core.limits import ReadLimits
from rag.core.pipeline import IndexingSettings, Pipeline
from rag.core.types import Chunk
from rag.distributed import import_ray
from rag.embed.dense import SentenceTransformerEmbedder
from rag.indexer import FileRead, FileToRead, Progress, read_file, retrievers
from rag.store.chunk_store import CHUNK_SCHEMA

__all__ = ["RayEngine", "dense_embedders"]

logger = logging.getLogger(__name__)


class RayEngine:
    """Runs the indexer's reading, chunking and embedding on a Ray cluster (see the module docstring).

    `address`: the cluster to join ("auto": the one started on this machine with `ray start`;
    "ray://host:10001": a remote one; None: $RAY_ADDRESS, else a new local cluster).
    `workers`: actors per pool (default: the cluster's CPUs, or its GPUs for GPU embedding).
    `read_batch` files and `embed_batch` texts go to an actor at a time.
    """

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        read_batch: int = 16,
        embed_batch: int = 256,
        staging: str | os.PathLike[str] | None = None,
    ) -> None:
        if workers is not None and workers < 1:
            raise ConfigError(f"RayEngine workers must be at least 1, got {workers}")
        if importlib.util.find_spec("ray") is None:
            import_ray()  # raises the error naming the extra
        if read_batch < 1 or embed_batch < 1:
            raise ConfigError(f"RayEngine batch sizes must be at least 1, got {read_batch} and {embed_batch}")
        self.address = address
        self.workers = workers
        self.read_batch = read_batch
        self.embed_batch = embed_batch
        self.staging = Path(staging) if staging is not None else None
        self._ray: Any = None

    # ------------------------------------------------------------------ the engine contract
    def read(
        self, root: Path, files: Sequence[FileToRead], settings: IndexingSettings, progress: Progress | None
    ) -> Iterator[FileRead | str]:
        """Each file's chunks, or why it could not be read, in the order of `files`."""
        if not files:
            return
        ray = self._connect()
        chunker = settings.chunker
        items = [
            {"n": n, "path": str(f.path), "fields": json.dumps([f.rule_fields, f.sidecar_fields], ensure_ascii=False)}
            for n, f in enumerate(files)
        ]
        workers = min(self._workers(), len(items))
        with self._staging_folder("chunks") as folder:
            dataset = ray.data.from_items(items, override_num_blocks=min(len(items), workers * 4))
            dataset.map_batches(
                _read_and_chunk,
                fn_kwargs={
                    "root": str(root),
                    "chunker": (type(chunker), chunker.settings),
                    "limits": settings.limits(),
                },
                batch_size=self.read_batch,
                batch_format="pyarrow",
                concurrency=workers,
                num_cpus=1,
            ).write_parquet(str(folder))
            rows = pq.read_table(folder).to_pylist()
        by_file: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            by_file.setdefault(row["n"], []).append(row)
        for n in range(len(files)):
            found = sorted(by_file.get(n, ()), key=lambda r: r["k"])
            if not found:  # never expected: every file yields at least one row
                raise BrokenContractError(f"the Ray read job returned nothing for {files[n].rel}")
            if found[0]["error"] is not None:
                yield found[0]["error"]
            else:
                chunks = [
                    Chunk(r["id"], r["path"], r["text"], r["start"], r["end"], json.loads(r["metadata"]))
                    for r in found
                    if r["k"] >= 0
                ]
                yield FileRead(chunks, found[0]["sha256"])
        if progress:
            progress("reading", len(files), len(files))

    @contextmanager
    def embedding(self, pipeline: Pipeline, added: Sequence[Chunk], progress: Progress | None) -> Iterator[None]:
        """Embed `added` on the cluster; inside the block the dense retrievers read those vectors."""
        targets = dense_embedders(pipeline)
        if not added or not targets:
            yield
            return
        texts = list(dict.fromkeys(chunk.text for chunk in added))  # `added` is sorted by length
        tables: dict[tuple[Any, ...], dict[str, np.ndarray]] = {}
        for name, embedder in targets.items():
            key = _identity(embedder)
            if key not in tables:
                tables[key] = self._embed(embedder, texts)
            if progress:
                progress(f"embedding ({name}, Ray)", len(texts), len(texts))
        with ExitStack() as stack:
            for embedder in targets.values():
                stack.enter_context(embedder.precomputed(tables[_identity(embedder)]))
            yield

    # ------------------------------------------------------------------ the Ray jobs
    def _embed(self, embedder: SentenceTransformerEmbedder, texts: list[str]) -> dict[str, np.ndarray]:
        ray = self._connect()
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if embedder.device == "cuda" and not gpus:
            raise ConfigError(
                f"the embedding model {embedder.model} asks for device 'cuda' but the Ray cluster has no GPU; "
                "use device 'auto' or 'cpu', or add GPU nodes"
            )
        use_gpu = gpus > 0 and embedder.device != "cpu"
        workers = min(self.workers or gpus, gpus) if use_gpu else self._workers()
        workers = max(1, min(workers, -(-len(texts) // self.embed_batch)))
        logger.info("embedding %d texts with %s on %d Ray actor(s)%s", len(texts), embedder.model, workers,
                    " with a GPU each" if use_gpu else "")  # fmt: skip
        with self._staging_folder("vectors") as folder:
            dataset = ray.data.from_items(
                [{"text": text} for text in texts],
                override_num_blocks=max(1, min(len(texts) // self.embed_batch, workers * 8)),
            )
            dataset.map_batches(
                _Embed,
                fn_constructor_kwargs={
                    "model": embedder.model,
                    "device": embedder.device,
                    "batch_size": embedder.batch_size,
                    "normalize": embedder.normalize,
                },
                batch_size=self.embed_batch,
                batch_format="pyarrow",
                concurrency=workers,
                **({"num_gpus": 1} if use_gpu else {"num_cpus": 1}),
            ).write_parquet(str(folder))
            table = pq.read_table(folder)
        found = table.column("text").to_pylist()
        vectors = np.asarray(table.column("vector").combine_chunks().flatten(), dtype=np.float32)
        vectors = vectors.reshape(len(found), -1) if found else vectors.reshape(0, 0)
        return dict(zip(found, vectors, strict=True))

    def _connect(self) -> Any:
        if self._ray is None:
            ray = import_ray()
            if not ray.is_initialized():
                logger.info(
                    "connecting to Ray at %s", self.address or os.environ.get("RAY_ADDRESS") or "a new local cluster"
                )
                ray.init(address=self.address, include_dashboard=False, logging_level=logging.WARNING)
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = False  # the library never draws on the terminal
            self._ray = ray
        return self._ray

    def _workers(self) -> int:
        return self.workers or max(1, int(self._connect().cluster_resources().get("CPU", 1)))

    @contextmanager
    def _staging_folder(self, what: str) -> Iterator[Path]:
        parent = self.staging or Path(tempfile.gettempdir())
        parent.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f"tmp-ray-{what}-", dir=parent))
        try:
            yield folder / "shards"
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def dense_embedders(pipeline: Pipeline) -> dict[str, SentenceTransformerEmbedder]:
    """The sentence-transformers embedders of the pipeline's retrievers (dense, Matryoshka), by retriever."""
    found = {}
    for name, retriever in retrievers(pipeline).items():
        embedder = getattr(retriever, "embedder", None)
        if isinstance(embedder, SentenceTransformerEmbedder):
            found[name] = embedder
    return found


def _identity(embedder: SentenceTransformerEmbedder) -> tuple[Any, ...]:
    return (embedder.model, embedder.normalize)


def _read_and_chunk(batch: pa.Table, root: str, chunker: tuple[type, dict[str, Any]], limits: ReadLimits) -> pa.Table:
    """A Ray task: load and chunk files with `rag.indexer.read_file` (the local engine's code)."""
    instance = _chunker(*chunker)
    rows: list[dict[str, Any]] = []
    columns = (batch.column(name).to_pylist() for name in ("n", "path", "fields"))
    for n, path, fields in zip(*columns, strict=True):
        rule_fields, sidecar_fields = json.loads(fields)  # a file's path rules' and sidecar's fields
        result = read_file(Path(path), Path(root), instance, limits, rule_fields, sidecar_fields)
        if isinstance(result, str):
            rows.append(_row(n, -1, None, result, None))
        elif not result.chunks:
            rows.append(_row(n, -1, None, None, result.sha256))
        else:
            rows.extend(_row(n, k, chunk, None, result.sha256) for k, chunk in enumerate(result.chunks))
    return pa.Table.from_pylist(rows, schema=_CHUNK_ROWS)


_CHUNKERS: dict[str, Any] = {}


def _chunker(kind: type, settings: dict[str, Any]) -> Any:
    """One warmed-up chunker per worker process and settings (Ray reuses workers across tasks and jobs)."""
    key = f"{kind.__module__}.{kind.__qualname__}:{json.dumps(settings, sort_keys=True)}"
    if key not in _CHUNKERS:
        _CHUNKERS[key] = kind(**settings)
        _CHUNKERS[key].warm_up()
    return _CHUNKERS[key]


def _row(n: int, k: int, chunk: Chunk | None, error: str | None, sha256: str | None) -> dict[str, Any]:
    return {
        "n": n,
        "k": k,
        "error": error,
        "sha256": sha256,
        "id": chunk.id if chunk else None,
        "path": chunk.path if chunk else None,
        "text": chunk.text if chunk else None,
        "start": chunk.start if chunk else None,
        "end": chunk.end if chunk else None,
        "metadata": json.dumps(chunk.metadata, ensure_ascii=False) if chunk else None,
    }


_CHUNK_ROWS = pa.schema(
    [("n", pa.int64()), ("k", pa.int64()), ("error", pa.string()), ("sha256", pa.string()), *CHUNK_SCHEMA]
)
"""One row per chunk (`k` its position in the file), or one row with `k` = -1 for a file with an
`error` or with no chunks; `n` is the file's position in the read job, `sha256` the hash of the bytes parsed."""


class _Embed:
    """A Ray actor: one copy of the embedding model, encoding batches of texts into float32 rows."""

    def __init__(self, model: str, device: str, batch_size: int, normalize: bool) -> None:
        self.embedder = SentenceTransformerEmbedder(model, device=device, batch_size=batch_size, normalize=normalize)
        self.embedder.load()

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = batch.column("text").to_pylist()
        vectors = self.embedder.encode_documents(texts)
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
        return pa.table({"text": texts, "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])})
