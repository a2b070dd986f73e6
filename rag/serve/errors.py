"""One error envelope for every failure: `{"error": {"message", "type", "param", "code"}}`.

Validation errors (422), unknown routes (404), wrong methods (405), oversized bodies (413), auth
(401/403) and errors raised while answering all leave the server in this shape, as OpenAI's API
does. A failure nobody foresaw is logged with its traceback and answered with a generic 500:
stack traces never reach the client. `error_responses(...)` documents a route's error statuses in the
OpenAPI description, each with the envelope (`ErrorEnvelope`).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from rag.core.errors import (
    ConfigError,
    GenerationCancelled,
    GenerationError,
    IndexNotFoundError,
    IndexStoreError,
    MissingDependencyError,
    ModelLoadError,
    RagError,
)

__all__ = [
    "ERROR_TYPES",
    "SERVICE_STATUS",
    "ApiError",
    "ErrorEnvelope",
    "ServiceError",
    "envelope",
    "error_response",
    "error_responses",
    "from_rag_error",
    "install_error_handlers",
]

logger = logging.getLogger(__name__)

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    499: "client_closed_request",
    500: "server_error",
    502: "server_error",
    503: "service_unavailable",
}


class ServiceError(RagError):
    """What the service layer raises when it cannot serve a request, named by `code` (and the request field,
    `param`); which HTTP status that is, is decided here, in `SERVICE_STATUS`, not by the service."""

    def __init__(self, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.param = param


SERVICE_STATUS = {
    "model_not_found": 404,
    "collection_not_found": 404,
    "document_not_found": 404,
    "job_not_found": 404,
    "no_answer": 400,
    "no_embedder": 400,
    "index_mirrors_folder": 409,
    "invalid_name": 422,
    "not_ready": 503,
}
"""The HTTP status of each `ServiceError` code."""


class ApiError(Exception):
    """An error answered with `status` and the envelope; raise it from any route or dependency."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return envelope(self.message, self.type, self.param, self.code)


def envelope(message: str, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class ErrorDetail(BaseModel):
    message: str = Field(description="What went wrong and what to do about it.")
    type: str = Field(description="The kind of error: invalid_request_error, not_found_error, server_error...")
    param: str | None = Field(description="The request field at fault, if one is.")
    code: str | None = Field(description="A stable name of the error (model_not_found, not_ready...), if it has one.")


class ErrorEnvelope(BaseModel):
    """The body of every error answer, as OpenAI's API has it."""

    error: ErrorDetail


_ERROR_DESCRIPTIONS = {
    400: "The request cannot be served as asked (`invalid_value`: settings the pipeline cannot honour)",
    401: "No API key was sent (`missing_api_key`)",
    403: "The API key is not valid for this server (`invalid_api_key`), or is limited to other collections or "
    "documents (`scoped_key`)",
    404: "Not found",
    409: "Conflict",
    413: "The body is larger than this server accepts (`body_too_large`)",
    422: "Invalid request; `param` names the field at fault",
    500: "An unexpected failure; the server log has the details",
    502: "The generator failed (`generation_failed`)",
    503: "Not ready: models still loading (`not_ready`), no index yet (`no_index`) or an index that cannot be read "
    "(`unavailable`)",
}
_WWW_AUTHENTICATE = {"WWW-Authenticate": {"description": "`Bearer`", "required": True, "schema": {"type": "string"}}}


def error_responses(*statuses: int | tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI description (FastAPI `responses=`) of error answers: each status, or (status, description),
    answered with the envelope as JSON, whatever the route answers otherwise (the document's components must
    hold `ErrorEnvelope`)."""
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}
    responses: dict[int | str, dict[str, Any]] = {}
    for item in statuses:
        status, description = item if isinstance(item, tuple) else (item, _ERROR_DESCRIPTIONS[item])
        responses[status] = {"description": description, "content": content}
        if status == 401:
            responses[status]["headers"] = _WWW_AUTHENTICATE
    return responses


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def from_rag_error(exc: RagError) -> ApiError:
    """The HTTP answer for a library error raised while serving a request."""
    message = str(exc)
    if isinstance(exc, ServiceError):
        return ApiError(SERVICE_STATUS.get(exc.code, 400), message, param=exc.param, code=exc.code)
    if isinstance(exc, GenerationCancelled):
        return ApiError(499, message, code="client_closed")
    if isinstance(exc, ConfigError):  # per-request settings the pipeline cannot honour
        return ApiError(400, message, code="invalid_value")
    if isinstance(exc, IndexNotFoundError):
        return ApiError(503, message, code="no_index")
    if isinstance(exc, IndexStoreError | ModelLoadError | MissingDependencyError):
        return ApiError(503, message, code="unavailable")
    if isinstance(exc, GenerationError):
        return ApiError(502, message, code="generation_failed")
    return ApiError(500, message, code=type(exc).__name__)


def _validation_error(exc: RequestValidationError) -> ApiError:
    problems, params = [], []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        if loc and loc[0] in ("body", "query", "path", "header", "cookie"):
            loc = loc[1:]
        param = ".".join(loc) or None
        if err.get("type") == "json_invalid":
            problems.append(f"the request body is not valid JSON ({err.get('msg', '')})")
            continue
        got = f" (got {_short(err['input'])})" if "input" in err and param else ""
        problems.append(f"{param + ': ' if param else ''}{err.get('msg', 'invalid value')}{got}")
        params.append(param)
    first = exc.errors()[0].get("type") if exc.errors() else None
    return ApiError(422, "; ".join(problems) or "invalid request", param=params[0] if params else None, code=first)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def install_error_handlers(app: FastAPI) -> None:
    """Answer every failure with the envelope."""

    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc)

    async def validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(_validation_error(exc))

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        messages = {404: "no such endpoint; see /docs for the API", 405: "method not allowed on this endpoint"}
        detail = exc.detail if isinstance(exc.detail, str) and exc.status_code not in messages else None
        message = detail or messages.get(exc.status_code) or "request failed"
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return error_response(ApiError(exc.status_code, message, code=code, headers=getattr(exc, "headers", None)))

    async def rag_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RagError)
        error = from_rag_error(exc)
        if error.status >= 500:
            logger.error("request failed: %s", exc)
        return error_response(error)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error answering %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(ApiError(500, "internal server error; the server log has the details"))

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RagError, rag_error)
    app.add_exception_handler(Exception, unexpected)
