"""Fit the three heads on collected rows (patient-level split), calibrate the review head,
gate the real-time head against a simple baseline, and describe the model."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np

from plugin.errors import ModelError
from plugin.rank import baseline, calibrate
from plugin.rank import codesets as cs
from plugin.rank import metrics as m
from plugin.rank.catalogue import monotone_vector
from plugin.rank.dataset import VALIDATION_PERCENT, Collected, Rows, in_validation
from plugin.rank.features import CATEGORICAL, FEATURE_VERSION, REALTIME_FEATURES, REVIEW_FEATURES
from plugin.rank.model import MissedDxRanker

if TYPE_CHECKING:
    from plugin.rank.ranker import Ranker


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    seed: int = 0
    n_estimators: int = 300
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_child_samples: int = 20
    num_threads: int = 1  # OpenMP threads spin on a shared machine: 1 was 40x faster under load
    base_rounds: int = 100  # boosting rounds added to a --base model on reviewed labels


def split_of(patient_id: str) -> str:
    """train (80 %), calibration (10 %) or test (10 %), by a hash of the patient id; the
    calibration and test patients are the held-out 20 % of :func:`in_validation`."""
    h = hashlib.sha256(f"dxsafety-split|{patient_id}".encode()).digest()
    v = int.from_bytes(h[:4], "big") % 100
    return "calibration" if v < VALIDATION_PERCENT // 2 else "test" if in_validation(
        patient_id) else "train"


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


def normalised(w: np.ndarray) -> np.ndarray:
    """Design weights scaled to mean 1 (the boosting hyper-parameters keep their meaning)."""
    w = np.asarray(w, dtype=float)
    return w / w.mean() if len(w) and w.mean() > 0 else w


def train_heads(
    data: Collected, cfg: TrainConfig, *, base: Ranker | None = None
) -> tuple[dict[str, MissedDxRanker], dict[str, Any]]:
    """Train on the training patients, calibrate on the calibration patients, report on the
    test patients. ``base``: continue from a prior model (the synthetic prior) — the review
    head boosts ``cfg.base_rounds`` more rounds from it; heads the data cannot train (no
    missed-diagnosis labels in a reviewed export) are kept from the base."""
    rv = data.review
    if len(rv) == 0:
        raise ModelError("no labelled rule findings in the training data: nothing to train on")
    y = np.asarray(rv.y, dtype=int)
    if len(set(y.tolist())) < 2:
        raise ModelError(
            f"the training findings are all {'MOD' if y[0] else 'non-MOD'}: "
            "check that the labels file belongs to this data"
        )
    split = np.array([split_of(p) for p in rv.patient])
    train, calib, test = split == "train", split == "calibration", split == "test"
    w = np.asarray(rv.weight, dtype=float) if len(rv.weight) == len(rv) else np.ones(len(rv))
    X = rv.matrix()
    heads: dict[str, MissedDxRanker] = {}
    metrics: dict[str, Any] = {
        "feature_version": FEATURE_VERSION,
        "split": "patient sha256: 80 % train, 10 % calibration, 10 % test",
        "rows": {},
    }
    init = None
    if base is not None:
        init = base.heads["review"].booster_
        if tuple(init.feature_name()) != REVIEW_FEATURES:
            raise ModelError("the base model was trained on other features")
    review = _estimator(
        cfg,
        REVIEW_FEATURES,
        monotone=tuple(monotone_vector(REVIEW_FEATURES)),
        n_estimators=cfg.base_rounds if init is not None else cfg.n_estimators,
    ).fit(X[train], y[train], sample_weight=normalised(w[train]), init_booster=init)
    heads["review"] = review
    raw_cal = review.predict_proba(X[calib])[:, 1] if calib.any() else np.empty(0)
    calibrator = calibrate.fit(raw_cal, y[calib], w[calib])
    metrics["calibration"] = calibrator.to_json()
    metrics["rows"]["review"] = {
        "train": int(train.sum()),
        "calibration": int(calib.sum()),
        "test": int(test.sum()),
        "validation": int((calib | test).sum()),
        "mod_train": int(y[train].sum()),
        "mod_validation": int(y[calib | test].sum()),
        "unlabelled": data.findings_unlabelled,
        "reviewed_labels": data.reviewed,
    }
    if test.any() and len(set(y[test].tolist())) == 2:
        p = calibrator(review.predict_proba(X[test])[:, 1])
        k = int(y[test].sum())
        metrics["review_validation"] = {
            "auroc": m.weighted_auroc(y[test], p, w[test]),
            "auprc": m.average_precision(y[test], p),
            "prevalence": float(y[test].mean()),
            "k": k,
            "ppv_at_k": m.ppv_at_k(y[test], p, k),
            "rules_only_ppv_at_k": m.baseline_ppv_at_k(y[test], np.asarray(rv.level)[test], k),
            "brier": m.weighted_brier(y[test], p, w[test]),
        }
    mod = y == 1
    dx = np.asarray(rv.missed_dx, dtype=object)
    train_dx = mod & train & (dx != "")
    if len(set(dx[train_dx].tolist())) >= 2:
        head = _estimator(
            cfg,
            REVIEW_FEATURES,
            min_child_samples=min(cfg.min_child_samples, 5),
            n_estimators=min(cfg.n_estimators, 150),
        )
        heads["missed_dx"] = head.fit(X[train_dx], dx[train_dx])
        vdx = mod & ~train & (dx != "")
        if vdx.any():
            proba = head.predict_proba(X[vdx])
            trig = np.asarray(rv.trigger, dtype=object)[vdx]
            ranked = [
                [c for c, _ in constrain_dx(str(t), [str(c) for c in head.classes_], row)]
                for t, row in zip(trig, proba, strict=True)
            ]
            truth = [str(t) for t in dx[vdx]]
            metrics["missed_dx_validation"] = {
                "n": int(vdx.sum()),
                "top1": m.topk_accuracy(truth, ranked, 1),
                "top3": m.topk_accuracy(truth, ranked, 3),
                "constrained_to_rule_targets": True,
            }
    elif base is not None and "missed_dx" in base.heads:
        heads["missed_dx"] = base.heads["missed_dx"]
        metrics["missed_dx"] = "kept from the base model (no missed-diagnosis labels)"
    heads_rt, metrics_rt = _train_realtime(data.realtime, cfg)
    if not heads_rt and base is not None and "realtime" in base.heads:
        heads_rt = {"realtime": base.heads["realtime"]}
        metrics_rt["realtime"] = "kept from the base model"
    heads.update(heads_rt)
    metrics["rows"].update(metrics_rt.pop("rows", {}))
    metrics.update(metrics_rt)
    if "realtime" in heads:
        metrics["cards"] = {"realtime": card_gate(heads["realtime"], data.realtime, "test")}
    return heads, metrics


def constrain_dx(
    trigger: str, classes: list[str], proba: np.ndarray
) -> list[tuple[str, float]]:
    """The missed-diagnosis candidates of a finding: only the rule's targets
    (:data:`plugin.rank.codesets.TRIGGER_TARGETS`), renormalised to sum to 1, best first.
    A trigger without a target list keeps every class."""
    allowed = cs.TRIGGER_TARGETS.get(trigger.upper())
    pairs = [
        (c, float(p))
        for c, p in zip(classes, proba, strict=True)
        if allowed is None or c in allowed
    ]
    if allowed is not None:
        # a target the head never saw still is a candidate (probability from the rest)
        pairs += [(c, 0.0) for c in sorted(allowed) if c not in classes]
    total = sum(p for _, p in pairs)
    if total > 0:
        pairs = [(c, p / total) for c, p in pairs]
    elif pairs:
        pairs = [(c, 1.0 / len(pairs)) for c, _ in pairs]
    return sorted(pairs, key=lambda cp: -cp[1])


def realtime_any(head: MissedDxRanker, X: np.ndarray) -> np.ndarray:
    """P(any dangerous diagnosis within 30 d) = 1 - P(none)."""
    proba = head.predict_proba(X)
    classes = [str(c) for c in head.classes_]
    none = classes.index("none") if "none" in classes else None
    return 1.0 - proba[:, none] if none is not None else proba.max(axis=1)


def card_gate(
    head: MissedDxRanker, rows: Rows, part: str | None, *, basis: str = "in-site test split"
) -> dict[str, Any]:
    """Does the real-time head beat the baseline (:mod:`plugin.rank.baseline`, fitted on the
    training patients) at telling encounters followed by a dangerous diagnosis from the
    rest? ``status``: ship | hold (does not beat it: not shown in cards) | unevaluated (too
    few cases). ``part=None`` scores every row of ``rows`` (another site) with a baseline
    fitted on ``rows``' own training split."""
    labels = np.asarray(rows.y, dtype=object)
    if len(rows) == 0:
        return {"status": "unevaluated", "basis": basis, "why": "no encounters"}
    X = rows.matrix()
    y = (labels != "none").astype(int)
    split = np.array([split_of(p) for p in rows.patient])
    fit_rows = split == "train"
    eval_rows = np.ones(len(rows), dtype=bool) if part is None else split == part
    n_pos = int(y[eval_rows].sum())
    if n_pos < 10 or n_pos == int(eval_rows.sum()) or len(set(y[fit_rows].tolist())) < 2:
        return {"status": "unevaluated", "basis": basis, "n_pos": n_pos,
                "why": "fewer than 10 encounters followed by a dangerous diagnosis"}
    bl = baseline.fit(X[fit_rows], y[fit_rows], REALTIME_FEATURES)
    auc_head = m.auroc(y[eval_rows], realtime_any(head, X[eval_rows]))
    auc_base = m.auroc(y[eval_rows], baseline.score(bl, X[eval_rows], REALTIME_FEATURES))
    return {
        "status": "ship" if auc_head > auc_base else "hold",
        "basis": basis,
        "auroc": auc_head,
        "baseline_auroc": auc_base,
        "n": int(eval_rows.sum()),
        "n_pos": n_pos,
    }


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


def _data_section(meta: dict[str, Any], rows: Any) -> str:
    td = meta.get("training_data") or {"kind": "synthetic"}
    lines = []
    if td.get("kind") == "reviewed":
        sel = ", ".join(f"{k} {v}" for k, v in sorted(td.get("by_selection", {}).items()))
        lines.append(
            f"Trained on **{td.get('reviewed_findings', '?')} reviewed findings** "
            f"(selection: {sel or '?'}; reviewed {td.get('reviewed_from', '?')} to "
            f"{td.get('reviewed_to', '?')}; sites: {', '.join(td.get('sites', [])) or '?'}), "
            "weighted by inverse inclusion probability (ranked-triage rows weigh 1). "
            f"Unreviewed findings ({td.get('unlabelled', 0)}) were left out, never counted "
            "as negatives."
        )
        base = td.get("base")
        if base:
            lines.append(
                f"It continues the model `{base.get('model_version', '?')}` (the synthetic "
                f"prior: {base.get('training_data', {}).get('kind', 'synthetic')} data, "
                f"{base.get('patients', '?')} patients) with "
                f"{td.get('base_rounds', '?')} more boosting rounds; heads without reviewed "
                "labels (missed diagnosis) are the base model's."
            )
        else:
            lines.append("No synthetic prior was used (`--base` not given).")
    else:
        lines.append(
            "Trained on **synthetic** FHIR data (`dxsafety synth`, sites: "
            f"{', '.join(td.get('sites', [])) or 'default'}) with planted MODs and "
            "look-alikes whose rates follow published trigger PPVs. Findings without a label "
            "row are non-MODs (the generator labels every planted case)."
        )
    lines.append(f"Rows: `{rows}`.")
    return "\n".join(lines)


def model_card(meta: dict[str, Any], metrics: dict[str, Any]) -> str:
    """MODEL_CARD.md text."""
    rows = metrics.get("rows", {})
    val = metrics.get("review_validation", {})
    cal = metrics.get("calibration", {})
    gate = metrics.get("cards", {}).get("realtime", {})
    kind = (meta.get("training_data") or {}).get("kind", "synthetic")

    def fmt(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    val_lines = "\n".join(f"| {k} | {fmt(v)} |" for k, v in val.items()) or "| (none) | |"
    gate_line = ", ".join(f"{k} {fmt(v)}" for k, v in gate.items()) or "not trained"
    limits = (
        "- **Synthetic data only. Not validated on real adjudicated cases.** The generator's\n"
        "  assumptions (which features separate MODs from look-alikes) are baked into what the\n"
        "  model learns; on real data performance is unknown and likely lower\n"
        "  (published GBT results on adjudicated labels: AUROC 0.70–0.83, n ≤ 220)."
        if kind == "synthetic"
        else "- Reviewed labels from the sites above only; small samples give wide intervals.\n"
        "  Check the promotion record (`PROMOTION.json`) before serving it."
    )
    return f"""# Model card: dxsafety missed-diagnosis ranker

**Model version** `{meta.get("model_version", "(set when saved: see model.json)")}` ·
**Feature version** {FEATURE_VERSION} · LightGBM {lgb.__version__} · trained
{meta.get("trained_at", "?")} · training-data fingerprint `{meta.get("fingerprint", "?")}`

## Intended use
Orders e-trigger findings for **retrospective chart review** (Safer Dx) so that reviewers
see the likeliest missed opportunities in diagnosis (MOD) first, suggests the likely
missed diagnosis, and (real-time head) lists dangerous diagnoses that may be being missed
at the end of an ED or primary-care encounter as decision support. It never decides that
an error happened; a clinician reviews every case.

## Heads
- `review`: P(finding is a true MOD), binary, from the index visit and the rule's window;
  monotone where the clinical direction is known (`plugin/rank/FEATURES.md`), then
  calibrated ({cal.get("kind", "none")}, {cal.get("n", 0)} held-out findings): the score
  shown is a probability.
- `missed_dx`: likely missed diagnosis (multiclass), trained on MOD findings only; a
  finding's suggestions are only its rule's targets, renormalised over them.
- `realtime`: P(each dangerous diagnosis within 30 d after an encounter), multiclass with
  a `none` class, from data recorded by the end of the encounter only. Card gate (shown
  in CDS cards only when it beats a logistic baseline on red flags and vital signs):
  {gate_line}.

## Data
{_data_section(meta, rows)}
Split by patient (sha256 of the id): 80 % train, 10 % calibration, 10 % test (below).

## Internal validation (held-out test patients, same population)
| metric | value |
|---|---|
{val_lines}

Evaluate on another site (`bench/rank_eval.py`, `dxsafety evaluate`) before quoting
figures; in-site figures are optimistic.

## Limits
{limits}
- Not a medical device. Probabilities are calibrated to the training prevalence.
- Features come from coded data; free-text follow-up, outside care and notes are not seen.
- Subgroup figures (sex, age band) are in the evaluation report; small groups are noisy.
"""
