"""What a planted scenario is, and the clinical building blocks the scenarios share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from plugin.synth import codes as C
from plugin.synth import visits as V
from plugin.synth.chart import Chart
from plugin.synth.codes import Dx


@dataclass(slots=True)
class Planted:
    """What a scenario put in the chart."""

    index_refs: list[str]  # events a trigger hit carries this scenario's label for
    span: tuple[datetime, datetime]  # background care keeps out of this interval
    missed_dx: str = ""  # for a MOD: the diagnosis that was missed


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    trigger: str  # the trigger this scenario is planted for (catalogue id, e.g. "SP-1")
    is_mod: bool
    weight: float  # probability that a patient of the population gets this scenario
    plant: Callable[[Chart, datetime], Planted]
    age: tuple[float, float, float]  # (low, mode, high) at the index event
    male: float = 0.5
    boost: dict[str, float] = field(default_factory=dict)  # condition -> probability
    excluded: bool = False  # built so that the trigger's rule must NOT fire


def span(chart: Chart, first: datetime, last: datetime) -> tuple[datetime, datetime]:
    """Blocked interval: 45 d before the index (no earlier look-alike index) to 25 d after."""
    del chart
    return first - timedelta(days=45), last + timedelta(days=25)


def days_after(t: datetime, days: float) -> datetime:
    """When a return visit arrives: ``days`` after ``t`` (the end of the index visit)."""
    return t + timedelta(days=days)


def fever(chart: Chart, p: V.Presentation, lo: float = 38.0, hi: float = 39.4) -> None:
    rng = chart.rng
    p.temp = rng.uniform(lo, hi)
    p.hr += rng.uniform(10, 25)


def stroke_admission(chart: Chart, t: datetime, *, exact: bool = True) -> tuple[str, str]:
    rng = chart.rng
    dx = rng.choices(C.STROKE, weights=(40, 20, 20, 8, 12))[0]
    infarct = C.INFARCT if dx.icd10 != "G45.9" else None
    adm = V.Admission(
        ed_dxs=[dx],
        dxs=[dx, *V.secondary_dxs(chart)],
        days=2 + rng.random() * 6,
        procs=["thrombolysis"] if rng.random() < 0.12 else [],
        imaging=[("ct_head", infarct if rng.random() < 0.5 else None), ("mri_brain", infarct)],
        disposition=rng.choices(["home", "rehab", "snf"], weights=(50, 35, 15))[0],
    )
    return V.emergency_admission(chart, t, adm, exact=exact)


def related_admission(chart: Chart, t: datetime, missed: str) -> tuple[str, str]:
    """The admission for the diagnosis a complaint can hide (MOD or not)."""
    rng = chart.rng
    if missed == "stroke":
        return stroke_admission(chart, t)
    sec = V.secondary_dxs(chart)
    if missed == "appendicitis":
        adm = V.Admission([C.ABDOMINAL_PAIN[0]], [C.APPENDICITIS, *sec], 1 + rng.random() * 3,
                          ["appendectomy"], [("ct_abdomen", _APPENDICITIS)], febrile=True)
    elif missed == "sepsis":
        src = rng.choice([C.UTI, C.ADMIT_MEDICAL[0]])
        adm = V.Admission([C.SEPSIS], [C.SEPSIS, src, *sec], 4 + rng.random() * 6, [],
                          [("xr_chest", None)], rng.choice(["home", "home", "snf"]), febrile=True)
    elif missed == "mi":
        adm = V.Admission([C.CHEST_PAIN], [C.MI, *sec], 2 + rng.random() * 4,
                          ["pci", "echo"] if rng.random() < 0.6 else ["echo"])
    elif missed == "pe":
        adm = V.Admission([C.DYSPNOEA], [C.PE, *sec], 2 + rng.random() * 4, [],
                          [("cta_chest", _PE)])
    else:
        raise ValueError(missed)
    return V.emergency_admission(chart, t, adm, exact=True)


_APPENDICITIS = ("74400008", "Appendicitis")
_PE = ("59282003", "Pulmonary embolism")

# complaint presented at the index visit for each hidden diagnosis
COMPLAINT: dict[str, list[Dx]] = {
    "appendicitis": C.ABDOMINAL_PAIN,
    "sepsis": [C.FEVER, C.UTI, C.WEAKNESS, C.COUGH],
    "mi": [C.CHEST_PAIN],
    "pe": [C.DYSPNOEA, C.CHEST_PAIN],
    "stroke": C.DIZZINESS,
}


def presentation(chart: Chart, t: datetime, missed: str, *, sick: bool) -> V.Presentation:
    """The index visit for a complaint that hides ``missed``; ``sick``: red flags present.

    Red flags are drawn with a probability, sick or not, so they overlap between MOD cases
    and look-alikes.
    """
    rng = chart.rng
    p = V.baseline(chart, t, [rng.choice(COMPLAINT[missed])])
    lab = V.normal_lab
    if missed == "appendicitis":
        if rng.random() < (0.75 if sick else 0.2):
            fever(chart, p, 38.0, 39.2)
        if rng.random() < 0.8:
            p.labs = {n: lab(chart, n) for n in ("hb", "wbc", "creat")}
            if rng.random() < (0.6 if sick else 0.3):
                p.labs["wbc"] = rng.uniform(11.5, 18.0)
    elif missed == "sepsis":
        if rng.random() < (0.7 if sick else 0.35):
            fever(chart, p, 38.0, 39.6)
        if rng.random() < (0.6 if sick else 0.3):
            p.hr = rng.uniform(101, 128)
            p.rr = rng.uniform(21, 27)
        if rng.random() < (0.35 if sick else 0.12):
            p.sbp = rng.uniform(84, 99)
        if rng.random() < 0.7:
            p.labs = {n: lab(chart, n) for n in ("hb", "wbc", "creat", "na")}
            if rng.random() < (0.55 if sick else 0.25):
                p.labs["wbc"] = rng.uniform(12.0, 21.0)
    elif missed == "mi":
        p.procs.append("ecg")
        if rng.random() < (0.5 if sick else 0.3):
            p.hr = rng.uniform(95, 118)
        if rng.random() < (0.45 if sick else 0.2):
            p.sbp += rng.uniform(20, 40)
    elif missed == "pe":
        if rng.random() < (0.6 if sick else 0.3):
            p.hr = rng.uniform(101, 124)
        if rng.random() < (0.5 if sick else 0.2):
            p.spo2 = rng.uniform(88.5, 93.5)
            p.rr = rng.uniform(21, 28)
    elif missed == "stroke":
        if rng.random() < (0.55 if sick else 0.3):
            p.sbp = rng.uniform(160, 195)
    return p


def workup(chart: Chart, p: V.Presentation, missed: str, *, thorough: bool) -> None:
    """Tests for the complaint: done thoroughly (look-alike) or mostly not (MOD)."""
    rng = chart.rng
    lab = V.normal_lab
    k = 0.75 if thorough else 0.22
    if missed == "appendicitis" and rng.random() < k:
        p.imaging.append(("ct_abdomen", None))
        p.labs.setdefault("lipase", lab(chart, "lipase"))
    elif missed == "sepsis" and rng.random() < k:
        p.labs["lactate"] = rng.uniform(0.8, 1.9)
        p.labs.setdefault("wbc", lab(chart, "wbc"))
        p.imaging.append(("xr_chest", None))
    elif missed == "mi" and rng.random() < (0.85 if thorough else 0.45):
        p.labs["trop"] = rng.uniform(0.0, 0.03)
        p.labs.setdefault("creat", lab(chart, "creat"))
        if thorough and rng.random() < 0.6:
            p.imaging.append(("xr_chest", None))
    elif missed == "pe" and rng.random() < k:
        p.labs["ddimer"] = rng.uniform(150, 480)
        if rng.random() < 0.5:
            p.imaging.append(("cta_chest", None))
    elif missed == "stroke" and rng.random() < (0.8 if thorough else 0.25):
        p.imaging.append(("ct_head", None))
        if thorough and rng.random() < 0.45:
            p.imaging.append(("mri_brain", None))
