"""The serving class: one collection's pipelines over its index, loaded once, swapped atomically.

Each served pipeline keeps two slots (two sets of retriever components over the same models).
Requests read the active slot under its shared lock. When the index gets a new generation, it is
loaded into the idle slot (waiting only for requests still reading that slot's older state), then
the slot becomes active in one assignment: no request ever sees a half-loaded index, and none
waits for the load. Generators, prompt builders and other stateless components are shared by both
slots, so models are loaded once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from rag.api import RAG, FilterLike
from rag.core.errors import ConfigError, IndexStoreError
from rag.core.filters import Filter
from rag.core.pipeline import Pipeline
from rag.core.types import Answer, Hit
from rag.embed.base import Embedder
from rag.serve.errors import ServiceError
from rag.serve.rwlock import ReadWriteLock
from rag.serve.settings import CollectionSettings, ServerSettings

__all__ = ["RagService", "ServedPipeline"]

T = TypeVar("T")

logger = logging.getLogger(__name__)


@dataclass
class _Slot:
    rag: RAG
    lock: ReadWriteLock = field(default_factory=ReadWriteLock)
    generation: Path | None = None


class ServedPipeline:
    """One pipeline served under a name, with its two slots; `model` is its OpenAI model id (the name in the default
    collection, COLLECTION/NAME in the others)."""

    def __init__(self, name: str, index: Path, pipeline: Pipeline, model: str | None = None) -> None:
        self.name = name
        self.model = model or name
        self.pipeline = pipeline
        first = RAG(index, pipeline, follow_updates=False)  # its generation changes only in refresh()
        self._slots = [_Slot(first), _Slot(first.replica())]
        self._active = 0

    @property
    def pipelines(self) -> list[Pipeline]:
        return [slot.rag.pipeline for slot in self._slots]

    @property
    def streams(self) -> bool:
        """Whether the pipeline hands out text as it is generated (it has an `on_token` input)."""
        return "on_token" in self.pipeline.inputs

    @property
    def answers(self) -> bool:
        return "answer" in self.pipeline.outputs

    def warm_up(self) -> None:
        for pipeline in self.pipelines:
            pipeline.warm_up()

    def swap_to(self, generation: Path) -> None:
        """Load `generation` into the idle slot, then make it the active one."""
        idle = self._slots[1 - self._active]
        with idle.lock.write():
            if idle.generation != generation:
                idle.generation = idle.rag.refresh()
        self._active = 1 - self._active

    @contextlib.contextmanager
    def reading(self) -> Iterator[RAG]:
        """The active slot's RAG, held so that no swap reloads it while the caller reads."""
        slot = self._slots[self._active]
        with slot.lock.read():
            yield slot.rag

    def replica(self) -> RAG:
        """A RAG over the same index and pipeline with its own retrievers (for indexing uploads)."""
        return self._slots[0].rag.replica()

    def mirrored_source(self) -> str | None:
        """What the index's live generation was built from."""
        return self._slots[self._active].rag.mirrored_source()

    def live_generation(self) -> Path | None:
        """The index's live generation (which may not be swapped in yet)."""
        return self._slots[self._active].rag.current_generation()

    def embedder(self) -> Embedder | None:
        """The pipeline's dense embedding model (for /v1/embeddings), or None."""
        for component in self.pipeline.components.values():
            embedder = getattr(component, "embedder", None)  # DenseRetriever.embedder, or any component's alike
            if isinstance(embedder, Embedder):
                return embedder
        return None


class RagService:
    """One collection's pipelines over its index; see the module docstring. `default`: the server's first
    collection, whose pipelines' model ids are their bare names."""

    def __init__(self, settings: ServerSettings, collection: CollectionSettings, default: bool = True) -> None:
        self.settings = settings
        self.collection = collection
        self.name = collection.name
        self.is_default = default
        self.served: dict[str, ServedPipeline] = {}
        self.generation: Path | None = None
        self.started = int(time.time())
        self.ready = False
        self.problem: str | None = None
        self._failed: Path | None = None
        self._swap = threading.Lock()

    def load_pipelines(self) -> None:
        """Read the pipeline definitions (cheap: no model is loaded)."""
        index = self.collection.index
        for ref in self.collection.pipelines:
            pipeline = RAG(index, ref, self.settings.allowed).pipeline
            name = pipeline.name or (Path(ref).stem if isinstance(ref, str) else "default")
            if name in self.served:
                raise ConfigError(
                    f"collection '{self.name}' serves two pipelines named '{name}'; give each pipeline its own name"
                )
            model = name if self.is_default else f"{self.name}/{name}"
            self.served[name] = ServedPipeline(name, index, pipeline, model)

    def start(self) -> None:
        """Load every model and the live index (blocking; once per worker, at start-up; again: nothing)."""
        if self.ready:
            return
        if not self.served:
            self.load_pipelines()
        for served in self.served.values():
            served.warm_up()
        self.sync(wait=True, strict=True)
        self.ready = True
        logger.info(
            "collection %s: serving %s over %s (generation %s)",
            self.name,
            ", ".join(self.served),
            self.collection.index,
            self.generation,
        )

    @property
    def default(self) -> ServedPipeline:
        return next(iter(self.served.values()))

    def get(self, model: str | None) -> ServedPipeline:
        """The served pipeline named `model` (the default one for None); a ServiceError for any other name."""
        if model is None:
            return self.default
        if model not in self.served:
            served = ", ".join(p.model for p in self.served.values())
            raise ServiceError(
                f"the model '{model}' does not exist; this collection serves: {served} (see /v1/models)",
                "model_not_found",
                "model",
            )
        return self.served[model]

    def sync(self, wait: bool = False, strict: bool = False) -> bool:
        """Swap in the index's live generation if it changed; returns whether one was swapped in.

        A request that finds another thread swapping goes on with the previous generation. A generation
        that cannot be loaded is logged, reported by /readyz and not tried again until the index changes;
        requests go on with the previous one (`strict`: raise instead).
        """
        try:
            current = self.default.live_generation()
        except IndexStoreError as exc:  # a damaged CURRENT pointer
            self.problem = str(exc)
            if strict:
                raise
            return False
        if current == self.generation or (current == self._failed and not strict):
            self.problem = None if current == self.generation else self.problem
            return False
        if not self._swap.acquire(blocking=wait):
            return False
        try:
            if current is None or current == self.generation:  # another thread swapped it in meanwhile
                return False
            for served in self.served.values():
                served.swap_to(current)
        except Exception as exc:
            self._failed = current
            self.problem = f"cannot load index generation {current}: {exc}"
            logger.error("%s; still serving %s", self.problem, self.generation)
            if strict:
                raise
            return False
        finally:
            self._swap.release()
        self.generation, self.problem, self._failed = current, None, None
        logger.info("now serving index generation %s", current.name)
        return True

    @contextlib.contextmanager
    def reading(self, served: ServedPipeline) -> Iterator[RAG]:
        if not self.ready:
            raise ServiceError("the server is still loading its models; try again shortly", "not_ready")
        self.sync()
        with served.reading() as rag:
            yield rag

    def read(self, served: ServedPipeline, call: Callable[[RAG], T]) -> T:
        """`call` with the served pipeline's live RAG, as a request reads it."""
        with self.reading(served) as rag:
            return call(rag)

    def query(
        self,
        served: ServedPipeline,
        query: str,
        top_k: int | None,
        filters: FilterLike | None = None,
        scope: Filter | None = None,
    ) -> list[Hit]:
        with self.reading(served) as rag:
            return rag.query(query, top_k, filters, scope=scope)

    def ask(
        self,
        served: ServedPipeline,
        question: str,
        top_k: int | None,
        decoding: Mapping[str, Any] | None,
        on_token: Callable[[str], None] | None = None,
        answer_mode: str | None = None,
        filters: FilterLike | None = None,
        scope: Filter | None = None,
    ) -> Answer:
        """An answer; `on_token` gets the text as it is generated (all at once if the pipeline cannot stream).
        `scope` (the request's key's) is ANDed into `filters`."""
        if not served.answers:
            raise ServiceError(f"the pipeline '{served.name}' retrieves only: it has no 'answer' output", "no_answer")
        with self.reading(served) as rag:
            streaming = on_token if served.streams else None
            answer = rag.ask(question, top_k, decoding or None, streaming, answer_mode, filters, scope=scope)
        if on_token is not None and not served.streams and answer.text:
            on_token(answer.text)
        return answer

    def embed(self, served: ServedPipeline, texts: list[str], as_queries: bool) -> np.ndarray:
        embedder = served.embedder()
        if embedder is None:
            raise ServiceError(
                f"the pipeline '{served.name}' has no dense embedding model; pick a model with one (see /v1/models)",
                "no_embedder",
                "model",
            )
        if not self.ready:
            raise ServiceError("the server is still loading its models; try again shortly", "not_ready")
        vectors = embedder.encode_queries(texts) if as_queries else embedder.encode_documents(texts)
        return np.asarray(vectors, dtype=np.float32)
