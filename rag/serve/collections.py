"""The collections a server serves: each an index with its pipelines (`RagService`), its uploads folder and its
queue of indexing jobs. Requests name a collection (`collection`, or `model` as COLLECTION/PIPELINE); a key sees
only the collections its scope names, and any other is answered as if it did not exist."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rag.serve.documents import DocumentFolder, JobQueue
from rag.serve.errors import ServiceError
from rag.serve.index_job import IndexJobRunner
from rag.serve.keys import ApiKey
from rag.serve.service import RagService, ServedPipeline
from rag.serve.settings import ServerSettings

__all__ = ["Collections", "ServedCollection"]


@dataclass
class ServedCollection:
    name: str
    service: RagService
    documents: DocumentFolder
    jobs: JobQueue


class Collections:
    """Every served collection by name, the default one first."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self._all: dict[str, ServedCollection] = {}
        for i, collection in enumerate(settings.served()):
            service = RagService(settings, collection, default=i == 0)
            service.load_pipelines()
            documents = DocumentFolder(collection.index, service.default.mirrored_source)
            run = IndexJobRunner(
                collection.index,
                service.default.pipeline,
                settings.job_memory_mb,
                settings.job_timeout_s,
                settings.index_wait_s,
            )
            jobs = JobQueue(documents, run, functools.partial(service.sync, wait=True, strict=True))
            self._all[collection.name] = ServedCollection(collection.name, service, documents, jobs)

    def __iter__(self) -> Iterator[ServedCollection]:
        return iter(self._all.values())

    @property
    def default(self) -> ServedCollection:
        return next(iter(self._all.values()))

    @property
    def services(self) -> list[RagService]:
        return [c.service for c in self]

    def visible(self, key: ApiKey) -> list[ServedCollection]:
        """The collections `key` may use, the default one first."""
        return [c for c in self if key.may_use(c.name)]

    def get(self, name: str | None, key: ApiKey) -> ServedCollection:
        """The collection `name` (None: the first one `key` may use); a 404 for a name that is not served or that
        the key may not use (the same answer, so a key learns nothing of other collections)."""
        visible = self.visible(key)
        if name is None and visible:
            return visible[0]
        for collection in visible:
            if collection.name == name:
                return collection
        names = ", ".join(c.name for c in visible) or "none"
        raise ServiceError(
            f"no collection '{name}' here; this key may use: {names} (see GET /v1/collections)",
            "collection_not_found",
            "collection",
        )

    def model(self, model: str | None, collection: str | None, key: ApiKey) -> tuple[ServedCollection, ServedPipeline]:
        """The collection and pipeline an OpenAI request names: `model` is PIPELINE or COLLECTION/PIPELINE (or None:
        the collection's default pipeline), `collection` names the collection when `model` does not."""
        if model is not None and "/" in model:
            named, _, model = model.partition("/")
            if collection is not None and collection != named:
                raise ServiceError(
                    f"model '{named}/{model}' is in collection '{named}', but the request names collection "
                    f"'{collection}'; give one of them",
                    "invalid_value",
                    "collection",
                )
            if named not in {c.name for c in self.visible(key)}:
                raise ServiceError(
                    f"the model '{named}/{model}' does not exist here (see /v1/models)", "model_not_found", "model"
                )
            collection = named
        served = self.get(collection, key)
        return served, served.service.get(model or None)

    def models(self, key: ApiKey) -> list[dict[str, Any]]:
        """The OpenAI model cards `key` may use: the default collection's pipelines by name, every other
        collection's as COLLECTION/PIPELINE."""
        return [
            {"id": pipeline.model, "object": "model", "created": c.service.started, "owned_by": "rag"}
            for c in self.visible(key)
            for pipeline in c.service.served.values()
        ]
