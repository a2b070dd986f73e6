"""The Python API: one object per index that indexes folders and answers questions."""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

from rag.core.errors import PipelineError
from rag.core.pipeline import Pipeline
from rag.core.serialization import load_pipeline, pipeline_from_dict
from rag.core.types import Answer, Hit
from rag.indexer import IndexReport, Progress, check_compatible, index_folder, retrievers
from rag.store.chunk_store import ChunkStore
from rag.store.index_folder import IndexFolder

__all__ = ["DEFAULT_PIPELINE", "RAG"]

DEFAULT_PIPELINE = "default"


class RAG:
    """An index folder and the pipeline that builds and queries it.

    `pipeline` is a Pipeline, a shipped pipeline name or a YAML path. Left out, it is the
    pipeline the index was built with, or "default" for a new index. `allowed` lists extra
    component classes (full dotted names) a pipeline file may construct.
    """

    def __init__(
        self,
        index: str | os.PathLike[str],
        pipeline: Pipeline | str | os.PathLike[str] | None = None,
        allowed: Collection[str] = (),
    ) -> None:
        self.folder = IndexFolder(index)
        self._allowed = tuple(allowed)
        self._explicit = pipeline is not None
        self._pipeline = pipeline if isinstance(pipeline, Pipeline) else None
        self._pipeline_ref = None if isinstance(pipeline, Pipeline) else pipeline
        self._loaded_generation: Path | None = None

    @property
    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            if self._pipeline_ref is not None:
                self._pipeline = load_pipeline(self._pipeline_ref, self._allowed)
            elif (current := self.folder.current()) is not None:
                stored = self.folder.manifest(current)["pipeline"]
                self._pipeline = pipeline_from_dict(stored, self._allowed, f"{self.folder.root}/manifest.json")
            else:
                self._pipeline = load_pipeline(DEFAULT_PIPELINE, self._allowed)
        return self._pipeline

    def index(
        self,
        folder: str | os.PathLike[str],
        *,
        strict: bool = False,
        rebuild: bool = False,
        wait: float = 0.0,
        progress: Progress | None = None,
    ) -> IndexReport:
        """Bring the index in step with `folder` (only new and changed files are embedded)."""
        report = index_folder(
            folder, self.folder.root, self.pipeline, strict=strict, rebuild=rebuild, wait=wait, progress=progress
        )
        self._loaded_generation = None
        return report

    def query(self, query: str, top_k: int | None = None) -> list[Hit]:
        """The pipeline's retrieval hits for `query`."""
        return self._run(query, top_k, "hits")

    def ask(self, question: str, top_k: int | None = None) -> Answer:
        """An answer generated from the retrieved passages, with numbered citations."""
        return self._run(question, top_k, "answer")

    def _run(self, query: str, top_k: int | None, output: str):  # type: ignore[no-untyped-def]
        pipeline = self.pipeline
        if output not in pipeline.outputs:
            raise PipelineError(
                f"pipeline '{pipeline.name}' has no '{output}' output (outputs: {', '.join(pipeline.outputs)}); "
                f"declare one under 'outputs' in the pipeline file"
            )
        self._load()
        inputs: dict[str, object] = {"query": query}
        if top_k is not None and "top_k" in pipeline.inputs:
            inputs["top_k"] = top_k
        return pipeline.run(inputs, outputs=[output])[output]

    def _load(self) -> None:
        """Attach the live index generation to the pipeline's retrievers (again after a swap)."""
        current = self.folder.require_current()
        if current == self._loaded_generation:
            return
        manifest = self.folder.manifest(current)
        if self._explicit:
            check_compatible(manifest["fingerprint"], self.pipeline, self.folder.root)
        store = ChunkStore.load(current)
        for name, retriever in retrievers(self.pipeline).items():
            retriever.load(current / "components" / name, store)
        self._loaded_generation = current
