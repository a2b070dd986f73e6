"""`LinearModel`: a logistic regression over named features, kept as plain numbers (JSON) and applied with NumPy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rag.core.errors import ConfigError

__all__ = ["LinearModel"]


@dataclass(frozen=True)
class LinearModel:
    """A logistic regression over named, standardised features: `logit(x) = ((x - mean) / scale) · coef + bias`."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    bias: float

    def logits(self, rows: np.ndarray) -> np.ndarray:
        """One logit per row of features (a 2-D array, columns in the order of `features`)."""
        return ((np.asarray(rows, dtype=np.float64) - self.mean) / self.scale) @ self.coef + self.bias

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logits(rows)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "bias": self.bias,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], expected: tuple[str, ...]) -> LinearModel:
        if tuple(data["features"]) != expected:
            raise ConfigError(
                f"the calibration's features {data['features']} are not the ones this version computes "
                f"({list(expected)}); calibrate again with `rag calibrate-answers`"
            )
        arrays = [np.asarray(data[name], dtype=np.float64) for name in ("mean", "scale", "coef")]
        if any(a.shape != (len(expected),) for a in arrays):
            raise ConfigError(f"the calibration's mean, scale and coef must hold {len(expected)} numbers each")
        return cls(expected, arrays[0], arrays[1], arrays[2], float(data["bias"]))
