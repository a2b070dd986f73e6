"""The one exception tree of the package.

    RagError
    ├── ConfigError              settings, pipeline definitions and files that cannot be used
    │   └── PipelineError        a pipeline that fails validation when it is built or run
    ├── MissingDependencyError   an optional extra is not installed (also an ImportError)
    ├── ModelLoadError           a model could not be found or loaded
    ├── LoaderError              one document could not be read (reported, then skipped)
    ├── GenerationError          a generator failed while generating
    │   └── GenerationCancelled  the consumer of a stream stopped reading (raised from on_token)
    ├── InputPathError           a folder or file given by the user does not exist or is unusable
    ├── InvalidArgumentError     an argument of a library call that cannot be used (also a ValueError)
    ├── BrokenContractError      a part broke its own contract: a wrong number of results (also a RuntimeError)
    └── IndexStoreError          an index folder that cannot be used
        ├── IndexNotFoundError
        ├── IncompatibleIndexError   other format version, embedding model or chunker
        └── IndexLockedError         another process is updating the index

Every message says what was wrong, the value received, and what to do.
"""

from __future__ import annotations

__all__ = [
    "BrokenContractError",
    "ConfigError",
    "GenerationCancelled",
    "GenerationError",
    "IncompatibleIndexError",
    "IndexLockedError",
    "IndexNotFoundError",
    "IndexStoreError",
    "InputPathError",
    "InvalidArgumentError",
    "LoaderError",
    "MissingDependencyError",
    "ModelLoadError",
    "PipelineError",
    "RagError",
]


class RagError(Exception):
    """Base class of every error raised by `rag`."""


class ConfigError(RagError):
    """A setting, pipeline definition or pipeline file that cannot be used."""


class PipelineError(ConfigError):
    """A pipeline that fails validation (unknown type, bad connection, missing input, cycle)."""


class MissingDependencyError(RagError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the package '{package}', which is not installed; "
            f"install it with: pip install 'rag[{extra}]'"
        )
        self.package = package
        self.extra = extra


class ModelLoadError(RagError):
    """A model could not be found or loaded."""


class LoaderError(RagError):
    """One document could not be read; the indexer reports it and skips the file.

    `reason` says what is wrong with the file; `path` names it when known.
    """

    def __init__(self, reason: str, path: str | None = None) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.reason = reason
        self.path = path


class GenerationError(RagError):
    """A generator failed while generating (the model or server broke off)."""


class GenerationCancelled(GenerationError):
    """Generation was stopped because whoever read the streamed text went away."""


class InputPathError(RagError):
    """A path given by the user does not exist or cannot be used."""


class InvalidArgumentError(RagError, ValueError):
    """An argument of a library call that cannot be used (an array of the wrong shape, an unknown name)."""


class BrokenContractError(RagError, RuntimeError):
    """A part broke its own contract (a batch function returned the wrong number of results)."""


class ResourceLimitError(RagError):
    """A job went over the memory or time it is allowed, and was stopped."""


class IndexStoreError(RagError):
    """An index folder that cannot be used."""


class IndexNotFoundError(IndexStoreError):
    """No index exists at the given location."""


class IncompatibleIndexError(IndexStoreError):
    """The index was written by another format version or with other embedding settings."""


class IndexLockedError(IndexStoreError):
    """Another process holds the index's write lock."""
