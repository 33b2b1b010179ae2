"""Background care: demographics, chronic conditions by age and sex, and routine visits.

Background care is built to stay out of the trigger patterns: no released ED visit or
primary-care visit shortly before an unplanned admission, no TSH > 10 left without a repeat,
no positive FIT left without colonoscopy, and nothing inside a planted scenario's blocked
interval. Whatever trigger hit remains is found by :mod:`plugin.synth.triggers` and labelled
``background``. The same visit builders (:mod:`plugin.synth.visits`) serve planted cases.
"""

from __future__ import annotations

import math
import random
from datetime import date, datetime, timedelta

from plugin.synth import clinic as K
from plugin.synth import codes as C
from plugin.synth import visits as V
from plugin.synth.chart import Chart

Span = tuple[datetime, datetime]

# prevalence by age band (18-39, 40-59, 60-74, 75+), then a male multiplier
PREVALENCE: dict[str, tuple[tuple[float, float, float, float], float]] = {
    "hypertension": ((0.08, 0.30, 0.55, 0.70), 1.1),
    "diabetes": ((0.03, 0.12, 0.22, 0.25), 1.15),
    "hyperlipidaemia": ((0.08, 0.30, 0.48, 0.50), 1.1),
    "af": ((0.002, 0.01, 0.05, 0.12), 1.3),
    "smoking": ((0.16, 0.16, 0.11, 0.06), 1.25),
    "ckd": ((0.03, 0.08, 0.17, 0.33), 1.0),
    "cad": ((0.005, 0.04, 0.12, 0.20), 1.6),
    "chf": ((0.002, 0.01, 0.04, 0.09), 1.2),
    "copd": ((0.01, 0.04, 0.09, 0.11), 1.1),
    "hypothyroidism": ((0.03, 0.06, 0.10, 0.13), 0.3),
    "cancer_history": ((0.005, 0.04, 0.09, 0.12), 0.0),  # breast: women only
    "prostate_ca_history": ((0.0, 0.01, 0.06, 0.11), 1.0),  # men only
}


def age_band(age: float) -> int:
    return 0 if age < 40 else 1 if age < 60 else 2 if age < 75 else 3


def birth_for(rng: random.Random, age: float, at: datetime) -> date:
    """A birth date that makes the patient ``age`` (fractional years) at ``at``."""
    return (at - timedelta(days=age * 365.25 + rng.random() * 300)).date()


def population_age(rng: random.Random) -> float:
    r = rng.random()
    if r < 0.10:
        return rng.uniform(2, 18)
    if r < 0.45:
        return rng.uniform(18, 45)
    if r < 0.74:
        return rng.uniform(45, 65)
    if r < 0.92:
        return rng.uniform(65, 80)
    return rng.uniform(80, 96)


def chronic_conditions(
    rng: random.Random, age: float, sex: str, boost: dict[str, float] | None = None
) -> set[str]:
    """Conditions present at the start of the record (probabilities by age band and sex)."""
    if age < 18:
        return set()
    band = age_band(age)
    have: set[str] = set()
    for name, (by_band, male) in PREVALENCE.items():
        p = by_band[band]
        if name == "cancer_history":
            p = p if sex == "female" else 0.0
        elif name == "prostate_ca_history":
            p = p if sex == "male" else 0.0
        elif sex == "male":
            p *= male
        if name in ("diabetes", "cad", "ckd") and "hypertension" in have:
            p *= 1.6
        if boost and name in boost:
            p = boost[name] if boost[name] >= 0 else p
        if rng.random() < p:
            have.add(name)
    if boost:
        for name, p in boost.items():
            if name not in PREVALENCE and p > 0 and rng.random() < p:
                have.add(name)
    return have


def blocked(t: datetime, spans: list[Span]) -> bool:
    return any(a <= t <= b for a, b in spans)


def care(
    chart: Chart,
    start: datetime,
    end: datetime,
    spans: list[Span],
    *,
    pc_scale: float = 1.0,
    ed_scale: float = 1.0,
) -> None:
    """Routine care between ``start`` and ``end``, avoiding the ``spans`` of planted cases.
    ``pc_scale`` / ``ed_scale`` scale the visit rates (a site profile's care pathways)."""
    rng = chart.rng
    years = (end - start).days / 365.25
    age = chart.age_at(end)
    n_chronic = len(chart.problems)
    band = age_band(age)
    # unplanned admissions first: later visits keep clear of the days before them
    rate = (0.02, 0.045, 0.09, 0.16)[band] * (1.6 if {"chf", "copd"} & chart.problems.keys() else 1)
    admits: list[datetime] = []
    for _ in range(_poisson(rng, rate * years if age >= 18 else 0.01 * years)):
        t = _when(rng, start + timedelta(days=30), end - timedelta(days=20))
        if blocked(t, spans) or any(abs((t - a).days) < 30 for a in admits):
            continue
        admits.append(t)
        V.emergency_admission(chart, t, V.pick_admission(rng, chart))
    quiet = spans + [(a - timedelta(days=16), a + timedelta(days=1)) for a in admits]
    if age >= 50 and rng.random() < 0.03 * years:
        t = _when(rng, start + timedelta(days=30), end - timedelta(days=20))
        if not blocked(t, spans):
            V.elective_admission(chart, t)
            quiet.append((t - timedelta(days=2), t + timedelta(days=10)))
    # primary care
    pc_rate = ((0.4 if age < 40 else 0.65) + 0.2 * min(n_chronic, 4)) * pc_scale
    for _ in range(_poisson(rng, pc_rate * years)):
        t = _when(rng, start, end - timedelta(days=70))
        if not blocked(t, quiet):
            K.pc_visit(chart, t, quiet)
    ed_rate = (0.12, 0.15, 0.2, 0.3)[band] * ed_scale
    for _ in range(_poisson(rng, ed_rate * years)):
        t = _when(rng, start, end - timedelta(days=15))
        if not blocked(t, quiet):
            V.ed_visit(chart, t, V.background_complaint(chart, t))
    _prescriptions(chart, start, end, spans)


def _prescriptions(chart: Chart, start: datetime, end: datetime, spans: list[Span]) -> None:
    """Chronic medicines: a first order at the start of the record, renewed about yearly."""
    rng = chart.rng
    for problem, med in C.CHRONIC_MEDS.items():
        if problem not in chart.problems or rng.random() < 0.08:
            continue
        t = start + timedelta(days=rng.uniform(0, 120))
        while t < end:
            if not blocked(t, spans):
                chart.medication(med, V.clinic_time(chart, t))
            t += timedelta(days=rng.uniform(300, 400))


def _when(rng: random.Random, lo: datetime, hi: datetime) -> datetime:
    return lo + timedelta(days=rng.random() * max((hi - lo).days, 1))


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth for small means; the means here are < 30
    if lam <= 0:
        return 0
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k
