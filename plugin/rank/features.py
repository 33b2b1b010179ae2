"""The ranker's one feature pipeline: pure functions from a :class:`Timeline`.

Two uses share the same encounter features:

* **Real-time risk** (:func:`realtime_features`): at the end of an ED or primary-care
  encounter, from ``timeline.until(encounter end)`` only. Derived fields that look into
  the future (``EncounterDetail.released`` is computed from an admission in the next
  24 h) are never read.
* **Review ranking** (:func:`finding_features`): the encounter features of the index
  event at its end, plus what happened inside the rule's window (``index start`` to
  ``finding.window_end``), from ``timeline.until(window_end)``. Labels
  (``labels.csv``) never reach this module.

Missing values are ``nan`` (LightGBM handles them). Categorical features are small
integer codes over the fixed vocabularies below; changing any name, vocabulary or code
group changes ``FEATURE_VERSION``, and a model trained on another version is refused.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from plugin.rank import codesets as cs
from plugin.timeline.model import Code, Event, Finding, Kind, Setting, Timeline

FEATURE_VERSION = "2026-12-01.1"
NAN = math.nan

SEXES = ("female", "male", "other")
SETTINGS = tuple(s.value for s in Setting)
DISPOSITIONS = (
    "home",
    "admitted",
    "transfer",
    "snf",
    "hospice",
    "rehab",
    "psych",
    "expired",
    "ama",
    "other",
)
TRIGGERS = (
    "SP-1",
    "SP-2",
    "SP-3",
    "ED-1",
    "ED-2",
    "ED-3",
    "ED-4",
    "PC-1",
    "PC-2",
    "PC-3",
    "PC-4",
    "PC-5",
    "PC-6",
    "IP-1",
    "IP-2",
    "IP-3",
    "TR-1",
    "TR-2",
    "TR-3",
    "TR-4",
    "TR-5",
    "TR-6",
    "TR-7",
    "TR-8",
    "CA-1",
    "CA-2",
    "LB-1",
    "FW-1",
    "FW-2",
)
INDEX_KINDS = tuple(k.value for k in Kind)
OUTCOME_GROUPS = cs.TARGET_NAMES

ENCOUNTER_FEATURES: tuple[str, ...] = (
    "age",
    "sex",
    *(f"rf_{g.name}" for g in cs.RISK_FACTORS),
    "n_risk_factors",
    *(f"hx_{g.name}" for g in cs.CHRONIC),
    "terminal_hx",
    "setting",
    "disposition",
    "duration_h",
    "planned",
    "admit_elective",
    *(f"sym_{g.name}" for g in cs.SYMPTOMS),
    "trauma_dx",
    "temp_max",
    "hr_max",
    "sbp_min",
    "sbp_max",
    "dbp_min",
    "spo2_min",
    "rr_max",
    "n_vitals_abnormal",
    *(f"lab_{name}" for name in cs.LABS),
    "n_labs_abnormal",
    "fit_positive",
    "imaging_any",
    "head_imaging",
    "n_orders",
    "prior_ed_30",
    "prior_ed_365",
    "prior_amb_30",
    "prior_amb_365",
    "prior_ip_365",
    "on_thyroid_rx",
)
WINDOW_FEATURES: tuple[str, ...] = (
    "trigger",
    "rule_sequence",
    "index_kind",
    "index_x_limit",
    "index_abnormal",
    "days_to_outcome",
    "outcome_group",
    "outcome_primary_group",
    "outcome_same_dx",
    "outcome_setting",
    "outcome_los_h",
    "outcome_planned",
    "outcome_admit_elective",
    "outcome_icu",
    "outcome_history_code",
    "outcome_trauma",
    "outcome_terminal",
    "outcome_imaging",
    "win_encounters",
    "win_amb",
    "win_ed",
    "win_orders",
    "win_procedures",
    "win_thyroid_rx",
    "win_repeat_lab",
    "win_reports",
    "win_outside_reports",
    "orders_active",
    "orders_revoked",
    "orders_completed",
    "win_terminal",
    "win_declined",
    "win_nonadherence",
    "win_died",
)
REVIEW_FEATURES: tuple[str, ...] = ENCOUNTER_FEATURES + WINDOW_FEATURES
REALTIME_FEATURES: tuple[str, ...] = ENCOUNTER_FEATURES
CATEGORICAL: frozenset[str] = frozenset(
    {
        "sex",
        "setting",
        "disposition",
        "trigger",
        "index_kind",
        "outcome_group",
        "outcome_primary_group",
        "outcome_setting",
    }
)
VOCABULARIES: dict[str, tuple[str, ...]] = {
    "sex": SEXES,
    "setting": SETTINGS,
    "disposition": DISPOSITIONS,
    "trigger": TRIGGERS,
    "index_kind": INDEX_KINDS,
    "outcome_group": OUTCOME_GROUPS,
    "outcome_primary_group": OUTCOME_GROUPS,
    "outcome_setting": SETTINGS,
}
Row = dict[str, float]


def _cat(vocab: Sequence[str], value: str | None) -> float:
    return float(vocab.index(value)) if value in vocab else NAN


def _b(flag: bool) -> float:
    return 1.0 if flag else 0.0


def _hours(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds() / 3600.0


def find_event(tl: Timeline, ref: str, t: datetime | None = None) -> Event | None:
    """The event a FHIR reference points at (an encounter before its transfers)."""
    hits = [e for e in tl.events if e.source == ref]
    if not hits:
        return None
    if t is not None:
        hits = sorted(hits, key=lambda e: abs((e.t - t).total_seconds()))
    return next((e for e in hits if e.kind is Kind.ENCOUNTER), hits[0])


def _all_codes(e: Event) -> tuple[Code, ...]:
    return e.codes + e.diagnoses


def _condition_codes(events: Iterable[Event]) -> list[Code]:
    out: list[Code] = []
    for e in events:
        if e.kind is Kind.CONDITION:
            out.extend(e.codes)
        elif e.kind is Kind.ENCOUNTER:
            out.extend(e.diagnoses)
    return out


def _stem(c: Code) -> str:
    """ICD-10 category (3 characters) or the full code of other systems."""
    return f"{c.system}:{c.code[:3] if c.system == 'icd10' else c.code}"


def _abnormal(e: Event) -> bool:
    if any(f in cs.ABNORMAL_FLAGS for f in e.interpretation):
        return True
    if e.value is None:
        return False
    return (e.ref_low is not None and e.value < e.ref_low) or (
        e.ref_high is not None and e.value > e.ref_high
    )


def _celsius(e: Event) -> float | None:
    if e.value is None:
        return None
    unit = (e.unit or "").lower()
    return (e.value - 32) * 5 / 9 if "f" in unit or e.value > 50 else e.value


def _belongs(e: Event, enc: Event | None, lo: datetime, hi: datetime) -> bool:
    if enc is not None and e.encounter is not None:
        return e.encounter == enc.source
    return lo <= e.t <= hi


def _vitals(obs: Sequence[Event], row: Row) -> None:
    vals: dict[str, list[float]] = {k: [] for k in cs.VITALS}
    for e in obs:
        for name, codes in cs.VITALS.items():
            if e.code in codes and e.value is not None:
                v = _celsius(e) if name == "temp" else e.value
                if v is not None:
                    vals[name].append(v)
    row["temp_max"] = max(vals["temp"], default=NAN)
    row["hr_max"] = max(vals["hr"], default=NAN)
    row["sbp_min"] = min(vals["sbp"], default=NAN)
    row["sbp_max"] = max(vals["sbp"], default=NAN)
    row["dbp_min"] = min(vals["dbp"], default=NAN)
    row["spo2_min"] = min(vals["spo2"], default=NAN)
    row["rr_max"] = max(vals["rr"], default=NAN)
    flags = [
        any(t >= 38.0 or t < 36.0 for t in vals["temp"]),
        any(h > 100 for h in vals["hr"]),
        any(s < 90 or s > 180 for s in vals["sbp"]),
        any(s < 94 for s in vals["spo2"]),
        any(r > 22 for r in vals["rr"]),
    ]
    row["n_vitals_abnormal"] = float(sum(flags))


def x_limit(e: Event, low_side: bool = False) -> float:
    """The value as a multiple of its own reference limit (upper; lower for ``low_side``
    results such as haemoglobin): the same number whatever unit the site writes."""
    limit = e.ref_low if low_side else e.ref_high
    if e.value is None or limit is None or limit <= 0:
        return NAN
    return e.value / limit


def _labs(obs: Sequence[Event], row: Row) -> None:
    labs = [e for e in obs if e.code not in cs.VITAL_CODES]
    for name, codes in cs.LABS.items():
        vals = [x_limit(e, name in cs.LOW_SIDE_LABS) for e in labs if e.code in codes]
        row[f"lab_{name}"] = vals[-1] if vals else NAN
    row["n_labs_abnormal"] = float(sum(_abnormal(e) for e in labs))
    fit = [e for e in labs if e.code in cs.FIT_FOBT]
    row["fit_positive"] = (
        _b(any(_abnormal(e) or any(f in cs.POSITIVE_FLAGS for f in e.interpretation) for e in fit))
        if fit
        else NAN
    )


def encounter_features(tl: Timeline, index: Event) -> Row:
    """Features of one index event (an encounter, or a result and its encounter) as of
    the end of ``tl``: call with ``timeline.until(end)``; nothing later is read."""
    enc = (
        index
        if index.kind is Kind.ENCOUNTER
        else (find_event(tl, index.encounter) if index.encounter else None)
    )
    start = enc.t if enc is not None else index.t - timedelta(hours=24)
    stop = max(enc.stop if enc is not None else index.t, index.t)
    sex = (tl.patient.sex or "").lower() or None
    age = tl.patient.age_at(index.t)
    row: Row = {"age": NAN if age is None else age, "sex": _cat(SEXES, sex)}
    history = set(_condition_codes(e for e in tl.events if e.t <= stop))
    for g in cs.RISK_FACTORS:
        row[f"rf_{g.name}"] = _b(g.any_of(history))
    row["n_risk_factors"] = sum(row[f"rf_{g.name}"] for g in cs.RISK_FACTORS)
    for g in cs.CHRONIC:
        row[f"hx_{g.name}"] = _b(g.any_of(history))
    row["terminal_hx"] = _b(cs.TERMINAL.any_of(history))
    d = enc.detail if enc is not None else None
    row["setting"] = _cat(SETTINGS, d.setting.value) if d else NAN
    row["disposition"] = _cat(DISPOSITIONS, d.disposition) if d else NAN
    row["duration_h"] = _hours(enc.t, enc.stop) if enc is not None else NAN
    row["planned"] = _b(d.planned) if d else NAN
    row["admit_elective"] = _b(d.admit_source == "elective") if d else NAN
    inside = [e for e in tl.events if e is not enc and _belongs(e, enc, start, stop)]
    dx = list(enc.diagnoses) if enc is not None else []
    dx += [c for e in inside if e.kind is Kind.CONDITION for c in e.codes]
    for g in cs.SYMPTOMS:
        row[f"sym_{g.name}"] = _b(g.any_of(dx))
    row["trauma_dx"] = _b(cs.TRAUMA.any_of(dx))
    obs = [e for e in inside if e.kind is Kind.OBSERVATION]
    if index.kind is Kind.OBSERVATION and index not in obs:
        obs.append(index)
    _vitals(obs, row)
    _labs(obs, row)
    img = [
        cs.is_imaging(e.codes, e.text)
        for e in inside
        if e.kind in (Kind.PROCEDURE, Kind.REPORT, Kind.ORDER)
    ]
    row["imaging_any"] = _b(any(a for a, _ in img))
    row["head_imaging"] = _b(any(h for _, h in img))
    row["n_orders"] = float(sum(e.kind is Kind.ORDER for e in inside))
    prior = [e for e in tl.events if e.kind is Kind.ENCOUNTER and e.detail and e.t < start]
    for days in (30, 365):
        recent = [e for e in prior if e.t >= start - timedelta(days=days)]
        row[f"prior_ed_{days}"] = float(
            sum(e.detail.setting is Setting.ED for e in recent if e.detail)
        )
        row[f"prior_amb_{days}"] = float(
            sum(e.detail.setting is Setting.AMB for e in recent if e.detail)
        )
        if days == 365:
            row["prior_ip_365"] = float(
                sum(
                    e.detail.setting in (Setting.IP, Setting.ICU, Setting.OBS)
                    for e in recent
                    if e.detail
                )
            )
    thyroid = [
        e.t
        for e in tl.events
        if e.kind is Kind.MEDICATION
        and (e.code in cs.THYROID_RX or "thyrox" in (e.text or "").lower())
    ]
    # on replacement in the past year: the TR-7 premise; the exact day of the last
    # prescription is generator structure, not a clinical signal, and is not a feature
    row["on_thyroid_rx"] = _b(any(t >= stop - timedelta(days=365) for t in thyroid))
    return row


def realtime_features(timeline: Timeline, encounter_ref: str) -> Row:
    """Features at the end of an encounter, from ``timeline.until(end)`` only."""
    enc = find_event(timeline, encounter_ref)
    if enc is None or enc.kind is not Kind.ENCOUNTER:
        raise KeyError(f"{encounter_ref} is not an encounter of patient {timeline.patient.id}")
    known = timeline.until(enc.stop)
    enc = find_event(known, encounter_ref) or enc
    return encounter_features(known, enc)


def window_features(tl: Timeline, finding: Finding, index: Event, trigger: str | None) -> Row:
    """What happened in the rule's window (index start .. ``finding.window_end``)."""
    anchor = index.stop
    row: Row = {
        "trigger": _cat(TRIGGERS, (trigger or "").upper() or None),
        "rule_sequence": _b(finding.outcome_ref is not None),
        "index_kind": _cat(INDEX_KINDS, index.kind.value),
        "index_x_limit": x_limit(index) if index.kind is Kind.OBSERVATION else NAN,
        "index_abnormal": _b(_abnormal(index)) if index.kind is Kind.OBSERVATION else NAN,
    }
    out = find_event(tl, finding.outcome_ref) if finding.outcome_ref else None
    if out is not None and out.t > finding.window_end:
        out = None
    codes = _all_codes(out) if out is not None else ()
    group = next((g.name for g in cs.TARGETS if g.any_of(codes)), "other" if out else None)
    first = out.diagnoses[:1] if out is not None and out.diagnoses else codes[:1]
    primary = next((g.name for g in cs.TARGETS if g.any_of(first)), "other" if out else None)
    index_dx = {_stem(c) for c in index.diagnoses if c.system in ("icd10", "snomed")}
    d = out.detail if out is not None else None
    in_out = [
        e
        for e in tl.events
        if out is not None and e is not out and _belongs(e, out, out.t, out.stop)
    ]
    row.update(
        {
            # an outcome that began during the index stay returned after 0 d, never "-4 d"
            "days_to_outcome": max(0.0, (out.t - anchor).total_seconds() / 86400)
            if out is not None
            else NAN,
            "outcome_group": _cat(OUTCOME_GROUPS, group),
            "outcome_primary_group": _cat(OUTCOME_GROUPS, primary),
            "outcome_same_dx": _b(bool(index_dx & {_stem(c) for c in codes})) if out else NAN,
            "outcome_setting": _cat(SETTINGS, d.setting.value) if d else NAN,
            "outcome_los_h": _hours(out.t, min(out.stop, finding.window_end)) if d and out else NAN,
            "outcome_planned": _b(d.planned) if d else NAN,
            "outcome_admit_elective": _b(d.admit_source == "elective") if d else NAN,
            "outcome_icu": _b(d.setting is Setting.ICU or any(x.icu for x in d.locations))
            if d
            else NAN,
            "outcome_history_code": _b(cs.STROKE_HISTORY_CODE.any_of(codes)) if out else NAN,
            "outcome_trauma": _b(cs.TRAUMA.any_of(codes)) if out else NAN,
            "outcome_terminal": _b(cs.TERMINAL.any_of(codes)) if out else NAN,
            "outcome_imaging": _b(
                any(
                    cs.is_imaging(e.codes, e.text)[0]
                    for e in in_out
                    if e.kind in (Kind.PROCEDURE, Kind.REPORT)
                )
            )
            if out
            else NAN,
        }
    )
    win = [
        e
        for e in tl.events
        if anchor < e.t <= finding.window_end
        and e is not out
        and (out is None or e.encounter != out.source)
    ]
    encs = [e for e in win if e.kind is Kind.ENCOUNTER and e.detail]
    row["win_encounters"] = float(len(encs))
    row["win_amb"] = float(sum(e.detail.setting is Setting.AMB for e in encs if e.detail))
    row["win_ed"] = float(sum(e.detail.setting is Setting.ED for e in encs if e.detail))
    row["win_orders"] = float(sum(e.kind is Kind.ORDER for e in win))
    row["win_procedures"] = float(sum(e.kind is Kind.PROCEDURE for e in win))
    row["win_thyroid_rx"] = _b(
        any(e.kind is Kind.MEDICATION and e.code in cs.THYROID_RX for e in win)
    )
    row["win_repeat_lab"] = _b(
        index.kind is Kind.OBSERVATION
        and any(e.kind is Kind.OBSERVATION and e.code == index.code for e in win)
    )
    reports = [e for e in win if e.kind is Kind.REPORT]
    row["win_reports"] = float(len(reports))
    row["win_outside_reports"] = float(sum(e.encounter is None for e in reports))
    # orders placed at the index visit, by their status as recorded (review time)
    visit = index.encounter if index.kind is not Kind.ENCOUNTER else index.source
    placed = [
        e
        for e in tl.events
        if e.kind is Kind.ORDER and (e.encounter == visit if visit else index.t <= e.t <= anchor)
    ]
    for status in ("active", "revoked", "completed"):
        row[f"orders_{status}"] = float(sum((e.status or "") == status for e in placed))
    win_codes = _condition_codes(win)
    row["win_terminal"] = _b(cs.TERMINAL.any_of(win_codes))
    at_index = _condition_codes(e for e in tl.events if index.t <= e.t <= anchor)
    row["win_declined"] = _b(cs.DECLINED.any_of(win_codes + at_index))
    row["win_nonadherence"] = _b(cs.NONADHERENCE.any_of(win_codes + at_index))
    dead = tl.patient.deceased
    row["win_died"] = _b(dead is not None and anchor <= dead <= finding.window_end)
    return row


def finding_features(timeline: Timeline, finding: Finding, trigger: str | None = None) -> Row:
    """Review-ranking features of one rule finding: the index at its end, then the rule's
    window. Nothing after ``finding.window_end`` is read."""
    known = timeline.until(finding.window_end)
    index = find_event(known, finding.index_ref, finding.index_start)
    if index is None:
        raise KeyError(f"{finding.index_ref} not in the timeline of {finding.patient_id}")
    at_index = known.until(index.stop)
    row = encounter_features(at_index, find_event(at_index, finding.index_ref, index.t) or index)
    row.update(window_features(known, finding, index, trigger or finding.extra.get("trigger")))
    return row


def vector(row: Mapping[str, float], names: Sequence[str]) -> list[float]:
    """The row as a list in ``names`` order (missing names are ``nan``)."""
    return [float(row.get(n, NAN)) for n in names]
