"""MissedDxRanker: sklearn conventions, determinism, learning from data not artefacts."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from plugin.rank import metrics as m
from plugin.rank.dataset import collect
from plugin.rank.model import MissedDxRanker
from plugin.rank.training import TrainConfig, train_heads

# LightGBM's leaf-size rules count rows, not weight: a row of weight 2 is not two rows.
# Design weights only rescale the loss, which is what inverse-probability weighting needs.
_WEIGHT_NOT_ROWS = {
    "check_sample_weight_equivalence_on_dense_data": "leaf sizes count rows, not weight",
}


@parametrize_with_checks(
    [MissedDxRanker(n_estimators=5, min_child_samples=1)],
    expected_failed_checks=lambda est: _WEIGHT_NOT_ROWS,
)
def test_sklearn_api(estimator, check) -> None:  # type: ignore[no-untyped-def]
    check(estimator)


def test_init_only_stores_parameters() -> None:
    est = MissedDxRanker(n_estimators=7, seed=3)
    assert est.get_params()["n_estimators"] == 7
    assert not hasattr(est, "booster_")
    with pytest.raises(Exception, match="not fitted"):
        est.predict_proba(np.zeros((1, 3)))


@pytest.fixture(scope="module")
def train_rows(train_pop, evaluator):  # type: ignore[no-untyped-def]
    return collect(train_pop.timelines, evaluator, train_pop.labels)


@pytest.fixture(scope="module")
def test_rows(test_pop, evaluator):  # type: ignore[no-untyped-def]
    return collect(test_pop.timelines, evaluator, test_pop.labels)


def test_training_is_deterministic(train_rows, test_rows) -> None:  # type: ignore[no-untyped-def]
    cfg = TrainConfig(n_estimators=80)
    a, _ = train_heads(train_rows, cfg)
    b, _ = train_heads(train_rows, cfg)
    X = test_rows.review.matrix()
    for head in ("review", "missed_dx"):
        assert np.array_equal(a[head].predict_proba(X), b[head].predict_proba(X))
    assert a["review"].booster_.model_to_string() == b["review"].booster_.model_to_string()


def test_learns_on_held_out_population(train_rows, test_rows) -> None:  # type: ignore[no-untyped-def]
    heads, metrics = train_heads(train_rows, TrainConfig(n_estimators=150))
    y = np.asarray(test_rows.review.y)
    p = heads["review"].predict_proba(test_rows.review.matrix())[:, 1]
    assert m.auroc(y, p) > 0.8
    k = int(y.sum())
    assert m.ppv_at_k(y, p, k) > m.baseline_ppv_at_k(y, test_rows.review.level, k)
    assert metrics["rows"]["review"]["validation"] > 0


def test_shuffled_labels_give_chance_auroc(train_rows, test_rows) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    shuffled = train_rows.review.y.copy()
    rng.shuffle(shuffled)
    train_rows_shuffled = type(train_rows)(
        review=type(train_rows.review)(
            **{f: getattr(train_rows.review, f) for f in train_rows.review.__slots__}
        ),
        realtime=train_rows.realtime,
    )
    train_rows_shuffled.review.y = list(shuffled)
    heads, _ = train_heads(train_rows_shuffled, TrainConfig(n_estimators=150))
    y = np.asarray(test_rows.review.y)
    p = heads["review"].predict_proba(test_rows.review.matrix())[:, 1]
    assert abs(m.auroc(y, p) - 0.5) < 0.08
