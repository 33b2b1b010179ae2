"""A trained ranker and its model directory.

Layout of ``MODEL_DIR``::

    model.json        feature version, feature names and classes per head, rule -> trigger
                      map, training-data fingerprint, parameters, library versions,
                      ``model_version`` (sha256 of the heads and calibration, 12 hex),
                      ``calibration`` of the review head, ``cards`` (the real-time gate)
    review.txt        LightGBM booster: P(finding is a true MOD)
    missed_dx.txt     LightGBM booster: likely missed diagnosis (multiclass; optional)
    realtime.txt      LightGBM booster: P(dangerous diagnosis within 30 d of an encounter)
    metrics.json      internal validation (patient-level split) of each head
    MODEL_CARD.md     intended use, data, limits

:func:`load_model` refuses a directory whose feature version differs from the code's
``FEATURE_VERSION`` with a :class:`plugin.errors.ModelError`.

Every scored finding carries the model that scored it: ``Finding.score`` is the calibrated
P(MOD), ``Finding.extra["model_version"]`` the model version and ``extra["score_kind"]``
says what the number is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from plugin.errors import ModelError
from plugin.rank import codesets as cs
from plugin.rank.calibrate import Calibrator
from plugin.rank.explain import reasons
from plugin.rank.features import (
    FEATURE_VERSION,
    REALTIME_FEATURES,
    REVIEW_FEATURES,
    finding_features,
    realtime_features,
    vector,
)
from plugin.rank.model import MissedDxRanker
from plugin.timeline.model import Finding, Timeline

HEADS = ("review", "missed_dx", "realtime")
NO_DX = "none"


@dataclass(frozen=True, slots=True)
class Risk:
    """One dangerous diagnosis that may be being missed at an encounter."""

    diagnosis: str  # target name, e.g. "stroke"
    probability: float  # P(diagnosed within 30 d after the encounter)
    reasons: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return cs.TARGET_LABELS.get(self.diagnosis, self.diagnosis)


class Ranker:
    """The three heads of a trained model plus the metadata they were trained with."""

    def __init__(self, heads: Mapping[str, MissedDxRanker], meta: Mapping[str, Any]):
        self.heads = dict(heads)
        self.meta = dict(meta)
        self.rule_triggers: dict[str, str] = dict(meta.get("rule_triggers", {}))
        self.calibrator = Calibrator.from_json(meta.get("calibration"))

    @property
    def version(self) -> str:
        """The model version stored with every score (``model.json`` ``model_version``)."""
        return str(self.meta.get("model_version", ""))

    def ships_in_cards(self, head: str = "realtime") -> bool:
        """False when training or the cross-site evaluation found that ``head`` does not
        beat the simple baseline (``cards.<head>.status == "hold"``): CDS cards then fall
        back to the rules. Unevaluated heads are shipped (their status says so)."""
        gate = self.meta.get("cards", {}).get(head, {})
        return head in self.heads and gate.get("status") != "hold"

    def review_probability(self, X: np.ndarray) -> np.ndarray:
        """Calibrated P(MOD) of review feature rows."""
        review = self.heads["review"]
        if len(review.classes_) < 2:
            return np.zeros(len(X))
        raw = review.predict_proba(X)[:, list(review.classes_).index(1)]
        return self.calibrator(raw)

    def _trigger(self, f: Finding) -> str | None:
        return f.extra.get("trigger") or self.rule_triggers.get(f.rule_id)

    def score_findings(
        self,
        findings: Sequence[Finding],
        timelines: Mapping[str, Timeline],
        *,
        explain_top: int = 50,
    ) -> list[Finding]:
        """Findings with ``score``, ``missed_dx`` (top 3) and, for the ``explain_top``
        highest scores only, ``reasons``; returned best first. Findings whose patient is
        not in ``timelines`` (or whose index event is not in it) are returned last,
        unscored."""
        known, rows, unknown = [], [], []
        for f in findings:
            try:
                rows.append(finding_features(timelines[f.patient_id], f, self._trigger(f)))
            except KeyError:  # patient not given, or the index event is not in its timeline
                unknown.append(f)
            else:
                known.append(f)
        if not known:
            return list(unknown)
        X = np.array([vector(r, REVIEW_FEATURES) for r in rows], dtype=np.float64)
        review = self.heads["review"]
        p = self.review_probability(X)
        dx = self.missed_dx_top3(X, [self._trigger(f) or "" for f in known])
        order = np.argsort(-p, kind="stable")
        shown = order[:explain_top]
        contrib = review.contributions(X[shown]) if len(shown) else np.empty((0, 0))
        out: list[Finding] = []
        for rank, i in enumerate(order):
            why: tuple[str, ...] = ()
            if rank < len(shown):
                why = reasons(rows[i], REVIEW_FEATURES, contrib[rank])
            extra = dict(known[i].extra) | {
                "model_version": self.version,
                "score_kind": "calibrated P(MOD)"
                if self.calibrator.kind != "none"
                else "uncalibrated P(MOD)",
            }
            out.append(
                dataclasses.replace(
                    known[i], score=float(p[i]), missed_dx=dx[i], reasons=why, extra=extra
                )
            )
        return out + unknown

    def missed_dx_top3(
        self, X: np.ndarray, triggers: Sequence[str] | None = None
    ) -> list[tuple[tuple[str, float], ...]]:
        """Likely missed diagnoses per row, only among the rule's targets
        (:data:`plugin.rank.codesets.TRIGGER_TARGETS`), probabilities over those
        candidates (given that the finding is a missed opportunity)."""
        from plugin.rank.training import constrain_dx

        head = self.heads.get("missed_dx")
        if head is None or len(X) == 0:
            return [()] * len(X)
        proba = head.predict_proba(X)
        names = [str(c) for c in head.classes_]
        trig = list(triggers) if triggers is not None else [""] * len(X)
        return [tuple(constrain_dx(trig[i], names, proba[i])[:3]) for i in range(len(X))]

    def realtime_risk(
        self, timeline: Timeline, encounter_ref: str, *, explain_top: int = 3
    ) -> list[Risk]:
        """Dangerous diagnoses ranked by P(diagnosed within 30 d after the encounter),
        from data recorded by the encounter's end only. Reasons for the first
        ``explain_top``."""
        head = self.heads.get("realtime")
        if head is None:
            raise ModelError(
                "this model has no real-time head (no ED/clinic encounters in its training data)"
            )
        try:
            row = realtime_features(timeline, encounter_ref)
        except KeyError as exc:
            raise ModelError(str(exc.args[0])) from None
        X = np.array([vector(row, REALTIME_FEATURES)], dtype=np.float64)
        proba = head.predict_proba(X)[0]
        names = [str(c) for c in head.classes_]
        order = [j for j in np.argsort(-proba, kind="stable") if names[j] != NO_DX]
        contrib = head.contributions(X)[0] if explain_top else None
        risks = []
        for n, j in enumerate(order):
            why: tuple[str, ...] = ()
            if contrib is not None and n < explain_top:
                c = contrib[j] if contrib.ndim == 2 else (contrib if j == 1 else -contrib)
                why = reasons(row, REALTIME_FEATURES, c, top=4)
            risks.append(Risk(diagnosis=names[j], probability=float(proba[j]), reasons=why))
        return risks


def save_model(
    out: Path,
    heads: Mapping[str, MissedDxRanker],
    meta: Mapping[str, Any],
    metrics: Mapping[str, Any],
    card: str,
) -> None:
    """Write a model directory (overwrites the files it owns)."""
    out.mkdir(parents=True, exist_ok=True)
    info = dict(meta) | {"feature_version": FEATURE_VERSION, "heads": {}}
    for key in ("calibration", "cards"):
        if key in metrics and key not in info:
            info[key] = metrics[key]
    version = hashlib.sha256()
    for name, est in heads.items():
        est.booster_.save_model(str(out / f"{name}.txt"))
        version.update(name.encode() + b"\0" + (out / f"{name}.txt").read_bytes())
        info["heads"][name] = {
            "file": f"{name}.txt",
            "classes": [c.item() if hasattr(c, "item") else c for c in est.classes_],
            "features": list(est.feature_names_in_),
            "params": {k: v for k, v in est.get_params().items() if k != "feature_names"}
            | {"categorical": list(est.categorical)},
        }
    version.update(json.dumps(info.get("calibration"), sort_keys=True).encode())
    info["model_version"] = version.hexdigest()[:12]
    (out / "model.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    (out / "MODEL_CARD.md").write_text(
        card.replace("(set when saved: see model.json)", info["model_version"])
    )


def load_model(model_dir: Path | str) -> Ranker:
    """Load a model directory; refuse a feature-version mismatch or missing files."""
    path = Path(model_dir)
    meta_file = path / "model.json"
    if not meta_file.is_file():
        raise ModelError(f"{path}: not a model directory (no model.json)")
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{meta_file}: unreadable ({exc})") from None
    version = meta.get("feature_version")
    if version != FEATURE_VERSION:
        raise ModelError(
            f"{path}: model was trained with feature version {version!r} but this dxsafety "
            f"computes features version {FEATURE_VERSION!r}; retrain it with `dxsafety train`"
        )
    heads: dict[str, MissedDxRanker] = {}
    expected = {
        "review": REVIEW_FEATURES,
        "missed_dx": REVIEW_FEATURES,
        "realtime": REALTIME_FEATURES,
    }
    for name, info in meta.get("heads", {}).items():
        file = path / info["file"]
        if name not in expected:
            continue
        try:
            booster = lgb.Booster(model_file=str(file))
        except (lgb.basic.LightGBMError, OSError) as exc:
            raise ModelError(f"{file}: cannot load booster ({exc})") from None
        if tuple(booster.feature_name()) != expected[name]:
            raise ModelError(f"{file}: feature names differ from feature version {version}")
        params = {k: v for k, v in info.get("params", {}).items() if k != "categorical"}
        heads[name] = MissedDxRanker.from_booster(
            booster,
            info["classes"],
            categorical=tuple(info.get("params", {}).get("categorical", ())),
            **params,
        )
    if "review" not in heads:
        raise ModelError(f"{path}: model has no review head")
    return Ranker(heads, meta)
