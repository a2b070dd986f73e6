"""The HTTP API: `rag serve`, or `create_app(ServerSettings(...))` for any ASGI server.

Importing this package loads nothing heavy; FastAPI and uvicorn come with the `serve` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["ServerSettings", "create_app", "serve"]

if TYPE_CHECKING:
    from rag.serve.app import create_app, serve
    from rag.serve.settings import ServerSettings


def __getattr__(name: str) -> Any:
    if name in ("create_app", "serve"):
        from rag.serve import app

        return getattr(app, name)
    if name == "ServerSettings":
        from rag.serve.settings import ServerSettings

        return ServerSettings
    raise AttributeError(f"module 'rag.serve' has no attribute {name!r}")
