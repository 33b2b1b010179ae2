"""Reasons a reviewer understands, from LightGBM's own contributions (``pred_contrib``).

``reasons(row, names, contrib)`` takes one feature row and its SHAP contributions and
returns short phrases for the features that pushed the score up most, e.g.
``("dizziness", "atrial fibrillation", "no head CT/MRI", "age 74")``. The contributions
cost milliseconds per row, so callers compute them only for the rows they show.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from plugin.rank import codesets as cs
from plugin.rank.catalogue import shown
from plugin.rank.features import DISPOSITIONS, OUTCOME_GROUPS, SETTINGS, SEXES, TRIGGERS

_RF = {f"rf_{g.name}": g.label for g in cs.RISK_FACTORS} | {
    f"hx_{g.name}": g.label for g in cs.CHRONIC
}
_SYM = {f"sym_{g.name}": g.label for g in cs.SYMPTOMS}
_SETTING_WORDS = {
    "ED": "ED visit",
    "AMB": "clinic visit",
    "IP": "inpatient stay",
    "OBS": "observation stay",
    "ICU": "ICU stay",
    "VR": "virtual visit",
    "HH": "home visit",
    "OTHER": "other visit",
}
_DISPO_WORDS = {
    "home": "discharged home",
    "admitted": "admitted",
    "transfer": "transferred",
    "snf": "discharged to nursing facility",
    "hospice": "discharged to hospice",
    "rehab": "discharged to rehab",
    "psych": "psychiatric discharge",
    "expired": "died",
    "ama": "left against advice",
    "other": "other disposition",
}
_FLAGS: dict[str, tuple[str, str]] = {  # name -> (words when 1, words when 0)
    "head_imaging": ("head CT/MRI done", "no head CT/MRI"),
    "imaging_any": ("imaging done", "no imaging at the visit"),
    "terminal_hx": ("hospice/palliative care", "no hospice/palliative care"),
    "planned": ("planned visit", "unplanned visit"),
    "admit_elective": ("elective admission", "non-elective admission"),
    "trauma_dx": ("injury diagnosis", "no injury diagnosis"),
    "fit_positive": ("positive FIT/FOBT", "negative FIT/FOBT"),
    "on_thyroid_rx": ("on thyroid replacement", "not on thyroid replacement"),
    "rule_sequence": ("symptom then outcome", "missing follow-up"),
    "index_abnormal": ("abnormal index result", "index result not flagged abnormal"),
    "outcome_planned": ("planned outcome admission", "unplanned outcome admission"),
    "outcome_admit_elective": ("elective outcome admission", "non-elective outcome admission"),
    "outcome_icu": ("ICU at outcome", "no ICU at outcome"),
    "outcome_history_code": ("outcome coded as stroke history", "outcome not a history code"),
    "outcome_trauma": ("trauma at outcome", "no trauma at outcome"),
    "outcome_terminal": ("hospice/palliative at outcome", "no palliative code at outcome"),
    "outcome_imaging": ("imaging at outcome", "no imaging at outcome"),
    "win_thyroid_rx": ("thyroid prescription in window", "no thyroid prescription change"),
    "win_repeat_lab": ("test repeated in window", "test not repeated"),
    "win_terminal": ("hospice/palliative in window", "no hospice/palliative in window"),
    "win_declined": ("patient declined", "not documented as declined"),
    "win_nonadherence": ("non-adherence documented", "no non-adherence documented"),
    "outcome_same_dx": ("readmitted for the same problem", "outcome differs from the visit"),
    "win_died": ("died in window", "alive at window end"),
}
_NUMBERS: dict[str, Callable[[float], str]] = {
    "age": lambda v: f"age {v:.0f}",
    "duration_h": lambda v: f"visit {v:.1f} h",
    "temp_max": lambda v: f"temperature {v:.1f} °C",
    "hr_max": lambda v: f"heart rate {v:.0f}",
    "sbp_min": lambda v: f"lowest systolic BP {v:.0f}",
    "sbp_max": lambda v: f"highest systolic BP {v:.0f}",
    "dbp_min": lambda v: f"lowest diastolic BP {v:.0f}",
    "spo2_min": lambda v: f"SpO2 {v:.0f} %",
    "rr_max": lambda v: f"respiratory rate {v:.0f}",
    "n_vitals_abnormal": lambda v: f"{v:.0f} abnormal vital signs",
    "n_labs_abnormal": lambda v: f"{v:.0f} abnormal lab results",
    "n_risk_factors": lambda v: f"{v:.0f} vascular/other risk factors",
    "n_orders": lambda v: f"{v:.0f} orders/referrals at the visit",
    "prior_ed_30": lambda v: f"{v:.0f} ED visits in the prior 30 d",
    "prior_ed_365": lambda v: f"{v:.0f} ED visits in the prior year",
    "prior_amb_30": lambda v: f"{v:.0f} clinic visits in the prior 30 d",
    "prior_amb_365": lambda v: f"{v:.0f} clinic visits in the prior year",
    "prior_ip_365": lambda v: f"{v:.0f} admissions in the prior year",
    "index_x_limit": lambda v: f"index result {v:.1f}× the upper limit",
    "days_to_outcome": lambda v: "returned during the visit"
    if v <= 0
    else f"returned {v:.1f} d after the visit",
    "outcome_los_h": lambda v: f"outcome stay {v / 24:.1f} d",
    "win_encounters": lambda v: f"{v:.0f} visits in the window",
    "win_amb": lambda v: f"{v:.0f} clinic visits in the window",
    "win_ed": lambda v: f"{v:.0f} ED visits in the window",
    "win_orders": lambda v: f"{v:.0f} orders in the window",
    "win_procedures": lambda v: f"{v:.0f} procedures in the window",
    "win_reports": lambda v: f"{v:.0f} reports in the window",
    "win_outside_reports": lambda v: f"{v:.0f} outside reports in the window",
    "orders_active": lambda v: f"{v:.0f} orders still open",
    "orders_revoked": lambda v: f"{v:.0f} orders cancelled",
    "orders_completed": lambda v: f"{v:.0f} orders completed",
}
_LABS = {
    "wbc": "WBC",
    "lactate": "lactate",
    "troponin": "troponin",
    "crp": "CRP",
    "hb": "haemoglobin",
    "mcv": "MCV",
    "tsh": "TSH",
    "psa": "PSA",
    "ddimer": "D-dimer",
    "glucose": "glucose",
}
_CATS: dict[str, tuple[Sequence[str], Callable[[str], str]]] = {
    "sex": (SEXES, lambda s: s),
    "setting": (SETTINGS, lambda s: _SETTING_WORDS.get(s, s)),
    "disposition": (DISPOSITIONS, lambda s: _DISPO_WORDS.get(s, s)),
    "trigger": (TRIGGERS, lambda s: f"trigger {s}"),
    "outcome_group": (OUTCOME_GROUPS, lambda s: f"outcome: {cs.TARGET_LABELS.get(s, s)}"),
    "outcome_primary_group": (
        OUTCOME_GROUPS,
        lambda s: f"outcome main diagnosis: {cs.TARGET_LABELS.get(s, s)}",
    ),
    "outcome_setting": (SETTINGS, lambda s: f"outcome: {_SETTING_WORDS.get(s, s)}"),
}


def describe(name: str, value: float) -> str | None:
    """Words for one feature value; None when there is nothing worth saying."""
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    if name in _RF or name in _SYM:
        label = _RF.get(name) or _SYM[name]
        return None if missing else (label if value >= 0.5 else f"no {label}")
    if name in _FLAGS:
        return None if missing else _FLAGS[name][0 if value >= 0.5 else 1]
    if name.startswith("lab_"):
        lab = _LABS.get(name[4:], name[4:])
        if missing:
            return f"no {lab} result"
        side = "lower" if name[4:] in cs.LOW_SIDE_LABS else "upper"
        return f"{lab} {value:.1f}× the {side} limit"
    if name in _CATS:
        vocab, words = _CATS[name]
        if missing or not 0 <= int(value) < len(vocab):
            return None if name != "outcome_group" else "no outcome event"
        return words(vocab[int(value)])
    if name in _NUMBERS:
        if missing:
            return None if name != "temp_max" else "no temperature recorded"
        return _NUMBERS[name](value)
    return None  # a feature without words is never a reason


def reasons(
    row: Mapping[str, float], names: Sequence[str], contrib: np.ndarray, *, top: int = 5
) -> tuple[str, ...]:
    """Phrases for the catalogued features that raised the score most (largest positive
    contributions first); the last element of ``contrib`` (the bias) is ignored. Features
    not marked as reasons in :mod:`plugin.rank.catalogue` are never shown."""
    values = np.asarray(contrib[: len(names)], dtype=float)
    order = np.argsort(-values, kind="stable")
    out: list[str] = []
    for i in order:
        if values[i] <= 0 or len(out) >= top:
            break
        if not shown(names[i]):
            continue
        text = describe(names[i], row.get(names[i], math.nan))
        if text and text not in out:
            out.append(text)
    return tuple(out)
