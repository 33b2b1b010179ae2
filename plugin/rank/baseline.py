"""The simple baseline every head must beat: a logistic model on a handful of red flags and
vital signs (age, risk factors, abnormal vital signs and their extremes, a recent ED visit).

Used by the real-time card gate (a head that does not beat it is not shipped in cards,
:func:`plugin.rank.training.card_gate`) and by ``bench/rank_eval.py``. Missing values are
imputed with the training median plus a missing-indicator column.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

BASELINE_FEATURES: tuple[str, ...] = (
    "age",
    "n_risk_factors",
    "n_vitals_abnormal",
    "temp_max",
    "hr_max",
    "sbp_min",
    "spo2_min",
    "rr_max",
    "prior_ed_30",
)


def columns(names: Sequence[str]) -> list[int]:
    return [list(names).index(n) for n in BASELINE_FEATURES]


def fit(X: NDArray[np.float64], y: NDArray[Any], names: Sequence[str],
        weight: NDArray[np.float64] | None = None) -> Pipeline:
    """Fit on the full feature matrix ``X`` (columns ``names``); binary ``y``."""
    model = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(C=1.0, max_iter=1000),
    )
    model.fit(X[:, columns(names)], np.asarray(y, dtype=int),
              logisticregression__sample_weight=weight)
    return model


def score(model: Pipeline, X: NDArray[np.float64], names: Sequence[str]) -> NDArray[np.float64]:
    return np.asarray(model.predict_proba(X[:, columns(names)])[:, 1], dtype=float)
