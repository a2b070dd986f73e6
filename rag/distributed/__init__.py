"""Scaling out: the Ray indexing engine, sharded indexes and Ray Serve deployment.

Nothing here imports Ray at import time; `import_ray()` does, and a missing Ray raises
`MissingDependencyError` naming `pip install 'rag[ray]'`.

- `rag.distributed.ray_engine.RayEngine`: loading, chunking and embedding as Ray Data jobs,
  plugged into `rag.indexer.index_folder` (the change detection stays the indexer's).
- `rag.distributed.shards`: an index split into shard folders listed by a manifest, queried by
  fanning out to every shard and merging the hits into the global top-k.
- `rag.distributed.ray_serve`: the FastAPI app of `rag serve` deployed with Ray Serve.
"""

from __future__ import annotations

from typing import Any

from rag.core.errors import MissingDependencyError

__all__ = ["import_ray"]


def import_ray(purpose: str = "the Ray engine (--engine ray)") -> Any:
    """The `ray` module, or MissingDependencyError naming the `ray` extra."""
    try:
        import ray
    except ImportError as exc:
        raise MissingDependencyError("ray", "ray", purpose) from exc
    return ray
