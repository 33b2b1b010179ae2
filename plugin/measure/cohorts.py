"""Cohort steps of SPADE over the flat visit table: index visits with their first outcome
(look-forward) and disease admissions with their prior symptom visits (look-back).

These run per patient on :class:`~plugin.measure.visits.Visit` rows. On a SQL engine each
is one query: index visits are a filter on ``encounters`` joined to ``diagnoses``; the first
outcome is ``MIN(o.start)`` over a self-join ``o.patient_id = i.patient_id AND o.start >
i.start AND o.start <= i.start + horizon``; look-back is the same join turned around. The
estimators in :mod:`plugin.measure.spade` only need the resulting rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from plugin.measure.pairs import Cohort, Pair
from plugin.measure.visits import Visit, age_at
from plugin.timeline.model import Code

DAY = timedelta(days=1)
LOOKBACK_DAYS = 365


@dataclass(frozen=True, slots=True, kw_only=True)
class IndexRecord:
    """One index visit of a cohort and what followed it."""

    cohort: str  # pair id, or "<pair id>#comparator" for a comparator cohort
    patient_id: str
    ref: str
    start: datetime
    site: str
    age: int | None
    sex: str | None
    outcome_day: int | None  # first outcome admission, day 1 = the first 24 h after the index
    outcome_ref: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AdmissionRecord:
    """One disease admission and the symptom treat-and-release visits before it."""

    disease: str
    patient_id: str
    ref: str
    start: datetime
    prior: tuple[tuple[str, int], ...]  # (symptom cohort name, days before), within a year


def _codes(v: Visit, principal: bool) -> tuple[Code, ...]:
    # The principal diagnosis when the record names one; otherwise every listed diagnosis
    # (Synthea and MIMIC name none), counted in the report as "principal unknown".
    return v.principal if principal and v.principal else v.diagnoses


def is_index(c: Cohort, v: Visit) -> bool:
    if v.setting not in c.settings:
        return False
    if c.released is not None and v.released != c.released:
        return False
    if not c.has(_codes(v, c.principal)) or c.excluded(v.diagnoses):
        return False
    if c.min_age is not None:
        age = age_at(v)
        if age is None or age < c.min_age:
            return False
    return True


def is_outcome(c: Cohort, v: Visit) -> bool:
    return v.setting in c.settings and not v.planned and c.has(_codes(v, c.principal))


def index_records(
    name: str,
    symptom: Cohort,
    disease: Cohort,
    window: int,
    horizon: int,
    visits: Sequence[Visit],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[IndexRecord]:
    """Index visits of one patient (``visits`` in time order). A visit inside the window of
    the patient's previous counted index visit belongs to the same episode and is skipped,
    so one harm is not counted twice."""
    out: list[IndexRecord] = []
    last: datetime | None = None
    for i, v in enumerate(visits):
        if (start is not None and v.start < start) or (end is not None and v.start > end):
            continue
        if last is not None and v.start - last <= window * DAY:
            continue
        if not is_index(symptom, v):
            continue
        last = v.start
        day, ref = None, None
        for w in visits[i + 1:]:
            delta = w.start - v.start
            if delta > horizon * DAY:
                break
            if delta > timedelta(0) and is_outcome(disease, w):
                day, ref = int(delta / DAY) + 1, w.ref
                break
        out.append(IndexRecord(cohort=name, patient_id=v.patient_id, ref=v.ref, start=v.start,
                               site=v.site, age=age_at(v), sex=v.sex, outcome_day=day,
                               outcome_ref=ref))  # fmt: skip
    return out


def admission_records(
    diseases: Iterable[Cohort], symptoms: Iterable[Cohort], visits: Sequence[Visit]
) -> list[AdmissionRecord]:
    out = []
    symptoms = list(symptoms)
    for disease in diseases:
        for i, v in enumerate(visits):
            if not is_outcome(disease, v):
                continue
            prior: list[tuple[str, int]] = []
            for w in visits[:i]:
                delta = v.start - w.start
                if timedelta(0) < delta <= LOOKBACK_DAYS * DAY:
                    for s in symptoms:
                        if is_index(s, w):
                            prior.append((s.name, int(delta / DAY) + 1))
            out.append(AdmissionRecord(disease=disease.name, patient_id=v.patient_id, ref=v.ref,
                                       start=v.start, prior=tuple(prior)))  # fmt: skip
    return out


@dataclass(slots=True)
class Collected:
    """Everything the estimators need, gathered in one pass over the population."""

    index: dict[str, list[IndexRecord]]
    admissions: list[AdmissionRecord]
    first: datetime | None = None  # earliest and latest visit seen: the data's span
    last: datetime | None = None
    patients: int = 0
    principal_unknown: int = 0  # outcome-cohort visits whose record names no principal dx


def collect(
    pairs: Sequence[Pair],
    patients: Iterable[Sequence[Visit]],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Collected:
    got = Collected(index={p.id: [] for p in pairs}, admissions=[])
    for p in pairs:
        if p.comparator is not None:
            got.index[f"{p.id}#comparator"] = []
    diseases = list({p.disease.name: p.disease for p in pairs}.values())
    symptoms = {p.symptom.name: p.symptom for p in pairs}
    for p in pairs:
        if p.comparator is not None:
            symptoms.setdefault(p.comparator.name, p.comparator)
    for visits in patients:
        got.patients += 1
        if not visits:
            continue
        lo, hi = visits[0].start, visits[-1].start
        got.first = lo if got.first is None else min(got.first, lo)
        got.last = hi if got.last is None else max(got.last, hi)
        for p in pairs:
            got.index[p.id] += index_records(p.id, p.symptom, p.disease, p.window, p.horizon,
                                             visits, start=start, end=end)  # fmt: skip
            if p.comparator is not None:
                got.index[f"{p.id}#comparator"] += index_records(
                    f"{p.id}#comparator", p.comparator, p.disease, p.window, p.horizon, visits,
                    start=start, end=end)  # fmt: skip
        got.admissions += [a for a in admission_records(diseases, symptoms.values(), visits)
                           if (start is None or a.start >= start)
                           and (end is None or a.start <= end)]  # fmt: skip
        got.principal_unknown += sum(
            1 for v in visits
            if not v.principal and any(is_outcome(d, v) for d in diseases if d.principal))
    return got
