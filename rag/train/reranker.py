"""Fine-tune a cross-encoder from BEIR-format relevance labels, with hard negatives from a pipeline.

For every training query: each judged-relevant document is a positive pair (label 1), and the
`negatives` best-ranked documents the pipeline retrieves that are *not* judged relevant are
negative pairs (label 0): hard negatives, the mistakes the first stage actually makes. The
corpus is indexed through `rag eval`'s machinery, so an index or embeddings already built for
the same corpus and pipeline are reused. Training uses sentence-transformers'
`CrossEncoderTrainer` with binary cross-entropy; the model is written to a temporary folder
and renamed into place, so `out` is either the previous model or the complete new one.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rag.core.errors import ConfigError, MissingDependencyError
from rag.core.pipeline import Pipeline
from rag.eval.beir import BeirDataset
from rag.eval.runner import evaluate
from rag.indexer import Progress
from rag.runtime.devices import torch_device
from rag.runtime.models import resolve_model

__all__ = ["TrainingReport", "mine_pairs", "train_reranker"]

DEFAULT_BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass
class TrainingReport:
    """What a training run did; also written as `rag_training.json` next to the model."""

    out: str
    base_model: str
    dataset: str
    split: str
    queries: int
    positives: int
    negatives: int
    epochs: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mine_pairs(
    dataset: BeirDataset,
    pipeline: Pipeline,
    negatives: int,
    depth: int = 30,
    progress: Progress | None = None,
    random_negatives: int = 0,
    seed: int = 12,
) -> list[tuple[str, str, int]]:
    """(query, passage, label) pairs: judged positives, the pipeline's best-ranked non-relevant documents, and
    `random_negatives` non-relevant documents drawn at random (easy negatives, seeded) per query."""
    run = evaluate(dataset, pipeline, top_k=depth, progress=progress).run
    draw, documents = random.Random(seed), list(dataset.corpus)
    pairs = []
    for qid, query in dataset.queries.items():
        relevant = dataset.qrels[qid]
        pairs += [(query, dataset.document_text(doc), 1) for doc in relevant if doc in dataset.corpus]
        hard = [doc for doc, _ in run.get(qid, []) if doc not in relevant][:negatives]
        drawn = draw.sample(documents, min(len(documents), random_negatives + len(relevant) + len(hard)))
        easy = [doc for doc in drawn if doc not in relevant and doc not in hard][:random_negatives]
        pairs += [(query, dataset.document_text(doc), 0) for doc in hard + easy]
    return pairs


def train_reranker(
    dataset: BeirDataset,
    pipeline: Pipeline,
    out: str | os.PathLike[str],
    *,
    base_model: str = DEFAULT_BASE_MODEL,
    negatives: int = 4,
    random_negatives: int = 0,
    epochs: int = 1,
    batch_size: int = 16,
    learning_rate: float = 2e-5,
    max_length: int = 256,
    seed: int = 12,
    device: str = "auto",
    progress: Progress | None = None,
) -> TrainingReport:
    """Fine-tune `base_model` as a one-label cross-encoder on `dataset` and save it in `out`."""
    if negatives < 1 or random_negatives < 0 or epochs < 1 or batch_size < 1 or max_length < 8:
        raise ConfigError(
            f"negatives, epochs and batch_size must be >= 1, random_negatives >= 0 and max_length >= 8; got "
            f"negatives={negatives}, random_negatives={random_negatives}, "
            f"epochs={epochs}, batch_size={batch_size}, max_length={max_length}"
        )
    try:
        from datasets import Dataset
        from sentence_transformers.cross_encoder import (
            CrossEncoder,
            CrossEncoderTrainer,
            CrossEncoderTrainingArguments,
        )
        from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "datasets", "train", "rag train reranker") from exc
    started = time.perf_counter()
    pairs = mine_pairs(dataset, pipeline, negatives, progress=progress, random_negatives=random_negatives, seed=seed)
    random.Random(seed).shuffle(pairs)
    model = CrossEncoder(
        resolve_model(base_model), num_labels=1, max_length=max_length, device=torch_device(device, "train reranker")
    )
    target = Path(out).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as work:
        args = CrossEncoderTrainingArguments(
            output_dir=str(Path(work) / "checkpoints"),
            num_train_epochs=epochs,
            per_device_train_batch_size=batch_size,
            learning_rate=learning_rate,
            warmup_steps=math.ceil(0.1 * epochs * math.ceil(len(pairs) / batch_size)),
            dataloader_pin_memory=model.device.type == "cuda",
            seed=seed,
            save_strategy="no",
            logging_steps=50,
            report_to="none",
            disable_tqdm=True,
        )
        queries, passages, labels = zip(*pairs, strict=True)
        train = Dataset.from_dict({"query": queries, "passage": passages, "label": [float(y) for y in labels]})
        CrossEncoderTrainer(model=model, args=args, train_dataset=train, loss=BinaryCrossEntropyLoss(model)).train()
        staged = Path(work) / "model"
        model.save_pretrained(str(staged))
        positives = sum(label for *_, label in pairs)
        report = TrainingReport(
            out=str(target),
            base_model=base_model,
            dataset=dataset.name,
            split=dataset.split,
            queries=len(dataset.queries),
            positives=positives,
            negatives=len(pairs) - positives,
            epochs=epochs,
            seconds=round(time.perf_counter() - started, 1),
        )
        (staged / "rag_training.json").write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
        _replace_folder(staged, target)
    return report


def _replace_folder(new: Path, target: Path) -> None:
    """Put `new` at `target`; a previous folder there is moved aside first and removed last."""
    old = target.with_name(f".{target.name}-old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)
