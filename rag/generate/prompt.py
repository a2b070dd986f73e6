"""`PromptBuilder`: turn a query and retrieved hits into chat messages with numbered passages."""

from __future__ import annotations

from typing import Any, ClassVar

from rag.core.component import Component
from rag.core.errors import ConfigError
from rag.core.types import Hit

__all__ = ["DEFAULT_PASSAGE_TEMPLATE", "DEFAULT_SYSTEM_PROMPT", "DEFAULT_USER_TEMPLATE", "PromptBuilder"]

# Tuned on SmolLM2-135M-Instruct (8 questions over 3-5 short passages, greedy): with the number
# repeated after each passage and a worked example, 8/8 replies carried a valid [n] marker, against
# 4/8 for a plain "[n] (path) text" layout and an instruction without an example.
DEFAULT_SYSTEM_PROMPT = (
    "Answer the question in one short sentence using only the passages. "
    "End the sentence with the number of the passage you used in square brackets.\n"
    "Example: Paris is the capital of France [2]."
)
DEFAULT_USER_TEMPLATE = "Passages:\n{passages}\n\nQuestion: {query}\nAnswer with citations like [1]:"
DEFAULT_PASSAGE_TEMPLATE = "[{n}] ({path}) {text} [{n}]"
_NO_PASSAGES = "(no passages were found)"
_SEPARATOR = "\n\n"


class PromptBuilder(Component):
    """Build `[system, user]` chat messages that show the hits as numbered passages.

    Each hit is written with `passage_template` (fields `n`, `path`, `title`, `text`, `score`;
    runs of whitespace in the text become one space); passages are numbered 1..n in the order of
    `hits`. At most `max_context_chars` characters of passages are shown (None: no limit): a
    passage that does not fit is dropped whole and later, shorter ones may still fit; only a first
    passage longer than the whole budget has its text shortened.
    The `hits` output lists the hits actually shown, so `hits[n - 1]` is passage `[n]`.
    """

    outputs: ClassVar[dict[str, Any]] = {"messages": list[dict[str, str]], "hits": list[Hit]}

    def __init__(
        self,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        user_template: str = DEFAULT_USER_TEMPLATE,
        passage_template: str = DEFAULT_PASSAGE_TEMPLATE,
        max_context_chars: int | None = 4000,
    ) -> None:
        if max_context_chars is not None and (
            not isinstance(max_context_chars, int) or isinstance(max_context_chars, bool) or max_context_chars < 1
        ):
            raise ConfigError(
                f"PromptBuilder: max_context_chars must be None (no limit) or an integer >= 1, "
                f"got {max_context_chars!r}"
            )
        _check_template("user_template", user_template, {"passages": "", "query": ""})
        _check_template(
            "passage_template", passage_template, {"n": 1, "path": "", "title": "", "text": "", "score": 0.0}
        )
        if not isinstance(system_prompt, str):
            raise ConfigError(f"PromptBuilder: system_prompt must be a string, got {system_prompt!r}")
        self.system_prompt = system_prompt
        self.user_template = user_template
        self.passage_template = passage_template
        self.max_context_chars = max_context_chars

    def run(self, query: str, hits: list[Hit]) -> dict[str, Any]:
        """The chat messages for `query` over `hits`, and the hits that fit in the budget."""
        budget = self.max_context_chars
        passages: list[str] = []
        shown: list[Hit] = []
        used = 0
        for hit in hits:
            text = " ".join(hit.chunk.text.split())
            passage = self._format(len(shown) + 1, hit, text)
            cost = len(passage) + (len(_SEPARATOR) if passages else 0)
            if budget is not None and used + cost > budget:
                if passages:
                    continue
                # the best hit is never dropped, only its text shortened to fit
                passage = self._format(1, hit, text[: max(budget - (len(passage) - len(text)), 0)].rstrip())
                cost = len(passage)
            passages.append(passage)
            shown.append(hit)
            used += cost
        user = self.user_template.format(passages=_SEPARATOR.join(passages) or _NO_PASSAGES, query=query)
        messages = [{"role": "user", "content": user}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return {"messages": messages, "hits": shown}

    def _format(self, n: int, hit: Hit, text: str) -> str:
        chunk = hit.chunk
        title = str(chunk.metadata.get("title") or chunk.path)
        return self.passage_template.format(n=n, path=chunk.path, title=title, text=text, score=hit.score)


def _check_template(name: str, template: Any, fields: dict[str, Any]) -> None:
    if not isinstance(template, str):
        raise ConfigError(f"PromptBuilder: {name} must be a string, got {template!r}")
    try:
        template.format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"PromptBuilder: {name} {template!r} cannot be filled ({exc!r}); "
            f"it may use only the fields {', '.join('{' + f + '}' for f in fields)}"
        ) from None
