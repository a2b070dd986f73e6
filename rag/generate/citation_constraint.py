"""Citation markers that can only name passages that were given, enforced while tokens are chosen.

`CitationMarkers` is a `transformers` logits processor. Once the model has opened a marker with `[`, only tokens
that keep it a valid citation of passages 1..count are allowed (`[2]`, `[1, 3]`; digits, commas, spaces, then
`]`); a token that would open a marker naming a passage that does not exist (a token `[7` with four passages) is
never allowed. Text outside markers is left alone.
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["CitationMarkers", "marker_prefix_ok"]


def marker_prefix_ok(tail: str, count: int) -> bool:
    """Whether `tail`, the text after an opening `[`, can still be (or is) a marker citing passages 1..`count`."""
    body, closed, _ = tail.partition("]")
    items = body.split(",")
    for i, item in enumerate(items):
        number = item.strip()
        last = i == len(items) - 1
        if not number:
            return last and not closed  # "[" or "[1, " wait for a number; "[]" and "[1,]" are not markers
        if not number.isdigit() or number.startswith("0"):
            return False
        if last and not closed:
            return any(str(k).startswith(number) for k in range(1, count + 1))
        if not 1 <= int(number) <= count:
            return False
    return True


@functools.cache
def _token_texts(tokenizer: Any) -> tuple[tuple[str, ...], tuple[int, ...], tuple[int, ...]]:
    """(text of every token id, ids of tokens holding "[", ids of tokens that can continue an open marker)."""
    texts = tuple(tokenizer.batch_decode([[i] for i in range(len(tokenizer))]))
    opening = tuple(i for i, text in enumerate(texts) if "[" in text)
    inside = tuple(
        i
        for i, text in enumerate(texts)
        if text and "[" not in text and all(c.isdigit() or c in " ,\t" for c in text.partition("]")[0])
    )
    return texts, opening, inside


class CitationMarkers:
    """Mask the logits of tokens that would write an invalid citation marker (see the module docstring).

    `counts[b]` is the number of passages of the b-th conversation of the batch (rows of beam search or of
    several sequences per conversation follow their conversation); `prompt_length` the width of the prompt part
    of `input_ids`. Called as a transformers logits processor (torch tensors); `next_tokens` is the decision
    alone, for engines with other arrays (llama.cpp's numpy logits).
    """

    def __init__(self, tokenizer: Any, counts: list[int], prompt_length: int) -> None:
        self.tokenizer = tokenizer
        self.counts = counts
        self.prompt_length = prompt_length
        self.texts, self.opening, self.inside = _token_texts(tokenizer)
        self._banned: dict[int, list[int]] = {}

    def next_tokens(self, text: str, count: int) -> tuple[bool, list[int]]:
        """What may follow the generated `text` citing passages 1..`count`: ``(True, ids)`` when a marker is
        open and only `ids` may come next, else ``(False, ids)`` with the `ids` that must not come next."""
        start = text.rfind("[")
        if start >= 0 and "]" not in text[start:]:
            tail = text[start + 1 :]
            return True, [t for t in self.inside if marker_prefix_ok(tail + self.texts[t], count)]
        if count not in self._banned:
            self._banned[count] = [
                t for t in self.opening if not marker_prefix_ok(self.texts[t].rpartition("[")[2], count)
            ]
        return False, self._banned[count]

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        rows = input_ids.shape[0]
        for row in range(rows):
            count = self.counts[row * len(self.counts) // rows]
            text = self.tokenizer.decode(input_ids[row, self.prompt_length :], skip_special_tokens=True)
            only, ids = self.next_tokens(text, count)
            if only:
                keep = scores[row, ids].clone()
                scores[row, :] = float("-inf")
                scores[row, ids] = keep
            else:
                scores[row, ids] = float("-inf")
        return scores
