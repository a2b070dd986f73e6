"""Which torch device a component runs on: "auto" picks CUDA when present; "cuda" must exist."""

from __future__ import annotations

from rag.core.errors import ConfigError

__all__ = ["TORCH_DEVICES", "torch_device"]

TORCH_DEVICES = ("auto", "cpu", "cuda")


def torch_device(requested: str, owner: str) -> str:
    """ "cpu" or "cuda" for `requested`; asking for "cuda" without a GPU is an error, never a fallback."""
    import torch

    if requested not in TORCH_DEVICES:
        raise ConfigError(f"{owner}: device must be one of {', '.join(TORCH_DEVICES)}, got {requested!r}")
    available = torch.cuda.is_available()
    if requested == "auto":
        return "cuda" if available else "cpu"
    if requested == "cuda" and not available:
        raise ConfigError(
            f"{owner}: device='cuda' was asked for but torch {torch.__version__} sees no CUDA GPU; "
            "use device='cpu' or 'auto', or install a CUDA build of torch"
        )
    return requested
