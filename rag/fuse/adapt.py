"""Leg weights a score fusion learns from the collection itself, without judged queries (`ScoreFusion(weights="auto")`).

When an index is built or updated, the titles of its documents become pseudo-queries, each with its own document as
the answer (`title_queries`: a title that is one document's only, two words or more, and not its file name). Every
leg (a retriever feeding the fusion) answers them, and its list is normalised as the fusion normalises it. Where the
right document lands in a leg's list (its best chunk's normalised score; the list's lowest when it is absent) is a
sample of how far above the rest that leg puts a right answer: mean μ, variance σ². A leg's weight is μ / σ², the
weight a linear discriminant gives independent evidence (a leg that puts right answers high, and does so steadily,
counts more); weights are scaled to average 1, and no leg falls under a tenth of the largest, so none is dropped.

With fewer than `MIN_QUERIES` usable titles (a small folder, a corpus without titles) there is nothing reliable to
learn from and the fusion keeps equal weights. The estimate is stored with the index generation
(`components/FUSION/weights.json`) and made again by every index run that adds or removes chunks.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from rag.core.errors import IndexStoreError
from rag.core.pipeline import Pipeline
from rag.core.types import Chunk, Hit
from rag.fuse.score import ScoreFusion, normalize
from rag.index.files import read_json, write_json

__all__ = [
    "MAX_QUERIES",
    "MIN_QUERIES",
    "WEIGHTS_FILE",
    "LegWeights",
    "auto_fusions",
    "combined",
    "leg_weights",
    "title_queries",
]

MIN_QUERIES = 50
"""Fewer usable titles than this: equal weights (the estimate would be noise)."""
MAX_QUERIES = 400
"""At most this many titles are asked (a fixed sample: the same collection gives the same titles)."""
WEIGHTS_FILE = "weights.json"
_FLOOR = 0.1


@dataclass(frozen=True)
class LegWeights:
    """What `leg_weights` found for one fusion: a weight per leg (connection order), and how many pseudo-queries."""

    legs: tuple[str, ...]
    weights: tuple[float, ...]
    queries: int
    method: str

    @functools.cached_property
    def description(self) -> str:
        """As a run's report shows it: "weights learned from 400 titles: bm25 1.07, dense 0.93"."""
        pairs = ", ".join(f"{leg} {weight:g}" for leg, weight in zip(self.legs, self.weights, strict=True))
        return f"weights learned from {self.queries} titles: {pairs}"

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / WEIGHTS_FILE, asdict(self))

    @classmethod
    def load(cls, folder: Path) -> LegWeights | None:
        """The estimate saved in `folder`, or None when there is none; an IndexStoreError when it is damaged."""
        path = folder / WEIGHTS_FILE
        if not path.is_file():
            return None
        data = read_json(path)
        try:
            return cls(tuple(data["legs"]), tuple(map(float, data["weights"])), int(data["queries"]), data["method"])
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexStoreError(
                f"index damaged: {path} cannot be read (no {exc}); rebuild the index (rag index FOLDER --rebuild)"
            ) from None


def combined(estimates: Sequence[LegWeights | None]) -> LegWeights | None:
    """The estimates of several shards as one: each leg's weight averaged over them by how many titles taught each
    (None when no shard has one)."""
    found = [e for e in estimates if e is not None]
    if not found:
        return None
    total = sum(e.queries for e in found)
    weights = np.sum([np.asarray(e.weights) * e.queries for e in found], axis=0) / total
    return LegWeights(found[0].legs, tuple(round(float(w), 4) for w in weights), total, found[0].method)


def auto_fusions(pipeline: Pipeline) -> dict[str, list[str]]:
    """The score fusions of `pipeline` whose weights are learned (`weights: auto`), with the components feeding
    each, in connection order."""
    return {
        name: [c.sender for c in pipeline.connections if c.receiver == name and c.input == "hits"]
        for name, component in pipeline.components.items()
        if isinstance(component, ScoreFusion) and component.weights == "auto"
    }


def title_queries(chunks: Iterable[Chunk], limit: int = MAX_QUERIES) -> list[tuple[str, str]]:
    """(title, document path) pairs to ask: titles that one document alone has, of two words or more, other than its
    file name; a sample of at most `limit`, fixed by the paths."""
    paths: dict[str, set[str]] = {}
    for chunk in chunks:
        title = chunk.metadata.get("title")
        if isinstance(title, str) and len(title.split()) >= 2:
            paths.setdefault(" ".join(title.split()), set()).add(chunk.path)
    usable = [
        (title, path)
        for title, found in paths.items()
        if len(found) == 1 and _plain(title) != _plain(PurePosixPath(path := next(iter(found))).stem)
    ]
    usable.sort(key=lambda pair: hashlib.sha256(pair[1].encode("utf-8", "surrogatepass")).hexdigest())
    return usable[:limit]


def leg_weights(lists: Sequence[Sequence[list[Hit]]], targets: Sequence[str], method: str) -> tuple[float, ...]:
    """Each leg's weight from its answers to the pseudo-queries: `lists[leg][query]` is that leg's hits for the
    query whose right document is `targets[query]` (see the module docstring)."""
    weights = []
    for answers in lists:
        placed = np.array([_placed(hits, target, method) for hits, target in zip(answers, targets, strict=True)])
        weights.append(max(float(placed.mean()), 0.0) / max(float(placed.var()), 1e-6))
    top = max(weights)
    if top <= 0:
        return tuple(1.0 for _ in weights)
    weights = [max(w, _FLOOR * top) for w in weights]
    scale = len(weights) / sum(weights)
    return tuple(round(w * scale, 4) for w in weights)


def _placed(hits: list[Hit], target: str, method: str) -> float:
    """The normalised score of the target document's best chunk in `hits` (the lowest of the list when absent)."""
    if not hits:
        return 0.0
    values = normalize([hit.score for hit in hits], method)
    found = [value for hit, value in zip(hits, values.tolist(), strict=True) if hit.chunk.path == target]
    return max(found) if found else float(values.min())


def _plain(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text).strip().lower()
