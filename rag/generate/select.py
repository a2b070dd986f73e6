"""Swap the generator of a pipeline for another backend, keeping its decoding options."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from rag.core.component import input_sockets
from rag.core.errors import ConfigError, PipelineError
from rag.core.pipeline import Pipeline
from rag.core.registry import resolve_type
from rag.core.serialization import pipeline_from_dict

__all__ = ["GENERATOR_TYPES", "replace_generator"]

GENERATOR_TYPES = {
    "transformers": "TransformersGenerator",
    "vllm": "VLLMGenerator",
    "openai": "OpenAIGenerator",
    "llamacpp": "LlamaCppGenerator",
}
"""Backend name (as `rag ask --generator` takes it) -> component type."""


def replace_generator(
    pipeline: Pipeline,
    backend: str,
    model: str | None = None,
    base_url: str | None = None,
    allowed: Collection[str] = (),
) -> Pipeline:
    """The same pipeline with its generator (the one component with a `reply` output) on `backend`.

    `model` defaults to the current generator's model; `base_url` is for the "openai" backend
    (an OpenAI-compatible server such as `vllm serve`). The decoding options carry over.
    """
    if backend not in GENERATOR_TYPES:
        raise ConfigError(f"generator must be one of {', '.join(GENERATOR_TYPES)}, got {backend!r}")
    if base_url is not None and backend != "openai":
        raise ConfigError(f"--base-url is for the 'openai' generator (a server), not '{backend}'")
    names = [name for name, component in pipeline.components.items() if "reply" in component.outputs]
    if len(names) != 1:
        raise PipelineError(
            f"pipeline '{pipeline.name}' has {len(names)} generators (components with a 'reply' output); "
            "the generator can only be replaced in a pipeline with exactly one"
        )
    data = pipeline.to_dict()
    old: dict[str, Any] = data["components"][names[0]].get("init", {})
    init: dict[str, Any] = {"model": model or old.get("model")}
    if not init["model"]:
        raise ConfigError(f"the '{backend}' generator needs a model name; give --model")
    if old.get("decoding"):
        init["decoding"] = old["decoding"]
    if base_url is not None:
        init["base_url"] = base_url
    data["components"][names[0]] = {"type": GENERATOR_TYPES[backend], "init": init}
    # an input the new backend does not take (the citation constraint of transformers) is left unconnected
    takes = input_sockets(resolve_type(GENERATOR_TYPES[backend]))
    data["connections"] = [
        c
        for c in data["connections"]
        if c["receiver"].partition(".")[0] != names[0] or c["receiver"].partition(".")[2] in takes
    ]
    return pipeline_from_dict(data, allowed, f"pipeline '{pipeline.name}' with the {backend} generator")
