"""Promotion gate: a new model replaces the current one only when it is not worse on a fixed
validation set.

The validation set is labelled findings the candidate was not trained on: a held-out
reviewed sample (weighted by its design weights) plus a synthetic population made with
another seed (weight 1), merged with :func:`merge`. Both models are scored on the same rows
with their own calibrated probabilities.

Rule (documented in the model card and ``dxsafety train --promote-to``): the candidate is
**not promoted** when its weighted AUROC is lower than the current model's by more than
``margin`` (default 0.005) or its weighted Brier score is higher by more than
``brier_margin`` (0.01). With no current model, the candidate is promoted. The decision and
its figures are written to ``PROMOTION.json`` in the candidate directory, and (when
promoted) the candidate's files replace the current directory's.

API for the worklist loop::

    decision = compare(candidate_dir, current_dir, validation)   # -> Decision
    promote(candidate_dir, current_dir, decision)                 # copies when promoted
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from plugin.errors import ModelError
from plugin.rank import metrics as m
from plugin.rank.dataset import Collected, Rows
from plugin.rank.ranker import Ranker, load_model

MODEL_FILES = ("model.json", "review.txt", "missed_dx.txt", "realtime.txt", "metrics.json",
               "MODEL_CARD.md")


@dataclass(frozen=True, slots=True)
class Figures:
    model_version: str
    auroc: float
    auprc: float
    brier: float
    n: int
    n_mod: int


@dataclass(frozen=True, slots=True)
class Decision:
    promoted: bool
    reason: str
    candidate: Figures
    current: Figures | None
    margin: float
    brier_margin: float
    decided_at: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def merge(parts: Iterable[Collected]) -> Collected:
    """One validation set from several labelled sources (reviewed sample + synthetic)."""
    parts = list(parts)
    if not parts:
        raise ModelError("no validation data")
    review = Rows(parts[0].review.names)
    for p in parts:
        r = p.review
        weights = r.weight if len(r.weight) == len(r) else [1.0] * len(r)
        review.X += r.X
        review.y += r.y
        review.patient += r.patient
        review.missed_dx += r.missed_dx
        review.level += r.level
        review.trigger += r.trigger
        review.scenario += r.scenario
        review.matched += r.matched
        review.keys += r.keys
        review.weight += list(weights)
    return Collected(
        review=review,
        realtime=Rows(parts[0].realtime.names),
        patients=sum(p.patients for p in parts),
        findings_unlabelled=sum(p.findings_unlabelled for p in parts),
        reviewed=any(p.reviewed for p in parts),
    )


def figures(ranker: Ranker, validation: Collected) -> Figures:
    rv = validation.review
    y = np.asarray(rv.y, dtype=int)
    if len(y) == 0 or y.min() == y.max():
        raise ModelError(
            "the validation set needs both missed opportunities and non-MOD findings"
        )
    w = np.asarray(rv.weight, dtype=float) if len(rv.weight) == len(rv) else None
    p = ranker.review_probability(rv.matrix())
    return Figures(
        model_version=ranker.version,
        auroc=m.weighted_auroc(y, p, w),
        auprc=m.average_precision(y, p),
        brier=m.weighted_brier(y, p, w),
        n=len(y),
        n_mod=int(y.sum()),
    )


def compare(
    candidate_dir: Path | str,
    current_dir: Path | str | None,
    validation: Collected,
    *,
    margin: float = 0.005,
    brier_margin: float = 0.01,
) -> Decision:
    """Decide whether the candidate model may replace the current one."""
    cand = figures(load_model(candidate_dir), validation)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    current_ok = current_dir is not None and (Path(current_dir) / "model.json").is_file()
    if not current_ok:
        return Decision(True, "no current model", cand, None, margin, brier_margin, now)
    assert current_dir is not None  # noqa: S101 (narrowed by current_ok)
    try:
        cur = figures(load_model(current_dir), validation)
    except ModelError as exc:
        # a current model this code cannot load (older features) cannot be served either
        return Decision(True, f"current model unusable: {exc}", cand, None, margin,
                        brier_margin, now)
    if cand.auroc < cur.auroc - margin:
        why = f"worse: AUROC {cand.auroc:.3f} < current {cur.auroc:.3f} - {margin}"
        return Decision(False, why, cand, cur, margin, brier_margin, now)
    if cand.brier > cur.brier + brier_margin:
        why = f"worse: Brier {cand.brier:.3f} > current {cur.brier:.3f} + {brier_margin}"
        return Decision(False, why, cand, cur, margin, brier_margin, now)
    why = f"not worse: AUROC {cand.auroc:.3f} vs {cur.auroc:.3f}, Brier {cand.brier:.3f} vs " \
        f"{cur.brier:.3f}"
    return Decision(True, why, cand, cur, margin, brier_margin, now)


def promote(candidate_dir: Path | str, target_dir: Path | str, decision: Decision) -> bool:
    """Record the decision; when promoted, replace ``target_dir``'s model files with the
    candidate's (written to a temporary directory first, then swapped in)."""
    cand, target = Path(candidate_dir), Path(target_dir)
    record = json.dumps(decision.to_json(), indent=2, sort_keys=True) + "\n"
    (cand / "PROMOTION.json").write_text(record)
    if not decision.promoted:
        return False
    tmp = target.with_name(target.name + ".promoting")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in (*MODEL_FILES, "PROMOTION.json"):
        if (cand / name).is_file():
            shutil.copy2(cand / name, tmp / name)
    old = target.with_name(target.name + ".previous")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    return True
