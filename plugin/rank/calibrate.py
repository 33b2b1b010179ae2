"""Calibration of the review head: the score shown is a probability.

Fitted on held-out patients (the calibration split, never the training rows), weighted by
the design weights of reviewed cases. Isotonic regression when the calibration set is large
enough (at least 200 rows and 20 of each class), else Platt scaling (a logistic curve on the
raw log-odds), which needs fewer cases. Stored as plain numbers in ``model.json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

F = NDArray[np.float64]
MIN_ISOTONIC = 200
MIN_CLASS = 20


@dataclass(frozen=True, slots=True)
class Calibrator:
    kind: str  # isotonic | platt | none
    x: tuple[float, ...] = ()  # isotonic knots (raw probability -> calibrated)
    y: tuple[float, ...] = ()
    a: float = 1.0  # platt: sigmoid(a * logit(p) + b)
    b: float = 0.0
    n: int = 0

    def __call__(self, p: F) -> F:
        p = np.asarray(p, dtype=float)
        if self.kind == "isotonic" and self.x:
            out: F = np.interp(p, self.x, self.y)
            return out
        if self.kind == "platt":
            z = self.a * _logit(p) + self.b
            return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=float)
        return p

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "x": list(self.x), "y": list(self.y), "a": self.a,
                "b": self.b, "n": self.n}

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> Calibrator:
        if not d:
            return cls("none")
        return cls(d["kind"], tuple(d.get("x", ())), tuple(d.get("y", ())),
                   float(d.get("a", 1.0)), float(d.get("b", 0.0)), int(d.get("n", 0)))


def _logit(p: F) -> F:
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return np.asarray(np.log(q / (1 - q)), dtype=float)


def fit(p: F, y: NDArray[Any], w: F | None = None) -> Calibrator:
    """A calibrator for raw scores ``p`` with outcomes ``y`` (weights ``w``)."""
    y = np.asarray(y, dtype=int)
    pos = int(y.sum())
    if len(y) == 0 or pos == 0 or pos == len(y):
        return Calibrator("none", n=len(y))
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=float)
    if len(y) >= MIN_ISOTONIC and min(pos, len(y) - pos) >= MIN_CLASS:
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
        iso.fit(p, y, sample_weight=w)
        xs = [float(v) for v in iso.X_thresholds_]
        ys = [float(v) for v in iso.y_thresholds_]
        return Calibrator("isotonic", tuple(xs), tuple(ys), n=len(y))
    lr = LogisticRegression(C=1e4)
    lr.fit(_logit(np.asarray(p, dtype=float)).reshape(-1, 1), y, sample_weight=w)
    a, b = float(lr.coef_[0][0]), float(lr.intercept_[0])
    if not (math.isfinite(a) and math.isfinite(b)):
        return Calibrator("none", n=len(y))
    return Calibrator("platt", a=a, b=b, n=len(y))
