"""`DecodingConfig`: one typed, validated set of decoding options shared by every generator backend.

Strategies, and the options that belong to each:

- ``greedy``: the most likely token at each step; deterministic. Sampling options (temperature > 0,
  sample_top_k, top_p, min_p) and n > 1 are errors rather than silently ignored.
- ``sample``: temperature (unset means 1.0; 0 is an error, use greedy), sample_top_k, top_p, min_p, n samples,
  reproducible with seed.
- ``beam``: num_beams >= 2, length_penalty, early_stopping; n <= num_beams beams are returned, best first.
  temperature > 0 asks for beam *sampling* (transformers only; vLLM's beam search is deterministic).
- ``best_of_n``: best_of sampled candidates scored by ``scorer`` (``mean_logprob``, ``reranker``, or a name
  given to `register_scorer`); one answer is returned. Sampling options as for ``sample``.

Penalties, seed, max_tokens / min_tokens, stop, logprobs and json_schema apply to every strategy the
backend supports them for. ``speculative``, ``prefix_caching`` (None: the backend's default) and
``quantization`` are `ENGINE_OPTIONS`: fixed when a backend loads its model.

Everything is checked in the constructor, before any model loads, and every problem is listed in one
`ConfigError`. What a backend cannot do is declared in its `BackendSupport` and checked by
`check_supported(config, backend)`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from rag.core.errors import ConfigError

__all__ = [
    "BUILTIN_SCORERS",
    "ENGINE_OPTIONS",
    "GENERAL_OPTIONS",
    "QUANTIZATION_METHODS",
    "SAMPLING_OPTIONS",
    "STRATEGIES",
    "BackendSupport",
    "CandidateScorer",
    "DecodingConfig",
    "SpeculativeConfig",
    "backend_support",
    "check_supported",
    "register_scorer",
    "registered_scorer",
]

STRATEGIES = ("greedy", "sample", "beam", "best_of_n")
BUILTIN_SCORERS = ("mean_logprob", "reranker")
SPECULATIVE_METHODS = ("ngram", "draft")
# vLLM's QuantizationMethods present in both 0.26.0 and 0.33.0, plus bitsandbytes (in 0.26.0, gone in 0.33.0).
QUANTIZATION_METHODS = (
    "awq", "awq_marlin", "bitsandbytes", "compressed-tensors", "experts_int8", "fp8", "gptq",
    "gptq_marlin", "modelopt", "modelopt_fp4", "moe_wna16", "mxfp4", "quark", "torchao",
)  # fmt: skip
ENGINE_OPTIONS = frozenset({"speculative", "prefix_caching", "quantization"})
SAMPLING_OPTIONS = ("sample_top_k", "top_p", "min_p")
# options that are not tied to one strategy (a backend may still support them for only some)
GENERAL_OPTIONS = frozenset(
    {"max_tokens", "min_tokens", "stop", "logprobs", "seed", "json_schema", "stream"}
    | {"repetition_penalty", "presence_penalty", "frequency_penalty"}
)
MAX_LOGPROBS = 20

CandidateScorer = Callable[[str, Sequence[str]], float]
"""A best-of-N scorer: (candidate answer, retrieved passage texts) -> score; higher is better."""

_SCORERS: dict[str, CandidateScorer] = {}
# per strategy, the strategy-bound options it keeps when `merged` switches to it (the others reset)
_STRATEGY_OPTIONS: dict[str, frozenset[str]] = {
    "greedy": frozenset(),
    "sample": frozenset({"temperature", *SAMPLING_OPTIONS, "n"}),
    "beam": frozenset({"n", "num_beams", "length_penalty", "early_stopping"}),
    "best_of_n": frozenset({"temperature", *SAMPLING_OPTIONS, "best_of", "scorer"}),
}
_ONLY_FOR = {"num_beams": "beam", "length_penalty": "beam", "early_stopping": "beam"}
_ONLY_FOR |= {"best_of": "best_of_n", "scorer": "best_of_n"}


def register_scorer(name: str, scorer: CandidateScorer) -> None:
    """Make `scorer` usable as ``DecodingConfig(strategy="best_of_n", scorer=name)``."""
    if not isinstance(name, str) or not name or name in BUILTIN_SCORERS:
        raise ConfigError(f"scorer name must be a non-empty string other than {BUILTIN_SCORERS}, got {name!r}")
    if not callable(scorer):
        raise ConfigError(f"scorer {name!r} must be callable, got {scorer!r}")
    _SCORERS[name] = scorer


def registered_scorer(name: str) -> CandidateScorer:
    """The callable registered under `name`."""
    if name not in _SCORERS:
        raise ConfigError(f"no scorer is registered as {name!r}; registered: {', '.join(_SCORERS) or 'none'}")
    return _SCORERS[name]


@dataclass(frozen=True, slots=True)
class SpeculativeConfig:
    """Speculative decoding: ``ngram`` (prompt lookup) or ``draft`` (a smaller draft `model`)."""

    method: str
    num_speculative_tokens: int = 5
    prompt_lookup_max: int | None = None
    prompt_lookup_min: int | None = None
    model: str | None = None

    def __post_init__(self) -> None:
        if problems := self.problems():
            raise ConfigError("SpeculativeConfig: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """Everything wrong with these settings (empty when valid)."""
        out: list[str] = []
        if self.method not in SPECULATIVE_METHODS:
            out.append(_unknown("speculative method", self.method, SPECULATIVE_METHODS))
        if not _is_int(self.num_speculative_tokens) or self.num_speculative_tokens < 1:
            out.append(f"num_speculative_tokens must be an integer >= 1, got {self.num_speculative_tokens!r}")
        for name in ("prompt_lookup_max", "prompt_lookup_min"):
            value = getattr(self, name)
            if value is not None and self.method == "draft":
                out.append(f"{name} is an option of method 'ngram', not 'draft'")
            elif value is not None and (not _is_int(value) or value < 1):
                out.append(f"{name} must be None or an integer >= 1, got {value!r}")
        low, high = self.prompt_lookup_min, self.prompt_lookup_max
        if _is_int(low) and _is_int(high) and low > high:
            out.append(f"prompt_lookup_min ({low}) must be <= prompt_lookup_max ({high})")
        if self.method == "draft" and (not isinstance(self.model, str) or not self.model.strip()):
            out.append(f"method 'draft' needs model, the draft model's name or folder, got {self.model!r}")
        if self.method == "ngram" and self.model is not None:
            out.append(f"model is an option of method 'draft', not 'ngram' (got {self.model!r})")
        return out

    def to_dict(self) -> dict[str, Any]:
        """The non-default settings, for YAML."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k == "method" or v != _SPEC_DEFAULTS[k]}


_SPEC_DEFAULTS = {f.name: f.default for f in dataclasses.fields(SpeculativeConfig)}


@dataclass(frozen=True)
class DecodingConfig:
    """How to decode: a strategy and its options, validated together (see the module docstring)."""

    strategy: str = "greedy"
    max_tokens: int = 256
    min_tokens: int = 0
    stop: tuple[str, ...] = ()
    temperature: float | None = None
    sample_top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    n: int = 1
    logprobs: int | None = None
    num_beams: int = 4
    length_penalty: float = 1.0
    early_stopping: bool = False
    best_of: int = 4
    scorer: str = "mean_logprob"
    speculative: SpeculativeConfig | None = None
    prefix_caching: bool | None = None
    quantization: str | None = None
    json_schema: dict[str, Any] | None = field(default=None, hash=False)
    stream: bool = False

    def __post_init__(self) -> None:
        problems: list[str] = []
        stop = self.stop
        if isinstance(stop, str):
            stop = (stop,)
        if isinstance(stop, (list, tuple)):
            object.__setattr__(self, "stop", tuple(stop))
        spec = self.speculative
        if isinstance(spec, str) and spec.lower() == "none":
            spec = None
        if isinstance(spec, Mapping):
            spec = _speculative_from_dict(spec, problems)
        object.__setattr__(self, "speculative", spec)
        if isinstance(self.json_schema, dict):
            try:  # a private copy, and proof that it is plain JSON
                object.__setattr__(self, "json_schema", json.loads(json.dumps(self.json_schema)))
            except (TypeError, ValueError) as exc:
                problems.append(f"json_schema must be plain JSON data: {exc}")
        problems += self._value_problems() + self._combination_problems()
        if problems:
            raise ConfigError("DecodingConfig: " + "; ".join(problems))

    @property
    def sampling(self) -> bool:
        """True when tokens are drawn at random (sample, best_of_n, beam with temperature > 0)."""
        return self.strategy in ("sample", "best_of_n") or bool(self.strategy == "beam" and self.temperature)

    @property
    def effective_temperature(self) -> float:
        """The temperature to send to a backend: unset means 1.0 when sampling, else 0.0."""
        if self.temperature is not None:
            return float(self.temperature)
        return 1.0 if self.strategy in ("sample", "best_of_n") else 0.0

    def used_options(self) -> set[str]:
        """Names of the options that change decoding from the strategy's default (strategy excluded)."""
        used = {f.name for f in dataclasses.fields(self) if f.name != "strategy" and _differs(self, f.name)}
        if self.temperature is not None and self.effective_temperature == (1.0 if self.sampling else 0.0):
            used.discard("temperature")
        return used

    def to_dict(self) -> dict[str, Any]:
        """The strategy and every non-default option as plain data (YAML/JSON-safe)."""
        out: dict[str, Any] = {"strategy": self.strategy}
        for name in _FIELD_ORDER[1:]:
            if not _differs(self, name):
                continue
            value = getattr(self, name)
            out[name] = value.to_dict() if name == "speculative" else list(value) if name == "stop" else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DecodingConfig:
        """Build from `to_dict()` output (or a pipeline YAML mapping); unknown keys are an error."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"DecodingConfig: expected a mapping of options, got {data!r}")
        data = _renamed(data)
        unknown = [k for k in data if k not in _FIELD_ORDER]
        if unknown:
            raise ConfigError("DecodingConfig: " + "; ".join(_unknown("option", k, _FIELD_ORDER) for k in unknown))
        return cls(**data)

    def merged(self, **overrides: Any) -> DecodingConfig:
        """A copy with `overrides` applied and validated again (per-request settings).

        Changing the strategy resets the options the new strategy does not take (for example
        ``merged(strategy="greedy")`` on a sampling config drops its temperature and top_p), unless
        they are overridden in the same call.
        """
        overrides = _renamed(overrides)
        unknown = [k for k in overrides if k not in _FIELD_ORDER]
        if unknown:
            raise ConfigError("DecodingConfig: " + "; ".join(_unknown("option", k, _FIELD_ORDER) for k in unknown))
        changes = dict(overrides)
        new_strategy = changes.get("strategy", self.strategy)
        if new_strategy != self.strategy and new_strategy in _STRATEGY_OPTIONS:
            keep = _STRATEGY_OPTIONS[new_strategy]
            for name in set().union(*_STRATEGY_OPTIONS.values()) - keep - changes.keys():
                changes[name] = _DEFAULTS[name]
        return dataclasses.replace(self, **changes)

    def _value_problems(self) -> list[str]:
        out: list[str] = []
        if self.strategy not in STRATEGIES:
            out.append(_unknown("strategy", self.strategy, STRATEGIES))
        out += _int_problem("max_tokens", self.max_tokens, 1) + _int_problem("min_tokens", self.min_tokens, 0)
        if not isinstance(self.stop, tuple) or not all(isinstance(s, str) and s for s in self.stop):
            out.append(f"stop must be a list of non-empty strings, got {self.stop!r}")
        t = self.temperature
        if t is not None and (not _is_number(t) or not 0 <= t <= 2):
            out.append(f"temperature must be None (the strategy's default) or a number in [0, 2], got {t!r}")
        out += _int_problem("sample_top_k", self.sample_top_k, 0, " (0 disables it)")
        if not _is_number(self.top_p) or not 0 < self.top_p <= 1:
            out.append(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not _is_number(self.min_p) or not 0 <= self.min_p <= 1:
            out.append(f"min_p must be in [0, 1] (0 disables it), got {self.min_p!r}")
        if not _is_number(self.repetition_penalty) or self.repetition_penalty <= 0:
            out.append(f"repetition_penalty must be a number > 0 (1 disables it), got {self.repetition_penalty!r}")
        for name in ("presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            if not _is_number(value) or not -2 <= value <= 2:
                out.append(f"{name} must be a number in [-2, 2] (0 disables it), got {value!r}")
        if self.seed is not None:
            out += _int_problem("seed", self.seed, 0, "", "None or ")
        out += _int_problem("n", self.n, 1) + _int_problem("num_beams", self.num_beams, 1)
        if self.logprobs is not None and (not _is_int(self.logprobs) or not 0 <= self.logprobs <= MAX_LOGPROBS):
            out.append(f"logprobs must be None or an integer in [0, {MAX_LOGPROBS}], got {self.logprobs!r}")
        if not _is_number(self.length_penalty):
            out.append(f"length_penalty must be a finite number, got {self.length_penalty!r}")
        out += _int_problem("best_of", self.best_of, 2)
        if self.scorer not in BUILTIN_SCORERS and self.scorer not in _SCORERS:
            out.append(_unknown("scorer", self.scorer, (*BUILTIN_SCORERS, *_SCORERS)) + " or register_scorer()")
        spec = self.speculative
        if spec is not None and not isinstance(spec, SpeculativeConfig):
            out.append(
                "speculative must be None, {'method': 'ngram', 'num_speculative_tokens', 'prompt_lookup_max', "
                f"'prompt_lookup_min'}} or {{'method': 'draft', 'model', 'num_speculative_tokens'}}, got {spec!r}"
            )
        if self.quantization is not None and self.quantization not in QUANTIZATION_METHODS:
            out.append(_unknown("quantization", self.quantization, QUANTIZATION_METHODS) + " or None")
        if self.json_schema is not None and not isinstance(self.json_schema, dict):
            out.append(f"json_schema must be None or a JSON schema dict, got {self.json_schema!r}")
        for name in ("early_stopping", "stream"):
            if not isinstance(getattr(self, name), bool):
                out.append(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.prefix_caching is not None and not isinstance(self.prefix_caching, bool):
            out.append(f"prefix_caching must be None (backend default), true or false, got {self.prefix_caching!r}")
        return out

    def _combination_problems(self) -> list[str]:
        out: list[str] = []
        strategy, t = self.strategy, self.temperature
        if strategy == "greedy" and _is_number(t) and t > 0:
            out.append(
                f"strategy 'greedy' is deterministic and would ignore temperature={t}; "
                "use strategy 'sample' (or 'best_of_n') to sample, or leave temperature unset"
            )
        if strategy in ("sample", "best_of_n") and t == 0:
            out.append(
                f"temperature=0 is greedy decoding; use strategy 'greedy' or a temperature > 0 with {strategy!r}"
            )
        if not self.sampling and strategy in STRATEGIES:
            for name in SAMPLING_OPTIONS:
                if _differs(self, name):
                    out.append(
                        f"{name}={getattr(self, name)!r} only applies when sampling (strategy 'sample' or "
                        f"'best_of_n', or 'beam' with temperature > 0), not with strategy {strategy!r}"
                    )
        for name, owner in _ONLY_FOR.items():
            if strategy != owner and strategy in STRATEGIES and _differs(self, name):
                out.append(f"{name} is an option of strategy {owner!r}, not {strategy!r}")
        if strategy == "greedy" and _is_int(self.n) and self.n > 1:
            out.append(f"greedy decoding gives one answer: n must be 1, got {self.n}; use strategy 'sample'")
        if strategy == "best_of_n" and _is_int(self.n) and self.n != 1:
            out.append(f"best_of_n returns the one best candidate: n must be 1, got {self.n}; set best_of instead")
        if strategy == "beam" and _is_int(self.num_beams):
            if self.num_beams < 2:
                out.append(f"beam search needs num_beams >= 2, got {self.num_beams}; for 1 beam use 'greedy'")
            elif _is_int(self.n) and self.n > self.num_beams:
                out.append(f"n ({self.n}) must be <= num_beams ({self.num_beams}) with strategy 'beam'")
        if _is_int(self.min_tokens) and _is_int(self.max_tokens) and self.min_tokens > self.max_tokens:
            out.append(f"min_tokens ({self.min_tokens}) must be <= max_tokens ({self.max_tokens})")
        if self.stream is True and (strategy in ("beam", "best_of_n") or (_is_int(self.n) and self.n > 1)):
            out.append(
                f"stream=true needs one answer built left to right: not strategy {strategy!r} or n > 1; "
                "use 'greedy' or 'sample' with n=1"
            )
        return out


_FIELD_ORDER = tuple(f.name for f in dataclasses.fields(DecodingConfig))
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(DecodingConfig)}


@dataclass(frozen=True)
class BackendSupport:
    """What one backend can do: per strategy, the options it honours when set to non-default values.

    `reasons` explains a refusal and what to do instead, keyed ``"strategy.option"`` or ``"option"``;
    `conflicts` lists option sets the backend cannot combine, each with its message.
    """

    name: str
    options: Mapping[str, frozenset[str]]
    reasons: Mapping[str, str] = field(default_factory=dict)
    conflicts: tuple[tuple[frozenset[str], str], ...] = ()


_BACKENDS = {
    "vllm": "rag.generate.vllm_params:VLLM_SUPPORT",
    "openai": "rag.generate.openai_generator:OPENAI_SUPPORT",
    "transformers": "rag.generate.transformers_decoding:TRANSFORMERS_SUPPORT",
    "llamacpp": "rag.generate.llamacpp_decoding:LLAMACPP_SUPPORT",
}


def backend_support(backend: str) -> BackendSupport:
    """The `BackendSupport` declared by the backend named `backend` (``vllm``, ``openai``, ``transformers``,
    ``llamacpp``)."""
    if backend not in _BACKENDS:
        raise ConfigError(_unknown("generator backend", backend, tuple(_BACKENDS)))
    import importlib

    module, _, attr = _BACKENDS[backend].partition(":")
    support: BackendSupport = getattr(importlib.import_module(module), attr)
    return support


def check_supported(config: DecodingConfig, backend: str | BackendSupport) -> None:
    """Raise one `ConfigError` listing every option of `config` that `backend` cannot honour."""
    support = backend if isinstance(backend, BackendSupport) else backend_support(backend)
    strategy = config.strategy
    if strategy not in support.options:
        reason = support.reasons.get(strategy, f"it supports {', '.join(support.options)}")
        raise ConfigError(f"strategy {strategy!r} is not supported by {support.name}: {reason}")
    used = config.used_options()
    problems = []
    for name in sorted(used - support.options[strategy], key=_FIELD_ORDER.index):
        reason = (
            support.reasons.get(f"{strategy}.{name}")
            or support.reasons.get(name)
            or f"leave it at its default ({_DEFAULTS[name]!r}) or use another backend"
        )
        problems.append(f"{name}={getattr(config, name)!r} with strategy {strategy!r} is not supported: {reason}")
    problems += [message for names, message in support.conflicts if names <= used]
    if problems:
        raise ConfigError(f"{support.name} cannot decode with this config: " + "; ".join(problems))


def _speculative_from_dict(data: Mapping[str, Any], problems: list[str]) -> SpeculativeConfig | None:
    allowed = tuple(_SPEC_DEFAULTS)
    unknown = [k for k in data if k not in allowed]
    problems += [_unknown("speculative option", k, allowed) for k in unknown]
    if "method" not in data:
        problems.append(f"speculative needs a method, one of {', '.join(SPECULATIVE_METHODS)}")
    if unknown or "method" not in data:
        return None
    try:
        return SpeculativeConfig(**data)
    except ConfigError as exc:
        problems.append(f"speculative: {str(exc).removeprefix('SpeculativeConfig: ')}")
        return None


def _differs(config: DecodingConfig, name: str) -> bool:
    return bool(getattr(config, name) != _DEFAULTS[name])


def _unknown(what: str, value: object, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(value), list(allowed), n=1, cutoff=0.5) if isinstance(value, str) else []
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {what} {value!r}{hint}; allowed: {', '.join(allowed)}"


def _int_problem(name: str, value: object, minimum: int, note: str = "", prefix: str = "") -> list[str]:
    if _is_int(value) and value >= minimum:
        return []
    return [f"{name} must be {prefix}an integer >= {minimum}{note}, got {value!r}"]


RENAMED_OPTIONS = {"top_k": "sample_top_k"}
"""Old option names still accepted, with a DeprecationWarning, for one release: `top_k` means passages everywhere
else in rag, so the sampling cut-off is `sample_top_k`."""


def _renamed(options: Mapping[str, Any]) -> dict[str, Any]:
    """`options` with deprecated names replaced by their new ones (a DeprecationWarning for each)."""
    out = dict(options)
    for old, new in RENAMED_OPTIONS.items():
        if old in out:
            warnings.warn(
                f"decoding option '{old}' is now '{new}' ('{old}' is the number of passages elsewhere in rag); "
                f"'{old}' is accepted until the next release",
                DeprecationWarning,
                stacklevel=3,
            )
            out.setdefault(new, out.pop(old))
    return out


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
