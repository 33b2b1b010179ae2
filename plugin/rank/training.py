"""Fit the three heads on collected rows (patient-level split) and describe the model."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np

from plugin.errors import ModelError
from plugin.rank import metrics as m
from plugin.rank.dataset import Collected, Rows, in_validation
from plugin.rank.features import CATEGORICAL, FEATURE_VERSION, REALTIME_FEATURES, REVIEW_FEATURES
from plugin.rank.model import MissedDxRanker


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    seed: int = 0
    n_estimators: int = 300
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_child_samples: int = 20
    num_threads: int = 2


def _estimator(cfg: TrainConfig, names: tuple[str, ...], **over: Any) -> MissedDxRanker:
    params: dict[str, Any] = dict(
        n_estimators=cfg.n_estimators,
        learning_rate=cfg.learning_rate,
        num_leaves=cfg.num_leaves,
        min_child_samples=cfg.min_child_samples,
        feature_names=names,
        categorical=tuple(n for n in names if n in CATEGORICAL),
        seed=cfg.seed,
        num_threads=cfg.num_threads,
    )
    params.update(over)
    return MissedDxRanker(**params)


def train_heads(
    data: Collected, cfg: TrainConfig
) -> tuple[dict[str, MissedDxRanker], dict[str, Any]]:
    """Train on the training patients; metrics on the validation patients."""
    rv = data.review
    if len(rv) == 0:
        raise ModelError("no rule findings in the training data: nothing to train on")
    y = np.asarray(rv.y, dtype=int)
    if len(set(y.tolist())) < 2:
        raise ModelError(
            f"the training findings are all {'MOD' if y[0] else 'non-MOD'}: "
            "check that the labels file belongs to this data"
        )
    valid = np.array([in_validation(p) for p in rv.patient])
    X = rv.matrix()
    heads: dict[str, MissedDxRanker] = {}
    metrics: dict[str, Any] = {
        "feature_version": FEATURE_VERSION,
        "split": "patient sha256, 20 % validation",
        "rows": {},
    }
    review = _estimator(cfg, REVIEW_FEATURES).fit(X[~valid], y[~valid])
    heads["review"] = review
    metrics["rows"]["review"] = {
        "train": int((~valid).sum()),
        "validation": int(valid.sum()),
        "mod_train": int(y[~valid].sum()),
        "mod_validation": int(y[valid].sum()),
        "unlabelled": data.findings_unlabelled,
    }
    if valid.any() and len(set(y[valid].tolist())) == 2:
        p = review.predict_proba(X[valid])[:, 1]
        k = int(y[valid].sum())
        metrics["review_validation"] = {
            "auroc": m.auroc(y[valid], p),
            "auprc": m.average_precision(y[valid], p),
            "prevalence": float(y[valid].mean()),
            "k": k,
            "ppv_at_k": m.ppv_at_k(y[valid], p, k),
            "rules_only_ppv_at_k": m.baseline_ppv_at_k(y[valid], np.asarray(rv.level)[valid], k),
            "brier": m.brier(y[valid], p),
        }
    mod = y == 1
    dx = np.asarray(rv.missed_dx, dtype=object)
    train_dx = mod & ~valid & (dx != "")
    if len(set(dx[train_dx].tolist())) >= 2:
        head = _estimator(
            cfg,
            REVIEW_FEATURES,
            min_child_samples=min(cfg.min_child_samples, 5),
            n_estimators=min(cfg.n_estimators, 150),
        )
        heads["missed_dx"] = head.fit(X[train_dx], dx[train_dx])
        vdx = mod & valid & (dx != "")
        if vdx.any():
            proba = head.predict_proba(X[vdx])
            ranked = [
                [str(head.classes_[j]) for j in np.argsort(-row, kind="stable")] for row in proba
            ]
            truth = [str(t) for t in dx[vdx]]
            metrics["missed_dx_validation"] = {
                "n": int(vdx.sum()),
                "top1": m.topk_accuracy(truth, ranked, 1),
                "top3": m.topk_accuracy(truth, ranked, 3),
            }
    heads_rt, metrics_rt = _train_realtime(data.realtime, cfg)
    heads.update(heads_rt)
    metrics["rows"].update(metrics_rt.pop("rows", {}))
    metrics.update(metrics_rt)
    return heads, metrics


def _train_realtime(rt: Rows, cfg: TrainConfig) -> tuple[dict[str, MissedDxRanker], dict[str, Any]]:
    labels = np.asarray(rt.y, dtype=object)
    if len(rt) == 0 or len(set(labels.tolist())) < 2:
        return {}, {"realtime": "not trained: no encounter was followed by a target diagnosis"}
    valid = np.array([in_validation(p) for p in rt.patient])
    X = rt.matrix()
    head = _estimator(cfg, REALTIME_FEATURES, n_estimators=min(cfg.n_estimators, 200))
    head.fit(X[~valid], labels[~valid])
    out: dict[str, Any] = {
        "rows": {
            "realtime": {
                "train": int((~valid).sum()),
                "validation": int(valid.sum()),
                "labels": dict(Counter(labels.tolist())),
            }
        }
    }
    if valid.any():
        proba = head.predict_proba(X[valid])
        per = {}
        for j, c in enumerate(head.classes_):
            yy = (labels[valid] == c).astype(int)
            if c != "none" and 0 < yy.sum() < len(yy):
                per[str(c)] = {
                    "n_pos": int(yy.sum()),
                    "auroc": m.auroc(yy, proba[:, j]),
                    "brier": m.brier(yy, proba[:, j]),
                }
        out["realtime_validation"] = per
    return {"realtime": head}, out


def model_card(meta: dict[str, Any], metrics: dict[str, Any]) -> str:
    """MODEL_CARD.md text."""
    rows = metrics.get("rows", {})
    val = metrics.get("review_validation", {})

    def fmt(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    val_lines = "\n".join(f"| {k} | {fmt(v)} |" for k, v in val.items()) or "| (none) | |"
    return f"""# Model card: dxsafety missed-diagnosis ranker

**Feature version** {FEATURE_VERSION} · LightGBM {lgb.__version__} · trained
{meta.get("trained_at", "?")} · training-data fingerprint `{meta.get("fingerprint", "?")}`

## Intended use
Orders e-trigger findings for **retrospective chart review** (Safer Dx) so that reviewers
see the likeliest missed opportunities in diagnosis (MOD) first, suggests the likely
missed diagnosis, and (real-time head) lists dangerous diagnoses that may be being missed
at the end of an ED or primary-care encounter as decision support. It never decides that
an error happened; a clinician reviews every case.

## Heads
- `review`: P(finding is a true MOD), binary, from the index visit and the rule's window.
- `missed_dx`: likely missed diagnosis (multiclass), trained on MOD findings only.
- `realtime`: P(each dangerous diagnosis within 30 d after an encounter), multiclass with
  a `none` class, from data recorded by the end of the encounter only.

## Data
Trained on **synthetic** FHIR data (`dxsafety synth`) with planted MODs and look-alikes
whose rates follow published trigger PPVs. Rows: `{rows}`. Findings without a label row
are non-MODs. Split by patient (sha256 of the id), 20 % held out for the figures below.

## Internal validation (held-out patients, same synthetic population)
| metric | value |
|---|---|
{val_lines}

Evaluate on a population generated with another seed (`dxsafety evaluate`) before
quoting figures; see its `report.md`.

## Limits
- **Synthetic data only. Not validated on real adjudicated cases.** The generator's
  assumptions (which features separate MODs from look-alikes) are baked into what the
  model learns; on real data performance is unknown and likely lower
  (published GBT results on adjudicated labels: AUROC 0.70–0.83, n ≤ 220).
- Not a medical device. Probabilities are calibrated only to the synthetic prevalence.
- Features come from coded data; free-text follow-up, outside care and notes are not seen.
- Subgroup figures (sex, age band) are in the evaluation report; small groups are noisy.
"""
