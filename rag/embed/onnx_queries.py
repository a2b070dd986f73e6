"""Encode queries with ONNX Runtime on the CPU: the same sentence-transformers model, a faster forward pass.

A query is a handful of tokens, and at that size a PyTorch forward pass is mostly per-operator overhead:
all-MiniLM-L6-v2 takes about 21 ms per query on one core of the 2-core CI machine through PyTorch and
7 ms through ONNX Runtime, with vectors equal to 1e-6. On 256-token passages ONNX Runtime was 10-20%
slower there, so documents stay on PyTorch (see docs/retrieval.md, "Query backend").

`onnx_query_model(model)` returns a copy of a loaded `SentenceTransformer` whose transformer runs an
ONNX export of the same weights; tokenization, prompts, pooling and normalisation stay
sentence-transformers' own. The copy is checked against the original on a probe query before use.
Exports are cached under `rag.runtime.cache.cache_dir() / "onnx"`, keyed by the model's configuration and a
fingerprint of its weights, and written atomically (a temporary file renamed into place).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers.modeling_outputs import BaseModelOutput

from rag.core.errors import MissingDependencyError, ModelLoadError
from rag.runtime.cache import cache_dir

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["OnnxNetwork", "onnx_available", "onnx_query_model"]

logger = logging.getLogger(__name__)

_PROBE = "how does the probe query compare between backends?"
_OPSET = 17


def onnx_available() -> bool:
    """Whether onnxruntime and onnx (needed to export) are importable."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def onnx_query_model(model: SentenceTransformer, name: str) -> SentenceTransformer:
    """A copy of `model` whose transformer runs on ONNX Runtime; `name` is for messages.

    Raises `MissingDependencyError` without onnxruntime/onnx and `ModelLoadError` when the model cannot be
    exported or the exported copy does not reproduce the model's query vectors.
    """
    if not onnx_available():
        raise MissingDependencyError("onnxruntime and onnx", "onnx", "query encoding on ONNX Runtime")
    transformer = model[0]
    network = getattr(transformer, "auto_model", None)
    tokenizer = getattr(transformer, "tokenizer", None)
    if not isinstance(network, torch.nn.Module) or tokenizer is None:
        raise ModelLoadError(
            f"query_backend 'onnx' needs a transformer model; the first module of '{name}' is "
            f"{type(transformer).__name__}. Use query_backend 'torch'."
        )
    probe = tokenizer([_PROBE, "short"], return_tensors="pt", padding=True)
    accepted = inspect.signature(network.forward).parameters
    input_names = [key for key in probe if key in accepted]
    try:
        path = _exported(network, {key: probe[key] for key in input_names})
        session = _session(path)
    except Exception as exc:
        raise ModelLoadError(f"cannot export '{name}' to ONNX for query encoding: {exc}") from exc
    copied = copy.deepcopy(model)
    # sentence-transformers 6 keeps the network in `model` (`auto_model` is a property); 5.x in `auto_model`
    attribute = "model" if "model" in copied[0]._modules else "auto_model"
    setattr(copied[0], attribute, OnnxNetwork(session, network.config, input_names))
    expected = model.encode_query([_PROBE], convert_to_numpy=True)
    found = copied.encode_query([_PROBE], convert_to_numpy=True)
    if not np.allclose(found, expected, atol=1e-4):
        raise ModelLoadError(
            f"the ONNX export of '{name}' does not reproduce its query vectors (largest difference "
            f"{float(np.abs(found - expected).max()):.2e}); use query_backend 'torch'"
        )
    return copied


class OnnxNetwork(torch.nn.Module):
    """Stands in for the transformers model inside sentence-transformers' Transformer module."""

    def __init__(self, session: Any, config: Any, input_names: list[str]) -> None:
        super().__init__()
        self.session = session
        self.config = config
        self.input_names = input_names

    def forward(self, **features: Any) -> BaseModelOutput:
        feeds = {key: features[key].cpu().numpy().astype(np.int64) for key in self.input_names}
        (hidden,) = self.session.run(["last_hidden_state"], feeds)
        return BaseModelOutput(last_hidden_state=torch.from_numpy(hidden))


def _fingerprint(network: Any, input_names: list[str]) -> str:
    digest = hashlib.sha256()
    digest.update(f"{torch.__version__}|{_OPSET}|{input_names}|{network.config.to_json_string()}".encode())
    with torch.no_grad():
        for key, tensor in network.state_dict().items():
            digest.update(f"{key}{tuple(tensor.shape)}{float(tensor.double().sum()):.10e}".encode())
    return digest.hexdigest()[:20]


def _exported(network: Any, inputs: dict[str, Any]) -> Path:
    """The ONNX file of `network` (exporting it on first use) with dynamic batch and sequence axes."""
    names = list(inputs)
    target = cache_dir() / "onnx" / f"{_fingerprint(network, names)}.onnx"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.network = network

        def forward(self, *tensors: Any) -> Any:
            return self.network(**dict(zip(names, tensors, strict=True))).last_hidden_state

    handle, temporary = tempfile.mkstemp(dir=target.parent, suffix=".onnx.tmp")
    os.close(handle)
    try:
        logger.info("exporting %s to ONNX at %s", type(network).__name__, target)
        was_training = network.training
        network.eval()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes about Python branches; the result is checked instead
            torch.onnx.export(
                LastHiddenState(),
                tuple(inputs.values()),
                temporary,
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes={key: {0: "batch", 1: "tokens"} for key in [*names, "last_hidden_state"]},
                opset_version=_OPSET,
                dynamo=False,
            )
        network.train(was_training)
        os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return target


def _session(path: Path) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # follows OMP_NUM_THREADS like PyTorch
    options.inter_op_num_threads = 1
    # a query call is short and interleaves with other work (HTTP, BM25): idle threads sleep instead of spinning
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
