"""``MissedDxRanker``: a scikit-learn-style classifier on a LightGBM booster.

One class serves the three heads of the ranker: P(MOD) of a finding (binary), the
likely missed diagnosis (multiclass over the target list) and the real-time risk of
each dangerous diagnosis after an encounter (multiclass with a ``none`` class).
Training is deterministic: ``deterministic=True``, a fixed ``seed``, ``num_threads``
fixed (1 by default: on a busy 2-core machine a second OpenMP thread made training
40x slower) and row-order-independent parameters only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

Array = NDArray[np.float64]


class MissedDxRanker(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Gradient-boosted trees for missed-diagnosis ranking.

    Parameters
    ----------
    n_estimators : int
        Boosting rounds.
    learning_rate, num_leaves, min_child_samples, reg_lambda, colsample : LightGBM knobs.
    feature_names : sequence of str or None
        Column names (default ``x0..xn``); names in ``categorical`` are treated as
        categorical codes.
    categorical : sequence of str
        Names of categorical columns (integer codes, ``nan`` for missing).
    seed, num_threads : int
        Determinism: the same data, seed and threads give the same booster.
    monotone : sequence of int or None
        LightGBM ``monotone_constraints`` per column (+1, -1, 0); binary heads only
        (directions from :mod:`plugin.rank.catalogue`).

    Attributes
    ----------
    booster_ : lightgbm.Booster
    classes_ : ndarray
    feature_names_in_ : ndarray of str
    n_features_in_ : int
    """

    # keyword-only parameters, stored untouched (sklearn convention)
    def __init__(
        self,
        *,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 20,
        reg_lambda: float = 1.0,
        colsample: float = 1.0,
        feature_names: Sequence[str] | None = None,
        categorical: Sequence[str] = (),
        seed: int = 0,
        num_threads: int = 1,
        monotone: Sequence[int] | None = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.reg_lambda = reg_lambda
        self.colsample = colsample
        self.feature_names = feature_names
        self.categorical = categorical
        self.seed = seed
        self.num_threads = num_threads
        self.monotone = monotone

    def _params(self, n_classes: int) -> dict[str, Any]:
        params: dict[str, Any] = {
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples,
            "min_data_per_group": max(1, min(self.min_child_samples, 20)),
            "cat_smooth": 10.0,
            "lambda_l2": self.reg_lambda,
            "feature_fraction": self.colsample,
            "feature_fraction_seed": self.seed,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "verbosity": -1,
        }
        if n_classes > 2:
            params |= {"objective": "multiclass", "num_class": n_classes}
        else:
            params |= {"objective": "binary"}
            if self.monotone is not None and any(self.monotone):
                params |= {
                    "monotone_constraints": list(self.monotone),
                    "monotone_constraints_method": "intermediate",
                }
        return params

    def fit(
        self,
        X: Any,
        y: Any,
        sample_weight: Any = None,
        init_booster: lgb.Booster | None = None,
    ) -> MissedDxRanker:
        """Fit on ``X`` (rows × features, ``nan`` allowed) and class labels ``y``.

        ``sample_weight``: per-row weights (inverse inclusion probabilities of reviewed
        cases). ``init_booster``: continue boosting from a prior model (``--base``); its
        classes must be the same."""
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", dtype=np.float64)
        check_classification_targets(y)
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=float)
            if sample_weight.shape != (X.shape[0],):
                raise ValueError(f"sample_weight has shape {sample_weight.shape}, expected "
                                 f"({X.shape[0]},)")
            if (sample_weight < 0).any() or not np.isfinite(sample_weight).all():
                raise ValueError("sample_weight must be finite and not negative")
            if sample_weight.sum() == 0:
                raise ValueError("sample_weight is all zero: nothing to learn from")
        self.classes_, y_codes = np.unique(y, return_inverse=True)
        names = (
            list(self.feature_names)
            if self.feature_names is not None
            else [f"x{i}" for i in range(X.shape[1])]
        )
        if len(names) != X.shape[1]:
            raise ValueError(f"{len(names)} feature names for {X.shape[1]} columns")
        self.feature_names_in_ = np.asarray(names, dtype=object)
        cats = [n for n in names if n in set(self.categorical)]
        label = y_codes.astype(np.float64)
        if len(self.classes_) < 2:  # one class: a constant model, still a valid booster
            label = np.zeros(len(y_codes))
        data = lgb.Dataset(
            X,
            label=label,
            weight=sample_weight,
            feature_name=names,
            categorical_feature=cats or "auto",
            free_raw_data=True,
            params={"verbosity": -1, "max_bin": 255, "min_data_in_bin": 1},
        )
        self.booster_ = lgb.train(
            self._params(len(self.classes_)),
            data,
            num_boost_round=self.n_estimators,
            init_model=init_booster,
        )
        return self

    @classmethod
    def from_booster(
        cls, booster: lgb.Booster, classes: Sequence[Any], **params: Any
    ) -> MissedDxRanker:
        """A fitted estimator around a saved booster (model directories)."""
        est = cls(feature_names=booster.feature_name(), **params)
        est.booster_ = booster
        est.classes_ = np.asarray(classes)
        est.feature_names_in_ = np.asarray(booster.feature_name(), dtype=object)
        est.n_features_in_ = booster.num_feature()
        return est

    def _raw(self, X: Any, **kwargs: Any) -> Array:
        check_is_fitted(self, "booster_")
        # feature_names_in_ holds our column names, not a DataFrame's: check the width only
        X = check_array(X, ensure_all_finite="allow-nan", dtype=np.float64)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input"
            )
        out: Array = np.asarray(self.booster_.predict(X, num_threads=self.num_threads, **kwargs))
        return out

    def predict_proba(self, X: Any) -> Array:
        """Class probabilities, columns in ``classes_`` order."""
        raw = self._raw(X)
        if len(self.classes_) == 1:
            return np.ones((raw.shape[0], 1))
        if raw.ndim == 1:
            return np.column_stack([1.0 - raw, raw])
        return raw

    def predict(self, X: Any) -> NDArray[Any]:
        proba = self.predict_proba(X)
        out: NDArray[Any] = self.classes_[np.argmax(proba, axis=1)]
        return out

    def contributions(self, X: Any) -> Array:
        """Per-feature SHAP contributions (``pred_contrib``) in raw score units.

        Binary: rows × (features + 1); multiclass: rows × classes × (features + 1).
        The last column is the expected value.
        """
        raw = self._raw(X, pred_contrib=True)
        k = len(self.classes_)
        if k > 2:
            return raw.reshape(raw.shape[0], k, -1)
        return raw

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags
