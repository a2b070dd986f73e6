"""Who a request is: the API key it bears (`Authorization: Bearer KEY`), found in the server's `KeyRing`; 401 when
missing, 403 when no key matches. A server without keys admits everyone as `FULL_ACCESS`.

No `from __future__ import annotations` here: FastAPI reads the dependency's annotation, which
refers to a local object.
"""

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rag.serve.errors import ApiError
from rag.serve.keys import FULL_ACCESS, ApiKey, KeyRing

__all__ = ["STATE_KEY", "KeyGuard", "api_key_of", "operator_only"]

STATE_KEY = "api_key"
"""Where `KeyGuard` leaves the request's `ApiKey` in the ASGI scope's state (for apps mounted behind it)."""

_NO_KEY = (401, "this server needs an API key: send the header 'Authorization: Bearer YOUR_KEY'", "missing_api_key")
_WRONG_KEY = (403, "the API key is not valid for this server", "invalid_api_key")


def _identify(ring: KeyRing, given: str | None) -> ApiKey | tuple[int, str, str]:
    """The key a request bears, or the refusal (status, message, code)."""
    if not ring:
        return FULL_ACCESS
    if not given:
        return _NO_KEY
    key = ring.find(given)
    return key if key is not None else _WRONG_KEY


def api_key_of(ring: KeyRing) -> Callable[..., Awaitable[ApiKey]]:
    """A FastAPI dependency that gives the request's `ApiKey`, refusing requests without a valid one (on a server
    without keys, `FULL_ACCESS`, and the OpenAPI document asks for no authentication)."""
    if not ring:

        async def everyone() -> ApiKey:
            return FULL_ACCESS

        return everyone
    bearer = HTTPBearer(auto_error=False, description="An API key of this server, sent as a bearer token.")

    async def identify(credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None) -> ApiKey:
        found = _identify(ring, credentials.credentials if credentials is not None else None)
        if isinstance(found, ApiKey):
            return found
        status, message, code = found
        raise ApiError(status, message, code=code, headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)

    return identify


def operator_only(key: ApiKey, what: str) -> None:
    """Refuse (403) a key limited to some collections or documents what would show all of them (`what`)."""
    if key.scoped:
        raise ApiError(403, f"{what} is only for keys without a scope; this key is limited", code="scoped_key")


class KeyGuard:
    """An ASGI app in front of another (the MCP tools) that admits only requests bearing a key of `ring`, refusing
    the others as `api_key_of` does, and leaves the `ApiKey` in the scope's state under `STATE_KEY`."""

    def __init__(self, app: Any, ring: KeyRing) -> None:
        self.app = app
        self.ring = ring

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        scheme, _, given = headers.get("authorization", "").partition(" ")
        found = _identify(self.ring, given if scheme.lower() == "bearer" else None)
        if isinstance(found, ApiKey):
            scope.setdefault("state", {})[STATE_KEY] = found
            await self.app(scope, receive, send)
            return
        status, message, code = found
        body = json.dumps(ApiError(status, message, code=code).body())
        extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), *extra],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})
