"""The Python API: one object per index that indexes folders and answers questions."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

from rag.check import CheckReport, check_index
from rag.core.errors import ConfigError, IndexNotFoundError, PipelineError
from rag.core.filters import Filter, parse_filter
from rag.core.pipeline import Pipeline
from rag.core.serialization import load_pipeline, pipeline_from_dict
from rag.core.streaming import stream_call
from rag.core.tracing import record_text, span
from rag.core.types import Answer, Hit
from rag.fuse.adapt import LegWeights, auto_fusions
from rag.fuse.score import ScoreFusion
from rag.indexer import (
    IndexingEngine,
    IndexReport,
    Progress,
    Source,
    check_compatible,
    folder_source,
    retrievers,
    update_index,
)
from rag.retrieve.base import Retriever
from rag.store.chunk_store import ChunkStore
from rag.store.index_folder import IndexFolder

__all__ = ["DEFAULT_PIPELINE", "RAG"]

DEFAULT_PIPELINE = "default"
FilterLike = Filter | str | Mapping[str, Any]
"""A filter, its string form or its JSON form (see `rag.core.filters`)."""
_RECEIVERS = {"answer_mode": "prompt"}
"""The component that takes a per-question input other than the generator's."""


class RAG:
    """An index folder and the pipeline that builds and queries it.

    `pipeline` is a Pipeline, a shipped pipeline name or a YAML path. Left out, it is the
    pipeline the index was built with, or "default" for a new index. `allowed` lists extra
    component classes (full dotted names) a pipeline file may construct.

    By default every query first checks which index generation is live and switches to a newer
    one. With `follow_updates=False` the generation changes only when `refresh()` is called (a
    server that swaps indexes between requests), and a query before any `refresh()` is an error.
    """

    def __init__(
        self,
        index: str | os.PathLike[str],
        pipeline: Pipeline | str | os.PathLike[str] | None = None,
        allowed: Collection[str] = (),
        follow_updates: bool = True,
    ) -> None:
        self.folder = IndexFolder(index)
        self.follow_updates = follow_updates
        self._allowed = tuple(allowed)
        self._explicit = pipeline is not None
        self._pipeline = pipeline if isinstance(pipeline, Pipeline) else None
        self._pipeline_ref = None if isinstance(pipeline, Pipeline) else pipeline
        self._loaded_generation: Path | None = None
        self._store: ChunkStore | None = None

    @property
    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            if self._pipeline_ref is not None:
                self._pipeline = load_pipeline(self._pipeline_ref, self._allowed)
            elif (manifest := self.folder.last_manifest()) is not None:  # (a damaged pointer: the last one's)
                source = f"{self.folder.root}/manifest.json"
                self._pipeline = pipeline_from_dict(manifest["pipeline"], self._allowed, source)
            else:
                self._pipeline = load_pipeline(DEFAULT_PIPELINE, self._allowed)
        return self._pipeline

    def index(
        self,
        source: str | os.PathLike[str] | Source,
        *,
        strict: bool = False,
        rebuild: bool = False,
        wait: float = 0.0,
        progress: Progress | None = None,
        engine: IndexingEngine | None = None,
    ) -> IndexReport:
        """Bring the index in step with `source`: a folder, or any `rag.indexer.Source` (a LangChain loader's
        documents...). Only new and changed documents are embedded; `engine` runs the reading, chunking and
        embedding (default: in this process; `rag.distributed.ray_engine.RayEngine` on a Ray cluster)."""
        chosen = folder_source(source, self.pipeline, engine) if isinstance(source, (str, os.PathLike)) else source
        report = update_index(
            self.folder.root,
            self.pipeline,
            chosen,
            strict=strict,
            rebuild=rebuild,
            wait=wait,
            progress=progress,
            engine=engine,
        )
        self._loaded_generation = None
        return report

    def check(self, *, repair: bool = False, wait: float = 0.0) -> CheckReport:
        """Verify the index (pointer, manifest, chunk store, every retriever's ids, drift from its folder); with
        `repair`, rebuild or re-index from its folder as needed and check again (see `rag.check`)."""
        return check_index(self.folder.root, allowed=self._allowed, repair=repair, wait=wait)

    def query(
        self,
        query: str,
        top_k: int | None = None,
        filters: FilterLike | None = None,
        allow_unknown_fields: bool = False,
        *,
        scope: FilterLike | None = None,
    ) -> list[Hit]:
        """The pipeline's retrieval hits for `query` (an empty or whitespace query is a ConfigError).

        `filters` (a `Filter`, its string form or its JSON form; see `rag.core.filters`) keeps only the chunks that
        pass, inside every retriever, so `top_k` hits come back whenever that many chunks pass. A filter on a field
        no chunk has is a ConfigError listing the known fields, unless `allow_unknown_fields`.

        `scope` is a filter ANDed into `filters` that the caller does not choose (a tenant's, from its API key): a
        field no chunk has yet matches nothing, and `filters` is checked against the fields of the chunks in scope
        only, so its errors never name what lies outside it.
        """
        if not isinstance(query, str) or not query.strip():
            raise ConfigError(f"the query is empty ({query!r}); search for words")
        with span("rag.query", pipeline=self.pipeline.name, top_k=top_k, filtered=filters is not None) as current:
            record_text(current, "rag.query_text", query)
            hits: list[Hit] = self._run(query, top_k, "hits", self._filtered(filters, allow_unknown_fields, scope))
            current.set_attribute("rag.hits", len(hits))
        return hits

    def ask(
        self,
        question: str,
        top_k: int | None = None,
        decoding: Mapping[str, Any] | None = None,
        on_token: Callable[[str], None] | None = None,
        answer_mode: str | None = None,
        filters: FilterLike | None = None,
        *,
        scope: FilterLike | None = None,
    ) -> Answer:
        """An answer from the retrieved passages, with citations, or an abstention when they do not answer it.

        `filters` (and `scope`) limit the passages as in `query`: the answer, its citations and its abstention see
        only them.

        `answer_mode` ("extractive", "grounded" or "generate"; None: the pipeline's) overrides the pipeline's
        answer mode for this question (docs/answers.md). `decoding` overrides the generator's decoding options
        (see `rag.generate.decoding.DecodingConfig`); `on_token` is called with each piece of text as it is
        generated (an extractive answer comes as one piece).
        """
        if not isinstance(question, str) or not question.strip():
            raise ConfigError(f"the question is empty ({question!r}); ask a question in words")
        extra: dict[str, Any] = self._filtered(filters, False, scope)
        if answer_mode is not None:
            self.pipeline.answer_modes(answer_mode)
            extra["answer_mode"] = answer_mode
        if decoding:
            extra["decoding"] = dict(decoding)
        sent = False
        with span("rag.ask", pipeline=self.pipeline.name, top_k=top_k, answer_mode=answer_mode) as current:
            record_text(current, "rag.question", question)
            started = time.perf_counter()
            if on_token is not None:

                def forward(piece: str) -> None:
                    nonlocal sent
                    if not sent:
                        current.set_attribute("rag.first_token_ms", (time.perf_counter() - started) * 1000)
                    sent = True
                    on_token(piece)

                extra["on_token"] = forward
            answer: Answer = self._run(question, top_k, "answer", extra)
            current.set_attribute("rag.abstained", answer.abstained)
            current.set_attribute("rag.citations", len(answer.citations))
        if on_token is not None and not sent and answer.text:
            on_token(answer.text)  # nothing was generated (extractive, abstained): the whole text at once
        return answer

    def ask_stream(
        self,
        question: str,
        top_k: int | None = None,
        decoding: Mapping[str, Any] | None = None,
        answer_mode: str | None = None,
        filters: FilterLike | None = None,
        *,
        scope: FilterLike | None = None,
    ) -> Iterator[str | Answer]:
        """The answer's text pieces as they are generated, then the final `Answer` as the last item.

        Generation runs in a worker thread; closing the iterator early stops it at the next piece. A grounded
        answer's final text can differ from the pieces: `Answer.retracted` lists the sentences taken back.
        """

        def call(on_token: Callable[[str], None]) -> Answer:
            return self.ask(question, top_k, decoding, on_token, answer_mode, filters, scope=scope)

        with contextlib.closing(stream_call(call, "rag-ask-stream")) as items:
            for _, value in items:
                yield value

    def _filtered(
        self, filters: FilterLike | None, allow_unknown: bool, scope: FilterLike | None = None
    ) -> dict[str, Any]:
        """The `filters` input of a run (it reaches every retriever, see `Pipeline.run`): `scope` and `filters`
        parsed and checked against the live index's fields, after checking that every retriever applies filters
        exactly."""
        if filters is None and scope is None:
            return {}
        for name, retriever in retrievers(self.pipeline).items():
            if not retriever.filterable:
                raise PipelineError(
                    f"retriever '{name}' ({type(retriever).__name__}) cannot apply filters exactly yet; filter with a "
                    "pipeline of BM25, SPLADE or dense (float, int8, binary) retrievers"
                )
        within = self._scope(scope)
        assert self._store is not None
        known = self._store.filter_fields(within)
        parts = [within] if within is not None else []
        parts += [_as_filter(filters).checked(known, allow_unknown)] if filters is not None else []
        return {"filters": parts[0] if len(parts) == 1 else Filter("and", children=tuple(parts))}

    def _scope(self, scope: FilterLike | None) -> Filter | None:
        """`scope` checked against the live index's fields (a field no chunk has yet matches nothing)."""
        self._load()
        assert self._store is not None
        return None if scope is None else _as_filter(scope).checked(self._store.filter_fields(), allow_unknown=True)

    def _run(self, query: str, top_k: int | None, output: str, extra: Mapping[str, Any] | None = None) -> Any:
        pipeline = self.pipeline
        if output not in pipeline.outputs:
            raise PipelineError(
                f"pipeline '{pipeline.name}' has no '{output}' output (outputs: {', '.join(pipeline.outputs)}); "
                f"declare one under 'outputs' in the pipeline file"
            )
        for name in extra or {}:
            if not pipeline.takes(name):
                receiver = _RECEIVERS.get(name, "generator")
                raise PipelineError(
                    f"pipeline '{pipeline.name}' takes no '{name}' input (inputs: {', '.join(pipeline.inputs)}); "
                    f"connect it under 'inputs' in the pipeline file ({name}: [{receiver}.{name}])"
                )
        self._load()
        inputs: dict[str, object] = {"query": query, **(extra or {})}
        if top_k is not None and "top_k" in pipeline.inputs:
            inputs["top_k"] = top_k
        return pipeline.run(inputs, outputs=[output])[output]

    def current_generation(self) -> Path | None:
        """The folder of the index's live generation (None before anything was indexed)."""
        return self.folder.current()

    def summary(self) -> dict[str, Any]:
        """What the live generation holds: `files`, `chunks`, the `pipeline` name, when it was `updated`, and the
        `source` it mirrors (an IndexNotFoundError before anything was indexed)."""
        manifest = self.folder.manifest(self.folder.require_current())
        return {
            "files": manifest["counts"]["files"],
            "chunks": manifest["counts"]["chunks"],
            "pipeline": manifest["pipeline"].get("name", ""),
            "updated": manifest.get("updated"),
            "source": manifest.get("root"),
        }

    def documents(self, scope: FilterLike | None = None) -> list[dict[str, Any]]:
        """The documents of the live generation: `path`, `title`, `size` (bytes of the file) and `chunks`; with
        `scope`, only those with chunks in it."""
        within = self._scope(scope)
        assert self._store is not None
        allowed = self._store.matching(within) if within is not None else None
        listed = []
        for path, record in sorted(self._store.files.items()):
            if allowed is not None and not allowed.intersection(record.chunk_ids):
                continue
            first = self._store.chunks.get(record.chunk_ids[0]) if record.chunk_ids else None
            title = first.metadata.get("title") if first is not None else None
            listed.append({"path": path, "title": title, "size": record.size, "chunks": len(record.chunk_ids)})
        return listed

    def document_text(self, path: str, scope: FilterLike | None = None) -> str:
        """A document's text as the index holds it: its chunks laid out by their offsets (overlaps once; a blank
        line where the chunker left text out). An IndexNotFoundError names a path the index does not hold (or,
        with `scope`, holds outside it)."""
        within = self._scope(scope)
        assert self._store is not None
        record = self._store.files.get(path)
        if (
            record is not None
            and within is not None
            and not self._store.matching(within).intersection(record.chunk_ids)
        ):
            record = None
        if record is None:
            raise IndexNotFoundError(f"the index has no document '{path}'; list them with RAG.documents()")
        pieces: list[str] = []
        cursor = 0
        for chunk in sorted(self._store.get(list(record.chunk_ids)), key=lambda c: (c.start, c.end)):
            if chunk.end <= cursor:
                continue
            if pieces and chunk.start > cursor:
                pieces.append("\n\n")
            pieces.append(chunk.text[max(0, cursor - chunk.start) :])
            cursor = chunk.end
        return "".join(pieces)

    def mirrored_source(self) -> str | None:
        """What the live generation was built from (a folder's path, a loader's label); None before any."""
        current = self.folder.current()
        return None if current is None else self.folder.manifest(current).get("root")

    def replica(self) -> RAG:
        """Another `RAG` over the same index and pipeline whose retrievers are its own objects (generators and
        other components are shared, so no model loads twice): a server loads a new generation into one while the
        other answers. It changes generation only in `refresh()`."""
        pipeline = self.pipeline
        components = {
            name: type(c)(**c.settings) if isinstance(c, Retriever) else c for name, c in pipeline.components.items()
        }
        twin = Pipeline(
            components,
            [(f"{c.sender}.{c.output}", f"{c.receiver}.{c.input}") for c in pipeline.connections],
            inputs={name: [f"{c}.{s}" for c, s in targets] for name, targets in pipeline.inputs.items()},
            outputs={name: f"{c}.{o}" for name, (c, o) in pipeline.outputs.items()},
            indexing=pipeline.indexing,
            name=pipeline.name,
            description=pipeline.description,
        )
        return RAG(self.folder.root, twin, self._allowed, follow_updates=False)

    def refresh(self) -> Path:
        """Attach the live index generation to the pipeline's retrievers now; returns its folder."""
        current = self.folder.require_current()
        if current == self._loaded_generation:
            return current
        manifest = self.folder.manifest(current)
        if self._explicit:
            check_compatible(manifest["fingerprint"], self.pipeline, self.folder.root)
        store = ChunkStore.load(current)
        for name, retriever in retrievers(self.pipeline).items():
            retriever.load(current / "components" / name, store)
        for name in auto_fusions(self.pipeline):
            fusion = self.pipeline.components[name]
            assert isinstance(fusion, ScoreFusion)
            fusion.use_estimate(LegWeights.load(current / "components" / name))
        self._loaded_generation, self._store = current, store
        return current

    def _load(self) -> None:
        if self.follow_updates:
            self.refresh()
        elif self._loaded_generation is None:
            self.folder.require_current()
            raise IndexNotFoundError(f"the index {self.folder.root} is not loaded yet; call refresh() first")


def _as_filter(filters: FilterLike) -> Filter:
    """A filter from any of its forms (see `rag.core.filters`)."""
    if isinstance(filters, Filter):
        return filters
    return parse_filter(filters) if isinstance(filters, str) else Filter.from_dict(filters)
