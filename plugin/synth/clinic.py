"""Clinic visits: primary care (chronic follow-up, routine labs, TSH checks, FIT screening)
and gastroenterology (colonoscopy). Shared by background care and planted scenarios."""

from __future__ import annotations

from datetime import datetime, timedelta

from plugin.synth import codes as C
from plugin.synth.chart import Chart
from plugin.synth.codes import Dx
from plugin.synth.visits import Presentation, baseline, clinic_time, normal_lab


def pc_encounter(
    chart: Chart, t: datetime, p: Presentation, *, acute: bool, service: str = "pc"
) -> tuple[str, datetime]:
    """A clinic visit with its vital signs and labs; returns (Encounter reference, end)."""
    rng = chart.rng
    start = clinic_time(chart, t)
    end = start + timedelta(minutes=15 + rng.randrange(30))
    ref = chart.encounter("AMB", start, end, p.dxs, service=service)
    v = start + timedelta(minutes=4 + rng.randrange(8))
    chart.blood_pressure(ref, v, round(p.sbp), round(p.dbp))
    record = 0.9 if acute else 0.15
    chart.vitals(
        ref, v, hr=round(p.hr) if acute or rng.random() < 0.5 else None,
        temp=round(p.temp, 1) if rng.random() < record else None,
        spo2=round(min(p.spo2, 100.0)) if rng.random() < record * 0.8 else None,
    )
    lab_t = end + timedelta(minutes=10 + rng.randrange(50))
    for name, value in p.labs.items():
        chart.lab(ref, lab_t, name, value)
    for kind, finding in p.imaging:
        chart.imaging(ref, end + timedelta(hours=1 + rng.random() * 3), kind, finding)
    for name in p.procs:
        chart.procedure(ref, start + timedelta(minutes=10), name, minutes=10)
    return ref, end


def routine_dxs(chart: Chart) -> list[Dx]:
    rng = chart.rng
    chronic = [n for n in chart.problems if n in C.CHRONIC_MEDS or n in ("smoking", "ckd")]
    if chronic and rng.random() < 0.75:
        return [C.CHRONIC[n] for n in rng.sample(chronic, min(len(chronic), 1 + rng.randrange(2)))]
    if rng.random() < 0.6:
        return [rng.choice(C.PC_ROUTINE)]
    return [rng.choice([C.ED_BENIGN[0], C.ED_BENIGN[3], C.COUGH])]


def pc_visit(chart: Chart, t: datetime, quiet: list[tuple[datetime, datetime]]) -> None:
    """A background primary-care visit: chronic follow-up, labs, screening."""
    rng = chart.rng
    dxs = routine_dxs(chart)
    p = baseline(chart, t, dxs)
    if rng.random() < 0.3:
        names = ["hb", "wbc", "plt", "mcv", "creat", "glucose", "k", "na"]
        if "diabetes" in chart.problems:
            names.append("a1c")
        if "hyperlipidaemia" in chart.problems:
            names.append("chol")
        p.labs = {n: normal_lab(chart, n) for n in names[:: 1 + rng.randrange(2)]}
        if "a1c" in names:
            p.labs["a1c"] = rng.uniform(6.2, 8.8)
    ref, end = pc_encounter(chart, t, p, acute=dxs[0] in (C.ED_BENIGN[0], C.ED_BENIGN[3], C.COUGH))
    if rng.random() < 0.06:
        chart.order(ref, end, C.REFERRAL, rng.choice(("active", "completed", "completed")))
    lab_t = end + timedelta(minutes=30)
    if "hypothyroidism" in chart.problems and _due(chart, "tsh", end, 300):
        _tsh_check(chart, ref, lab_t, quiet)
    age = chart.age_at(t)
    if 50 <= age <= 75 and _due(chart, "fit", end, 330) and rng.random() < 0.25:
        _fit_screen(chart, ref, lab_t, quiet)


def _due(chart: Chart, what: str, t: datetime, days: int) -> bool:
    last = chart.last.get(what)
    return last is None or abs((t - last).days) >= days


def _tsh_check(chart: Chart, enc: str, t: datetime, quiet: list[tuple[datetime, datetime]]) -> None:
    """Yearly TSH on thyroid replacement; a high value is repeated (and the dose changed)."""
    rng = chart.rng
    chart.last["tsh"] = t
    repeat = t + timedelta(days=rng.uniform(25, 50))
    if rng.random() < 0.06 and not any(a <= repeat <= b for a, b in quiet):
        chart.lab(enc, t, "tsh", rng.uniform(10.3, 19.0))
        if rng.random() < 0.5:
            chart.medication("levothyroxine", t + timedelta(days=1), enc=enc)
        chart.lab(None, clinic_time(chart, repeat), "tsh", rng.uniform(2.0, 7.5))
    else:
        chart.lab(enc, t, "tsh", min(normal_lab(chart, "tsh"), 9.6))


def _fit_screen(
    chart: Chart, enc: str, t: datetime, quiet: list[tuple[datetime, datetime]]
) -> None:
    """Screening FIT; a positive result gets a GI visit and colonoscopy within 8 weeks."""
    rng = chart.rng
    chart.last["fit"] = t
    scope = t + timedelta(days=rng.uniform(12, 50))
    positive = rng.random() < 0.06 and not any(a <= scope + timedelta(days=d) <= b
                                               for a, b in quiet for d in (0, 16))
    chart.fit(enc, t, positive)
    if positive:
        gi_scope(chart, scope, [_FIT_POS_DX])


_FIT_POS_DX = Dx("R19.5", "167667006", "Other fecal abnormalities (positive occult blood)")


def gi_scope(chart: Chart, t: datetime, dxs: list[Dx]) -> str:
    """A gastroenterology clinic visit with a colonoscopy."""
    p = baseline(chart, t, dxs)
    ref, end = pc_encounter(chart, t, p, acute=False, service="gi")
    name = "colonoscopy_biopsy" if chart.rng.random() < 0.4 else "colonoscopy"
    chart.procedure(ref, end - timedelta(minutes=10), name, minutes=35)
    return ref
