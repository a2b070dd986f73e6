"""The index as a Model Context Protocol server (the official `mcp` SDK): `rag mcp --index NAME` over stdio, and
the same tools at `/mcp/` of `rag serve` (streamable HTTP, behind the server's API keys).

Resources: `rag://documents` (the documents: path, title, size, chunks) and `rag://documents/{+path}` (one
document's text as the index holds it), both taking `?collection=NAME` on a server with several collections; both are
URI templates, so that on a server each read knows the API key it comes with. `collection` names one of a server's
collections (left out: the first the key may use); `rag mcp` serves one index and takes none. Tools, with structured
results:

    search(query, top_k=5, filters=None, collection=None)   the retrieval hits (as `rag query --json`)
    ask(question, answer_mode=None, top_k=None, filters=None, collection=None)
                                                            the answer, its citations and abstention
    list_indexes()                                          the indexes in the folder of indexes

`filters` takes a metadata filter in its string or JSON form (docs/filters.md). Errors (an empty query, an
unknown filter field) come back as tool errors with rag's one-line message. On a server, every call is made
within the scope of the API key it came with (its collections, its tenant; docs/serving.md).

No `from __future__ import annotations` here: the SDK finds the `Context` parameter by its annotation.
"""

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio

from rag.api import RAG, FilterLike
from rag.core.errors import ConfigError, MissingDependencyError, RagError
from rag.core.types import Answer, Hit

__all__ = ["describe_index", "mcp_server", "tools_server"]

T = TypeVar("T")


def mcp_server(rag: RAG, index_dir: Path | None = None) -> Any:
    """An `MCPServer` whose tools search and ask `rag` (one call at a time); `list_indexes` lists the indexes
    in `index_dir`."""
    lock = threading.Lock()  # one pipeline: one call at a time

    def locked(call: Callable[..., T]) -> Callable[..., T]:
        def run(*args: Any) -> T:
            with lock:
                return call(*args)

        return run

    def indexes() -> list[dict[str, Any]]:
        folders = sorted(p for p in index_dir.iterdir() if (p / "CURRENT").is_file()) if index_dir else []
        return [describe_index(folder, folder == rag.folder.root) for folder in folders or [rag.folder.root]]

    def one(collection: str | None) -> RAG:
        if collection is not None:
            raise ConfigError(f"this MCP server serves the one index {rag.folder.root.name}; leave 'collection' out")
        return rag

    return tools_server(
        locked(lambda _, where, query, top_k, filters: one(where).query(query, top_k, filters)),
        locked(
            lambda _, where, question, mode, top_k, filters: one(where).ask(
                question, top_k, answer_mode=mode, filters=filters
            )
        ),
        lambda _: indexes(),
        locked(lambda _, where: one(where).documents()),
        locked(lambda _, where, path: one(where).document_text(path)),
    )


def tools_server(
    find: Callable[[Any, str | None, str, int | None, FilterLike | None], list[Hit]],
    answer: Callable[[Any, str | None, str, str | None, int | None, FilterLike | None], Answer],
    indexes: Callable[[Any], list[dict[str, Any]]],
    documents: Callable[[Any, str | None], list[dict[str, Any]]],
    document: Callable[[Any, str | None, str], str],
) -> Any:
    """An `MCPServer` with the tools `search` (over `find`), `ask` (over `answer`) and `list_indexes`, and the
    document resources; each callable gets the HTTP request first (None over stdio), then (but `indexes`) the
    collection asked for (None: left out). A RagError they raise becomes a tool error with its message."""
    try:
        from mcp.server.mcpserver import Context, MCPServer
        from mcp.server.mcpserver.exceptions import ToolError
    except ImportError as exc:
        raise MissingDependencyError("mcp", "mcp", "the MCP server") from exc
    server = MCPServer(
        "rag",
        instructions="Search and question the documents of this index; cite the passages the answers come from.",
    )

    async def guarded(call: Callable[..., Any], ctx: Any, *args: Any) -> Any:
        """`call(request, *args)` in a worker thread (the server's event loop goes on), a RagError as a tool
        error."""
        request = ctx.request_context.request if ctx is not None else None
        try:
            return await anyio.to_thread.run_sync(lambda: call(request, *args))
        except RagError as exc:
            raise ToolError(str(exc)) from None

    @server.tool(description="Find the passages of the indexed documents that best match a query.")
    async def search(
        ctx: Context,
        query: str,
        top_k: int = 5,
        filters: str | dict[str, Any] | None = None,
        collection: str | None = None,
    ) -> dict[str, Any]:
        hits = await guarded(find, ctx, collection, query, top_k, filters)
        return {"hits": [hit.to_dict() for hit in hits]}

    @server.tool(
        description="Answer a question from the indexed documents, citing the passages used, or abstain when "
        "they do not answer it (abstained: true).",
    )
    async def ask(
        ctx: Context,
        question: str,
        answer_mode: str | None = None,
        top_k: int | None = None,
        filters: str | dict[str, Any] | None = None,
        collection: str | None = None,
    ) -> dict[str, Any]:
        result: Answer = await guarded(answer, ctx, collection, question, answer_mode, top_k, filters)
        return result.to_dict()

    @server.tool(description="The indexes this server can see: name, documents, chunks, pipeline, last update.")
    async def list_indexes(ctx: Context) -> dict[str, Any]:
        return {"indexes": await guarded(indexes, ctx)}

    @server.resource(
        "rag://documents{?collection}",
        name="documents",
        mime_type="application/json",
        description="The indexed documents (of a server's collection: ?collection=NAME).",
    )
    async def list_documents(ctx: Context, collection: str = "") -> str:
        return json.dumps({"documents": await guarded(documents, ctx, collection or None)}, ensure_ascii=False)

    @server.resource(
        "rag://documents/{+path}{?collection}",
        name="document",
        mime_type="text/plain",
        description="A document's text as the index holds it (its path as listed by rag://documents; of a "
        "server's collection: ?collection=NAME).",
    )
    async def read_document(ctx: Context, path: str, collection: str = "") -> str:
        text: str = await guarded(document, ctx, collection or None, path)
        return text

    return server


def describe_index(folder: Path, served: bool) -> dict[str, Any]:
    """Name, files, chunks, pipeline and last update of the index in `folder` (or the error that stops reading
    it)."""
    try:
        return {"name": folder.name, "served": served, **RAG(folder).summary()}
    except RagError as exc:
        return {"name": folder.name, "served": served, "error": str(exc)}
