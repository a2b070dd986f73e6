"""`/v1/documents` (upload, list, delete) and `/v1/jobs/{id}`: uploads are indexed by background jobs.

Each request names its collection (`collection`; left out: the key's first). A tenant's key uploads into, lists
and deletes only its tenant's folder, and sees only its own jobs, with their reports cut to its own files.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from rag.serve.auth import api_key_of
from rag.serve.collections import Collections, ServedCollection
from rag.serve.errors import ApiError, ServiceError, error_responses
from rag.serve.keys import ApiKey, KeyRing

__all__ = ["documents_router"]

_MAX_FILES = 100
_FIELD_VALUES = (str, int, float, bool)


class Job(BaseModel):
    id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    action: Literal["upload", "delete"]
    documents: list[str] = Field(description="The documents it was queued for.")
    tenant: str | None = Field(None, description="The tenant whose key queued it (null: a key without one).")
    pid: int = Field(description="The server process that runs it.")
    created: float
    started: float | None
    finished: float | None
    report: dict[str, Any] | None = Field(
        description="The indexing run's report, once it succeeded (for a tenant's key: its own files only)."
    )
    error: str | None = Field(description="Why it failed.")


class Document(BaseModel):
    id: str = Field(description="Its path in the uploads folder: NAME, or TENANT/NAME for a tenant's upload.")
    bytes: int
    modified: int = Field(description="Unix time of the last upload.")


class DocumentList(BaseModel):
    documents: list[Document]


class SavedDocument(BaseModel):
    id: str = Field(description="The path it was saved under (its name made safe, in its tenant's folder).")
    bytes: int


class Upload(BaseModel):
    documents: list[SavedDocument]
    job: Job = Field(description="The job that indexes them: poll GET /v1/jobs/{id}.")


class Deletion(BaseModel):
    deleted: str
    job: Job = Field(description="The job that takes it out of the index: poll GET /v1/jobs/{id}.")


_MIRRORS = (409, "The index mirrors another folder, so its documents cannot change here (`index_mirrors_folder`)")
_NO_DOCUMENT = (404, "No uploaded document has this id (`document_not_found`) or no such collection")
_NO_COLLECTION = (404, "No collection of this name for this key (`collection_not_found`)")
_COLLECTION = "The collection (left out: the first this key may use; see GET /v1/collections)."


def documents_router(collections: Collections, ring: KeyRing) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["documents"])
    identified = Depends(api_key_of(ring))

    def writable(name: str | None, key: ApiKey) -> ServedCollection:
        """The collection a key changes documents in; a key limited by a filter but not to a tenant only reads."""
        collection = collections.get(name, key)
        if key.filter is not None and key.tenant is None:
            raise ApiError(403, "this key may only read: its scope is a filter without a tenant", code="scoped_key")
        collection.documents.check_writable()
        return collection

    @router.post(
        "/documents",
        status_code=202,
        response_model=Upload,
        summary="Upload files (or a text) into the index; indexed by a background job",
        responses=error_responses(_MIRRORS, _NO_COLLECTION, 403, 413, 422, 500, 503),
    )
    async def upload(
        files: Annotated[list[UploadFile] | None, File(description="Documents to add or replace (by name).")] = None,
        text: Annotated[str | None, Form(description="A document given as text.")] = None,
        name: Annotated[str | None, Form(description="File name for `text` (default: from its content).")] = None,
        metadata: Annotated[
            str | None,
            Form(
                description='Fields every uploaded document\'s chunks get, as a JSON object ({"kind": "contract", '
                '"year": 2026}): strings, numbers, true/false or lists of them (see docs/filters.md).'
            ),
        ] = None,
        collection: Annotated[str | None, Form(description=_COLLECTION)] = None,
        key: ApiKey = identified,
    ) -> JSONResponse:
        served = await run_in_threadpool(writable, collection, key)
        fields = _metadata(metadata, key)
        uploads: list[tuple[str, bytes]] = []
        for upload in files or []:
            uploads.append((upload.filename or "", await upload.read()))
        if text is not None:
            if not text.strip():
                raise ApiError(422, "text is empty", param="text")
            fallback = hashlib.sha256(text.encode()).hexdigest()[:16] + ".txt"
            uploads.append((name or fallback, text.encode("utf-8")))
        if not uploads:
            raise ApiError(422, "send files (multipart field 'files') or a 'text' field", param="files")
        if len(uploads) > _MAX_FILES:
            raise ApiError(422, f"at most {_MAX_FILES} files per upload", param="files")
        if any(not data for _, data in uploads):
            raise ApiError(422, "an uploaded file is empty", param="files")
        saved = [
            await run_in_threadpool(served.documents.save, file_name, data, key.tenant, fields)
            for file_name, data in uploads
        ]
        job = served.jobs.submit("upload", [d["id"] for d in saved], key.tenant)
        return JSONResponse({"documents": saved, "job": job}, status_code=202)

    @router.get(
        "/documents",
        response_model=DocumentList,
        summary="The uploaded documents (a tenant's key: its own)",
        responses=error_responses(_NO_COLLECTION, 500),
    )
    async def list_documents(
        collection: Annotated[str | None, Query(description=_COLLECTION)] = None, key: ApiKey = identified
    ) -> JSONResponse:
        served = collections.get(collection, key)
        if key.filter is not None and key.tenant is None:
            raise ApiError(403, "this key may only read the index: its scope is a filter", code="scoped_key")
        return JSONResponse({"documents": await run_in_threadpool(served.documents.list, key.tenant)})

    async def delete(document_id: str, collection: str | None, key: ApiKey) -> JSONResponse:
        served = await run_in_threadpool(writable, collection, key)
        await run_in_threadpool(served.documents.delete, document_id, key.tenant)
        job = served.jobs.submit("delete", [document_id], key.tenant)
        return JSONResponse({"deleted": document_id, "job": job}, status_code=202)

    refusals = error_responses(_NO_DOCUMENT, _MIRRORS, 403, 422, 500, 503)

    @router.delete(
        "/documents/{document_id}",
        status_code=202,
        response_model=Deletion,
        summary="Delete an uploaded document",
        responses=refusals,
    )
    async def delete_document(
        document_id: str,
        collection: Annotated[str | None, Query(description=_COLLECTION)] = None,
        key: ApiKey = identified,
    ) -> JSONResponse:
        return await delete(document_id, collection, key)

    @router.delete(
        "/documents/{tenant}/{document_id}",
        status_code=202,
        response_model=Deletion,
        summary="Delete a tenant's uploaded document",
        responses=refusals,
    )
    async def delete_tenant_document(
        tenant: str,
        document_id: str,
        collection: Annotated[str | None, Query(description=_COLLECTION)] = None,
        key: ApiKey = identified,
    ) -> JSONResponse:
        return await delete(f"{tenant}/{document_id}", collection, key)

    @router.get(
        "/jobs/{job_id}",
        response_model=Job,
        summary="A background job: queued, running, succeeded or failed",
        responses=error_responses((404, "No job has this id for this key (`job_not_found`)"), 422, 500),
    )
    async def job(job_id: str, key: ApiKey = identified) -> JSONResponse:
        for served in collections.visible(key):
            found = await run_in_threadpool(served.jobs.get, job_id)
            if found is not None and (not key.scoped or (key.tenant is not None and found.get("tenant") == key.tenant)):
                return JSONResponse(_tenant_view(found, key.tenant) if key.tenant is not None else found)
        raise ServiceError(f"no job '{job_id}'", "job_not_found")

    return router


def _metadata(text: str | None, key: ApiKey) -> dict[str, Any]:
    """The upload's `metadata` field, checked (422 for anything but an object of filterable values; 403 for a
    tenant's key that sets another tenant)."""
    if text is None:
        return {}
    try:
        fields = json.loads(text)
    except ValueError:
        raise ApiError(422, 'metadata must be a JSON object, like {"kind": "contract"}', param="metadata") from None
    if not isinstance(fields, dict) or not all(_filterable(value) for value in fields.values()):
        raise ApiError(
            422,
            "metadata must be a JSON object of strings, numbers, true/false or lists of them",
            param="metadata",
        )
    if key.tenant is not None and fields.get("tenant", key.tenant) != key.tenant:
        raise ApiError(403, "this key uploads for its own tenant only; leave 'tenant' out", code="scoped_key")
    return fields


def _filterable(value: Any) -> bool:
    if isinstance(value, list):
        return bool(value) and all(isinstance(item, _FIELD_VALUES) for item in value)
    return isinstance(value, _FIELD_VALUES)


def _tenant_view(job: dict[str, Any], tenant: str) -> dict[str, Any]:
    """A job as a tenant's key sees it: the report cut to its own files (no counts of the whole index)."""
    report = job.get("report")
    if report is None:
        return job
    mine = f"{tenant}/"
    cut = {
        name: [item for item in report.get(name, []) if str(item.get("path", "")).startswith(mine)]
        for name in ("failures", "skipped")
    }
    return job | {"report": {**cut, "seconds": report.get("seconds")}}
