"""API keys: bearer tokens compared in constant time; 401 when missing, 403 when wrong.

No `from __future__ import annotations` here: FastAPI reads the dependency's annotation, which
refers to a local object.
"""

import hmac
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

from fastapi import Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rag.serve.errors import ApiError

__all__ = ["KeyGuard", "key_matches", "require_api_key"]

_NO_KEY = "this server needs an API key: send the header 'Authorization: Bearer YOUR_KEY'"


def key_matches(given: str, keys: Sequence[str]) -> bool:
    """Whether `given` is one of `keys`; every key is compared, each in constant time."""
    given_bytes = given.encode("utf-8")
    found = False
    for key in keys:
        found |= hmac.compare_digest(given_bytes, key.encode("utf-8"))
    return found


def require_api_key(keys: Sequence[str]) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency that admits requests bearing one of `keys` (`Authorization: Bearer KEY`)."""
    bearer = HTTPBearer(auto_error=False, description="An API key of this server, sent as a bearer token.")
    frozen = tuple(keys)

    async def check(credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None) -> None:
        if credentials is None or not credentials.credentials:
            raise ApiError(
                401,
                _NO_KEY,
                code="missing_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not key_matches(credentials.credentials, frozen):
            raise ApiError(403, "the API key is not valid for this server", code="invalid_api_key")

    return check


class KeyGuard:
    """An ASGI app in front of another (the MCP tools) that admits only requests bearing one of `keys`, refusing
    the others as `require_api_key` does (401 without a key, 403 with a wrong one; the one error envelope)."""

    def __init__(self, app: Any, keys: Sequence[str]) -> None:
        self.app = app
        self.keys = tuple(keys)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        scheme, _, key = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and key and key_matches(key, self.keys):
            await self.app(scope, receive, send)
            return
        status, message, code = (
            (403, "the API key is not valid for this server", "invalid_api_key")
            if key
            else (
                401,
                "this server needs an API key: send the header 'Authorization: Bearer YOUR_KEY'",
                "missing_api_key",
            )
        )
        body = json.dumps({"error": {"message": message, "type": "authentication_error", "param": None, "code": code}})
        extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), *extra],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})
