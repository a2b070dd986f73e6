"""LLM reranking: score (query, passage) pairs with a causal language model (SmolLM2 by default).

Two scores, chosen by `method`:

- ``"query_likelihood"`` (the default): how well the passage predicts the query when the model is asked to
  write a question about it (UPR, Sachan et al. 2022): exp(mean log-probability of the query's tokens), the
  geometric mean of their probabilities (1 / perplexity), in (0, 1].
- ``"yes_no"``: P(yes) / (P(yes) + P(no)) for the next token after "... Is the passage relevant to the
  question? Answer yes or no:" (every casing and leading-space variant of each word counted), in [0, 1].

Measured with SmolLM2-135M-Instruct on CPU (docs/reranking.md): query likelihood put the relevant passage
first in 14 of 14 easy cases of four passages, yes/no in 1 to 3 of 6 (chance: the 135M model answers "No" to
nearly everything and its yes/no margin barely moves with the passage). The model loads through
`rag.generate.transformers_generator.load_causal_lm`, as the generator's does.
"""

from __future__ import annotations

import logging
import string
import threading
from collections.abc import Sequence
from typing import Any

from rag.core.errors import ConfigError
from rag.rerank.base import Reranker
from rag.runtime.devices import TORCH_DEVICES, torch_device

__all__ = ["DEFAULT_PROMPTS", "METHODS", "LLMReranker", "left_pad"]

logger = logging.getLogger(__name__)

METHODS = ("query_likelihood", "yes_no")
DEFAULT_PROMPTS = {
    "query_likelihood": "Please write a question based on this passage.\n\n{passage}",
    "yes_no": "Passage: {passage}\n\nQuestion: {query}\n\nIs the passage relevant to the question? Answer yes or no:",
}
"""The user message for each method; the chat template is applied when the model has one."""
_FIELDS = {"query_likelihood": {"passage"}, "yes_no": {"passage", "query"}}
_YES = ("yes", "Yes", " yes", " Yes")
_NO = ("no", "No", " no", " No")


class LLMReranker(Reranker):
    """Re-order hits by a causal LM's judgement of each (query, passage) pair; see the module docstring.

    `prompt` is the user message (default: `DEFAULT_PROMPTS[method]`) with the field ``{passage}``, and for
    ``yes_no`` also ``{query}`` (query likelihood must not show the query: it is what the model predicts).
    Pairs go through the model `batch_size` at a time, padded on the left; a pair longer than `max_length`
    tokens (None: no limit) has its passage cut, never the query or the instruction. `score_threshold` is on
    the method's scale. `model` is loaded on first use (`warm_up`) like `TransformersGenerator`'s.
    """

    def __init__(
        self,
        model: str = "HuggingFaceTB/SmolLM2-135M-Instruct",
        method: str = "query_likelihood",
        prompt: str | None = None,
        top_k: int | None = 10,
        score_threshold: float | None = None,
        batch_size: int = 8,
        max_length: int | None = 512,
        device: str = "auto",
    ) -> None:
        self.check_settings(top_k, score_threshold)
        problems = []
        if not isinstance(model, str) or not model.strip():
            problems.append(f"model must be a non-empty model name or folder, got {model!r}")
        if method not in METHODS:
            problems.append(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        elif prompt is not None:
            problems += _prompt_problems(prompt, _FIELDS[method], method)
        if not isinstance(batch_size, int) or batch_size < 1:
            problems.append(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if max_length is not None and (not isinstance(max_length, int) or max_length < 8):
            problems.append(f"max_length must be None or an integer >= 8, got {max_length!r}")
        if device not in TORCH_DEVICES:
            problems.append(f"device must be one of {', '.join(TORCH_DEVICES)}, got {device!r}")
        if problems:
            raise ConfigError("LLMReranker: " + "; ".join(problems))
        self.model = model
        self.method = method
        self.prompt = prompt if prompt is not None else DEFAULT_PROMPTS[method]
        self.top_k = top_k
        self.score_threshold = score_threshold
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device
        self._tokenizer: Any = None
        self._model: Any = None
        self._device = "cpu"
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Load the tokenizer and the model (once)."""
        from rag.generate.transformers_generator import load_causal_lm

        with self._lock:
            if self._model is None:
                self._device = torch_device(self.device, "LLMReranker")
                self._tokenizer, self._model = load_causal_lm(self.model, "float32", self._device, "LLMReranker")
                logger.info("loaded LLM reranker %s on %s (%s)", self.model, self._device, self.method)

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        """The method's score of (query, text) for each text (higher is more relevant)."""
        if not texts:
            return []
        self.warm_up()
        pairs = [self._encode(query, text) for text in texts]
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))  # less padding
        scores = [0.0] * len(pairs)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            for i, value in zip(batch, self._score_batch([pairs[i] for i in batch]), strict=True):
                scores[i] = value
        return scores

    def _ids(self, text: str) -> list[int]:
        return list(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def _render(self, query: str, passage: str) -> str:
        """The prompt text for one pair: the user message, inside the chat template when the model has one."""
        content = self.prompt.format(query=query, passage=passage)
        if getattr(self._tokenizer, "chat_template", None) is None:
            return content
        messages = [{"role": "user", "content": content}]
        return str(self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))

    def _encode(self, query: str, text: str) -> tuple[list[int], list[int]]:
        """(prompt ids, target ids) of one pair, the passage cut so that both fit in `max_length` tokens.

        The target is the query for query likelihood, nothing for yes/no (the next token is read instead).
        """
        target = self._ids(query) if self.method == "query_likelihood" else []
        ids = self._ids(self._render(query, text))
        if self.max_length is None:
            return ids, target
        piece = self._ids(text)
        keep = len(piece)
        while len(ids) + len(target) > self.max_length and keep > 0:
            keep = max(keep - (len(ids) + len(target) - self.max_length), 0)
            ids = self._ids(self._render(query, str(self._tokenizer.decode(piece[:keep]))))
        return ids, target

    def _score_batch(self, pairs: list[tuple[list[int], list[int]]]) -> list[float]:
        import torch

        pad = self._tokenizer.pad_token_id if self._tokenizer.pad_token_id is not None else 0
        rows, mask = left_pad([prompt + target for prompt, target in pairs], pad)
        input_ids = torch.tensor(rows, device=self._device)
        attention = torch.tensor(mask, device=self._device)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)  # left padding: every row starts at position 0
        with torch.inference_mode():
            logits = self._model(input_ids=input_ids, attention_mask=attention, position_ids=positions).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        if self.method == "yes_no":
            yes, no = self._answer_ids(_YES), self._answer_ids(_NO)
            last = logprobs[:, -1, :]
            margin = torch.logsumexp(last[:, yes], dim=-1) - torch.logsumexp(last[:, no], dim=-1)
            return [float(v) for v in torch.sigmoid(margin)]
        scores = []
        for row, (_, target) in enumerate(pairs):  # the target is the last len(target) tokens of each row
            n = len(target)
            if n == 0:
                scores.append(0.0)
                continue
            predicted = logprobs[row, -n - 1 : -1, :]
            scores.append(float(predicted.gather(-1, input_ids[row, -n:, None]).mean().exp()))
        return scores

    def _answer_ids(self, words: Sequence[str]) -> list[int]:
        """The first token of each spelling of an answer word, once each."""
        return list(dict.fromkeys(ids[0] for word in words if (ids := self._ids(word))))


def left_pad(rows: Sequence[Sequence[int]], pad: int) -> tuple[list[list[int]], list[list[int]]]:
    """(padded rows, attention mask): every row padded on the left with `pad` to the longest row's length."""
    width = max((len(row) for row in rows), default=0)
    padded = [[pad] * (width - len(row)) + list(row) for row in rows]
    mask = [[0] * (width - len(row)) + [1] * len(row) for row in rows]
    return padded, mask


def _prompt_problems(prompt: Any, fields: set[str], method: str) -> list[str]:
    if not isinstance(prompt, str):
        return [f"prompt must be a string, got {prompt!r}"]
    try:
        used = {name for _, name, _, _ in string.Formatter().parse(prompt) if name is not None}
    except ValueError as exc:
        return [f"prompt {prompt!r} is not a valid template ({exc})"]
    if used != fields:
        wanted = " and ".join("{" + f + "}" for f in sorted(fields))
        return [f"a {method} prompt must use exactly the fields {wanted}, got {sorted(used) or 'none'} in {prompt!r}"]
    return []
