"""`SentenceReader`: read the retrieved passages sentence by sentence before anything is generated."""

from __future__ import annotations

from typing import Any, ClassVar

from rag.answer.extractive import AnswerCalibration, Reading, SentenceEmbedder, read
from rag.core.component import Component
from rag.core.errors import ConfigError
from rag.core.types import Hit
from rag.runtime.devices import TORCH_DEVICES

__all__ = ["SentenceReader"]


class SentenceReader(Component):
    """Score every sentence of the hits as the answer to the query, and decide whether any answers it.

    The `reading` output (`rag.answer.extractive.Reading`) feeds `PromptBuilder` (nothing is generated when the
    reading abstains, or in extractive mode) and `AnswerBuilder` (the quote of an extractive answer, abstention,
    and the fallback of a grounded answer). `calibration` is an answer calibration file written by
    `rag calibrate-answers` (None: the one shipped with rag, fit on squad2 with the default pipeline); its model
    embeds the sentences. `abstain=False` never abstains.
    """

    outputs: ClassVar[dict[str, Any]] = {"reading": Reading}

    def __init__(self, calibration: str | None = None, abstain: bool = True, device: str = "auto") -> None:
        if calibration is not None and (not isinstance(calibration, str) or not calibration.strip()):
            raise ConfigError(f"SentenceReader: calibration must be None or a file path, got {calibration!r}")
        if not isinstance(abstain, bool):
            raise ConfigError(f"SentenceReader: abstain must be true or false, got {abstain!r}")
        if device not in TORCH_DEVICES:
            raise ConfigError(f"SentenceReader: device must be one of {', '.join(TORCH_DEVICES)}, got {device!r}")
        self.calibration = calibration
        self.abstain = abstain
        self.device = device
        self._calibration: AnswerCalibration | None = None
        self._embedder: SentenceEmbedder | None = None

    def warm_up(self) -> None:
        """Read the calibration and load its sentence-embedding model (once)."""
        if self._embedder is None:
            self._calibration = AnswerCalibration.load(self.calibration)
            embedder = SentenceEmbedder(self._calibration.model, self.device)
            embedder.warm_up()
            self._embedder = embedder

    def run(self, query: str, hits: list[Hit]) -> dict[str, Any]:
        """The reading of `hits` for `query`."""
        self.warm_up()
        assert self._embedder is not None and self._calibration is not None
        return {"reading": read(self._embedder.evidence(query, hits), self._calibration, self.abstain)}
