"""`/v1/documents` (upload, list, delete) and `/v1/jobs/{id}`: uploads are indexed by background jobs."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from rag.serve.documents import DocumentFolder, JobQueue
from rag.serve.errors import ApiError, error_responses

__all__ = ["documents_router"]

_MAX_FILES = 100


class Job(BaseModel):
    id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    action: Literal["upload", "delete"]
    documents: list[str] = Field(description="The documents it was queued for.")
    pid: int = Field(description="The server process that runs it.")
    created: float
    started: float | None
    finished: float | None
    report: dict[str, Any] | None = Field(description="The indexing run's report, once it succeeded.")
    error: str | None = Field(description="Why it failed.")


class Document(BaseModel):
    id: str
    bytes: int
    modified: int = Field(description="Unix time of the last upload.")


class DocumentList(BaseModel):
    documents: list[Document]


class SavedDocument(BaseModel):
    id: str = Field(description="The file name it was saved under (made safe).")
    bytes: int


class Upload(BaseModel):
    documents: list[SavedDocument]
    job: Job = Field(description="The job that indexes them: poll GET /v1/jobs/{id}.")


class Deletion(BaseModel):
    deleted: str
    job: Job = Field(description="The job that takes it out of the index: poll GET /v1/jobs/{id}.")


_MIRRORS = (409, "The index mirrors another folder, so its documents cannot change here (`index_mirrors_folder`)")
_NO_DOCUMENT = (404, "No uploaded document has this id (`document_not_found`)")


def documents_router(documents: DocumentFolder, jobs: JobQueue) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["documents"])

    @router.post(
        "/documents",
        status_code=202,
        response_model=Upload,
        summary="Upload files (or a text) into the index; indexed by a background job",
        responses=error_responses(_MIRRORS, 413, 422, 500, 503),
    )
    async def upload(
        files: Annotated[list[UploadFile] | None, File(description="Documents to add or replace (by name).")] = None,
        text: Annotated[str | None, Form(description="A document given as text.")] = None,
        name: Annotated[str | None, Form(description="File name for `text` (default: from its content).")] = None,
    ) -> JSONResponse:
        await run_in_threadpool(documents.check_writable)
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
        saved = [await run_in_threadpool(documents.save, file_name, data) for file_name, data in uploads]
        job = jobs.submit("upload", [d["id"] for d in saved])
        return JSONResponse({"documents": saved, "job": job}, status_code=202)

    @router.get(
        "/documents", response_model=DocumentList, summary="The uploaded documents", responses=error_responses(500)
    )
    async def list_documents() -> JSONResponse:
        return JSONResponse({"documents": await run_in_threadpool(documents.list)})

    @router.delete(
        "/documents/{document_id}",
        status_code=202,
        response_model=Deletion,
        summary="Delete an uploaded document",
        responses=error_responses(_NO_DOCUMENT, _MIRRORS, 422, 500, 503),
    )
    async def delete(document_id: str) -> JSONResponse:
        await run_in_threadpool(documents.check_writable)
        await run_in_threadpool(documents.delete, document_id)
        return JSONResponse({"deleted": document_id, "job": jobs.submit("delete", [document_id])}, status_code=202)

    @router.get(
        "/jobs/{job_id}",
        response_model=Job,
        summary="A background job: queued, running, succeeded or failed",
        responses=error_responses((404, "No job has this id (`job_not_found`)"), 422, 500),
    )
    async def job(job_id: str) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(jobs.get, job_id))

    return router
