"""API keys: bearer tokens compared in constant time; 401 when missing, 403 when wrong.

No `from __future__ import annotations` here: FastAPI reads the dependency's annotation, which
refers to a local object.
"""

import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated

from fastapi import Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rag.serve.errors import ApiError

__all__ = ["key_matches", "require_api_key"]


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
                "this server needs an API key: send the header 'Authorization: Bearer YOUR_KEY'",
                code="missing_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not key_matches(credentials.credentials, frozen):
            raise ApiError(403, "the API key is not valid for this server", code="invalid_api_key")

    return check
