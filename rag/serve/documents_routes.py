"""`/v1/documents` (upload, list, delete) and `/v1/jobs/{id}`: uploads are indexed by background jobs."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from rag.serve.documents import DocumentFolder, JobQueue
from rag.serve.errors import ApiError

__all__ = ["documents_router"]

_MAX_FILES = 100


def documents_router(documents: DocumentFolder, jobs: JobQueue) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["documents"])

    @router.post(
        "/documents",
        status_code=202,
        summary="Upload files (or a text) into the index; indexed by a background job",
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

    @router.get("/documents", summary="The uploaded documents")
    async def list_documents() -> dict[str, Any]:
        return {"documents": await run_in_threadpool(documents.list)}

    @router.delete("/documents/{document_id}", status_code=202, summary="Delete an uploaded document")
    async def delete(document_id: str) -> JSONResponse:
        await run_in_threadpool(documents.check_writable)
        await run_in_threadpool(documents.delete, document_id)
        return JSONResponse({"deleted": document_id, "job": jobs.submit("delete", [document_id])}, status_code=202)

    @router.get("/jobs/{job_id}", summary="A background job: queued, running, succeeded or failed")
    async def job(job_id: str) -> dict[str, Any]:
        return await run_in_threadpool(jobs.get, job_id)

    return router
