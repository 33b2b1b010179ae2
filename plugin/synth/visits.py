"""Visit builders shared by background care and planted scenarios.

A visit is built from clinical parameters (a :class:`Presentation`: diagnoses, vital signs,
labs, imaging, procedures); the builder decides the time of day, the resources and their
fields the same way whoever calls it. Planted cases differ from background care only in the
clinical parameters they pass.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from plugin.synth import codes as C
from plugin.synth.chart import Chart
from plugin.synth.codes import Dx

Finding = tuple[str, str] | None  # imaging conclusion (SNOMED code, display); None = normal

# ED arrivals by local hour (busiest late morning to evening)
_ED_HOURS = list(range(24))
_ED_CUM: list[float] = []
_acc = 0.0
for _w in (2, 1.5, 1, 1, 1, 1.5, 2.5, 4, 6, 7, 7.5, 7.5, 7, 7, 6.5, 6.5, 6.5, 6.5, 6, 5.5, 5, 4,
           3, 2.5):
    _acc += _w
    _ED_CUM.append(_acc)


@dataclass(slots=True)
class Presentation:
    dxs: list[Dx]
    temp: float
    hr: float
    sbp: float
    dbp: float
    spo2: float
    rr: float
    labs: dict[str, float] = field(default_factory=dict)
    imaging: list[tuple[str, Finding]] = field(default_factory=list)
    procs: list[str] = field(default_factory=list)
    hours: float = 4.0


@dataclass(slots=True)
class Admission:
    ed_dxs: list[Dx]  # diagnoses written at the ED visit that led to the admission
    dxs: list[Dx]  # admission diagnoses, principal first
    days: float
    procs: list[str] = field(default_factory=list)
    imaging: list[tuple[str, Finding]] = field(default_factory=list)
    disposition: str = "home"
    febrile: bool = False


def local_time(chart: Chart, t: datetime, hour: float) -> datetime:
    """UTC time of ``hour`` (local) on the local date of ``t``."""
    day = (t + chart.offset).replace(hour=0, minute=0, second=0, microsecond=0)
    return day + timedelta(hours=hour) - chart.offset


def clinic_time(chart: Chart, t: datetime) -> datetime:
    rng = chart.rng
    return local_time(chart, t, 8 + rng.randrange(36) / 4 + rng.randrange(15) / 60)


def ed_time(chart: Chart, t: datetime) -> datetime:
    rng = chart.rng
    hour = rng.choices(_ED_HOURS, cum_weights=_ED_CUM)[0]
    return local_time(chart, t, hour + rng.random())


def baseline(chart: Chart, t: datetime, dxs: list[Dx]) -> Presentation:
    """Vital signs of a well patient of this age (workups are added by the caller)."""
    g, age = chart.rng.gauss, chart.age_at(t)
    return Presentation(
        dxs=dxs,
        temp=g(36.8, 0.3),
        hr=g(78, 10),
        sbp=g(118 + 0.45 * max(age - 30, 0), 14),
        dbp=g(76, 8),
        spo2=min(g(97.6, 1.0), 100.0),
        rr=g(16, 1.8),
        hours=1.5 + chart.rng.expovariate(1 / 3),
    )


def normal_lab(chart: Chart, name: str) -> float:
    lab = C.LABS[name]
    g = chart.rng.gauss
    if name == "tsh":
        return max(0.2, chart.rng.lognormvariate(0.8, 0.45))
    if lab.low <= 0:
        return abs(g(lab.high * 0.45, lab.high * 0.2))
    mid, half = (lab.low + lab.high) / 2, (lab.high - lab.low) / 2
    if name == "hb" and chart.sex == "female":
        mid -= 1.0
    value = g(mid, half / 2.2)
    # background labs stay clear of the iron-deficiency trigger (Hb <= 11 with MCV <= 81)
    if name == "hb":
        return max(value, 11.4)
    return max(value, 82.0) if name == "mcv" else value


def ed_visit(
    chart: Chart, t: datetime, p: Presentation, *, disposition: str = "home", exact: bool = False
) -> tuple[str, datetime]:
    """An ED visit; returns (Encounter reference, end time). ``exact``: arrive at ``t`` (a
    return visit timed from an earlier one), else at a typical hour of ``t``'s local day."""
    start = t if exact else ed_time(chart, t)
    end = start + timedelta(hours=p.hours)
    ref = chart.encounter("ED", start, end, p.dxs, service="ed", disposition=disposition)
    v = start + timedelta(minutes=8 + chart.rng.randrange(20))
    spo2 = round(min(p.spo2, 100.0))
    chart.vitals(ref, v, temp=round(p.temp, 1), hr=round(p.hr), spo2=spo2, rr=round(p.rr))
    chart.blood_pressure(ref, v, round(p.sbp), round(p.dbp))
    lab_t = start + timedelta(minutes=35 + chart.rng.randrange(40))
    for name, value in p.labs.items():
        chart.lab(ref, lab_t, name, value)
    for i, (kind, finding) in enumerate(p.imaging):
        chart.imaging(ref, start + timedelta(minutes=70 + 25 * i), kind, finding)
    for name in p.procs:
        chart.procedure(ref, start + timedelta(minutes=20), name, minutes=10)
    return ref, end


def emergency_admission(
    chart: Chart, t: datetime, adm: Admission, *, exact: bool = False
) -> tuple[str, str]:
    """ED visit, then an inpatient stay from the ED. Returns (ED ref, IP ref)."""
    p = baseline(chart, t, adm.ed_dxs)
    if adm.febrile:
        p.temp, p.hr = chart.rng.uniform(38.1, 39.6), p.hr + chart.rng.uniform(15, 30)
    p.labs = {n: normal_lab(chart, n) for n in ("hb", "wbc", "creat", "na", "k")}
    p.hours = 3 + chart.rng.random() * 5
    ed, ed_end = ed_visit(chart, t, p, disposition="admitted", exact=exact)
    end = ed_end + timedelta(days=adm.days)
    ip = chart.encounter(
        "IP", ed_end, end, adm.dxs, service="ip", disposition=adm.disposition, admit_source="emd"
    )
    day1 = ed_end + timedelta(hours=10 + chart.rng.randrange(6))
    for name in ("hb", "wbc", "creat"):
        chart.lab(ip, day1, name, normal_lab(chart, name))
    for i, (kind, finding) in enumerate(adm.imaging):
        chart.imaging(ip, ed_end + timedelta(hours=2 + 3 * i), kind, finding)
    for name in adm.procs:
        chart.procedure(ip, ed_end + timedelta(hours=12 + chart.rng.randrange(24)), name,
                        minutes=90)
    return ed, ip


def elective_admission(chart: Chart, t: datetime) -> str:
    rng = chart.rng
    i = rng.randrange(len(C.ADMIT_ELECTIVE))
    start = local_time(chart, t, 6.5 + rng.random() * 2)
    end = start + timedelta(days=1 + rng.random() * 3)
    ref = chart.encounter(
        "IP", start, end, [C.ADMIT_ELECTIVE[i]], service="ip", admit_source="outp", planned=True,
        disposition="home" if rng.random() < 0.85 else "rehab",
    )
    chart.procedure(ref, start + timedelta(hours=2), ("knee", "hip", "chole")[i], minutes=120)
    return ref


def secondary_dxs(chart: Chart) -> list[Dx]:
    """Chronic conditions coded as secondary diagnoses on a stay (correctly coded)."""
    out = [C.CHRONIC[n] for n in ("hypertension", "diabetes", "af", "ckd", "stroke_history")
           if n in chart.problems and chart.rng.random() < 0.7]
    return out


def pick_admission(rng: random.Random, chart: Chart) -> Admission:
    """An unplanned admission for a common medical reason or an injury."""
    if rng.random() < 0.22:
        dx = rng.choice(C.ADMIT_TRAUMA)
        procs = ["hip_fix"] if dx.icd10 == "S72.001A" else []
        return Admission([dx], [dx, *secondary_dxs(chart)], 2 + rng.random() * 5, procs,
                         [("ct_head", None)] if dx.icd10 == "S06.0X0A" else [],
                         rng.choice(["home", "home", "rehab", "snf"]))
    dx = rng.choice(C.ADMIT_MEDICAL)
    febrile = dx.icd10 in ("J18.9", "N39.0", "L03.115") and rng.random() < 0.6
    ed = [C.DYSPNOEA] if dx.icd10 in ("I50.9", "J44.1") else [dx]
    img: list[tuple[str, Finding]] = (
        [("xr_chest", None)] if dx.icd10 in ("J18.9", "I50.9", "J44.1") else []
    )
    return Admission(ed, [dx, *secondary_dxs(chart)], 2 + rng.random() * 4, [], img,
                     "home" if rng.random() < 0.8 else "snf", febrile)


def background_complaint(chart: Chart, t: datetime) -> Presentation:
    """A treat-and-release ED visit with the workup a careful ED would do."""
    rng = chart.rng
    r = rng.random()
    if r < 0.58:
        p = baseline(chart, t, [rng.choice(C.ED_BENIGN)])
        if rng.random() < 0.3:
            p.labs = {n: normal_lab(chart, n) for n in ("hb", "wbc", "creat")}
        return p
    if r < 0.68:
        p = baseline(chart, t, [rng.choice(C.DIZZINESS)])
        return head_workup(chart, p, 0.35)
    if r < 0.76:
        p = baseline(chart, t, [rng.choice(C.HEADACHE)])
        return head_workup(chart, p, 0.30)
    if r < 0.85:
        p = baseline(chart, t, [rng.choice(C.ABDOMINAL_PAIN)])
        return abdominal_workup(chart, p, 0.35)
    if r < 0.94:
        p = baseline(chart, t, [C.CHEST_PAIN])
        return chest_workup(chart, p, 0.85)
    p = baseline(chart, t, [rng.choice([C.FEVER, C.UTI, C.COUGH])])
    if rng.random() < 0.25:
        p.temp, p.hr = rng.uniform(37.9, 38.8), p.hr + rng.uniform(5, 20)
    p.labs = {n: normal_lab(chart, n) for n in ("hb", "wbc", "creat")} if rng.random() < 0.7 else {}
    return p


def head_workup(chart: Chart, p: Presentation, p_ct: float) -> Presentation:
    rng = chart.rng
    if rng.random() < p_ct:
        p.imaging.append(("ct_head", None))
        if rng.random() < 0.2:
            p.imaging.append(("mri_brain", None))
        p.labs = {n: normal_lab(chart, n) for n in ("hb", "wbc", "glucose", "na")}
    elif rng.random() < 0.4:
        p.labs = {n: normal_lab(chart, n) for n in ("hb", "glucose")}
    return p


def abdominal_workup(chart: Chart, p: Presentation, p_ct: float) -> Presentation:
    rng = chart.rng
    if rng.random() < 0.75:
        p.labs = {n: normal_lab(chart, n) for n in ("hb", "wbc", "lipase", "creat")}
    if rng.random() < p_ct:
        p.imaging.append(("ct_abdomen", None))
    return p


def chest_workup(chart: Chart, p: Presentation, p_trop: float) -> Presentation:
    rng = chart.rng
    p.procs.append("ecg")
    if rng.random() < p_trop:
        p.labs = {n: normal_lab(chart, n) for n in ("trop", "hb", "creat")}
        if rng.random() < 0.3:
            p.labs["ddimer"] = normal_lab(chart, "ddimer")
    if rng.random() < 0.6:
        p.imaging.append(("xr_chest", None))
    return p
