"""The index as a Model Context Protocol server (the official `mcp` SDK): `rag mcp --index NAME` over stdio.

Tools, with structured results:

    search(query, top_k=5, filters=None)                      the retrieval hits (as `rag query --json`)
    ask(question, answer_mode=None, top_k=None, filters=None)  the answer, its citations and abstention
    list_indexes()                                            the indexes in the folder of indexes

`filters` takes a metadata filter in its string or JSON form (docs/filters.md). Errors (an empty query, an
unknown filter field) come back as tool errors with rag's one-line message.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from rag.api import RAG
from rag.core.errors import MissingDependencyError, RagError

__all__ = ["mcp_server"]


def mcp_server(rag: RAG, index_dir: Path | None = None) -> Any:
    """An `MCPServer` whose tools search and ask `rag`; `list_indexes` lists the indexes in `index_dir`."""
    try:
        from mcp.server.mcpserver import MCPServer
        from mcp.server.mcpserver.exceptions import ToolError
    except ImportError as exc:
        raise MissingDependencyError("mcp", "mcp", "rag mcp") from exc
    server = MCPServer(
        "rag",
        instructions="Search and question the documents of this index; cite the passages the answers come from.",
    )
    lock = threading.Lock()  # one pipeline: one question at a time

    def guarded(call: Any) -> Any:
        try:
            with lock:
                return call()
        except RagError as exc:
            raise ToolError(str(exc)) from None

    @server.tool(description="Find the passages of the indexed documents that best match a query.")
    def search(query: str, top_k: int = 5, filters: str | dict[str, Any] | None = None) -> dict[str, Any]:
        hits = guarded(lambda: rag.query(query, top_k, filters))
        return {"hits": [hit.to_dict() for hit in hits]}

    @server.tool(
        description="Answer a question from the indexed documents, citing the passages used, or abstain when "
        "they do not answer it (abstained: true)."
    )
    def ask(
        question: str,
        answer_mode: str | None = None,
        top_k: int | None = None,
        filters: str | dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        answer = guarded(lambda: rag.ask(question, top_k, answer_mode=answer_mode, filters=filters))
        data: dict[str, Any] = answer.to_dict()
        return data

    @server.tool(description="The indexes this server can see: name, documents, chunks, pipeline, last update.")
    def list_indexes() -> dict[str, Any]:
        folders = sorted(p for p in index_dir.iterdir() if (p / "CURRENT").is_file()) if index_dir else []
        folders = folders or [rag.folder.root]
        return {"indexes": [_describe(folder, folder == rag.folder.root) for folder in folders]}

    return server


def _describe(folder: Path, served: bool) -> dict[str, Any]:
    from rag.store.index_folder import IndexFolder

    index = IndexFolder(folder)
    try:
        manifest = index.manifest()
    except RagError as exc:
        return {"name": folder.name, "served": served, "error": str(exc)}
    return {
        "name": folder.name,
        "served": served,
        "files": manifest["counts"]["files"],
        "chunks": manifest["counts"]["chunks"],
        "pipeline": manifest["pipeline"].get("name", ""),
        "updated": manifest.get("updated"),
    }
