"""Planted visit-trigger cases: SPADE stroke (SP-1/SP-2), ED return (ED-1, SP-3), and
primary-care visit → admission (PC-3).

Each function plants one case in a chart at index day ``t`` and returns :class:`Planted`.
MOD cases and look-alikes use the same builders; they differ in clinical probabilities
(risk factors, red-flag vitals, whether the workup was done, time to the outcome).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from plugin.synth import clinic as K
from plugin.synth import codes as C
from plugin.synth import visits as V
from plugin.synth.chart import Chart
from plugin.synth.scenario import (
    Planted,
    days_after,
    presentation,
    related_admission,
    span,
    stroke_admission,
    workup,
)

MISSED = ("appendicitis", "sepsis", "mi", "pe")


# --- SPADE: benign dizziness / headache ED discharge -> stroke admission --------------------
def _dizzy_visit(chart: Chart, t: datetime, *, sick: bool, thorough: bool) -> tuple[str, datetime]:
    rng = chart.rng
    p = presentation(chart, t, "stroke", sick=sick)
    if rng.random() < 0.3:
        p.dxs = [rng.choice(C.HEADACHE)]
    workup(chart, p, "stroke", thorough=thorough)
    if not p.labs and rng.random() < 0.5:
        p.labs = {n: V.normal_lab(chart, n) for n in ("hb", "glucose", "na")}
    return V.ed_visit(chart, t, p)


def sp_missed_stroke(chart: Chart, t: datetime) -> Planted:
    rng = chart.rng
    refs = []
    if rng.random() < 0.18:  # an earlier visit for the same complaint, also sent home
        refs.append(_dizzy_visit(chart, t - timedelta(days=rng.uniform(2, 9)), sick=True,
                                 thorough=False)[0])
    ref, end = _dizzy_visit(chart, t, sick=True, thorough=False)
    gap = min(1.0 + rng.expovariate(1 / 4.5), 29.0)
    stroke_admission(chart, days_after(end, gap))
    return Planted([ref, *refs], span(chart, t, days_after(end, gap + 10)), "stroke")


def sp_workup_done(chart: Chart, t: datetime) -> Planted:
    """Dizziness worked up properly (CT/MRI normal); a stroke weeks later: no MOD."""
    rng = chart.rng
    ref, end = _dizzy_visit(chart, t, sick=False, thorough=True)
    gap = rng.uniform(3.5, 29.0)
    stroke_admission(chart, days_after(end, gap))
    return Planted([ref], span(chart, t, days_after(end, gap + 10)))


def sp_miscoded(chart: Chart, t: datetime) -> Planted:
    """A later admission for something else carries an old stroke coded as acute (I63.9)."""
    rng = chart.rng
    ref, end = _dizzy_visit(chart, t, sick=rng.random() < 0.3, thorough=rng.random() < 0.45)
    gap = rng.uniform(1.0, 29.0)
    adm = V.pick_admission(rng, chart)
    adm.dxs = [d for d in adm.dxs if d.icd10 != "Z86.73"]
    # As the principal diagnosis: SP-1 reads only the admission's principal diagnosis, so a
    # history code copied forward in a secondary position is no longer a false positive of it
    # (rule tests cover that case); this look-alike is the one the published definition keeps.
    # the draws that once placed it elsewhere, so that the other charts of a seed stay the same
    if rng.random() >= 0.3:
        rng.randrange(len(adm.dxs))
    adm.dxs.insert(0, C.OLD_STROKE)
    V.emergency_admission(chart, days_after(end, gap), adm, exact=True)
    return Planted([ref], span(chart, t, days_after(end, gap + 10)))


def sp_excl_admitted(chart: Chart, t: datetime) -> Planted:
    """Dizziness at the ED, admitted straight away with a stroke: not treat-and-release."""
    ed, _ = stroke_admission(chart, t, exact=False)
    return Planted([ed], span(chart, t, t + timedelta(days=10)))


# --- ED treat-and-release -> return admission -----------------------------------------------
def _ed_return_gap(chart: Chart, mod: bool) -> float:
    rng = chart.rng
    if mod:
        return rng.uniform(1.0, 2.7) if rng.random() < 0.85 else rng.uniform(3.0, 7.0)
    return rng.uniform(1.0, 2.7) if rng.random() < 0.44 else rng.uniform(3.0, 9.5)


def ed_missed(chart: Chart, t: datetime, missed: str) -> Planted:
    p = presentation(chart, t, missed, sick=True)
    workup(chart, p, missed, thorough=False)
    ref, end = V.ed_visit(chart, t, p)
    gap = _ed_return_gap(chart, True)
    related_admission(chart, days_after(end, gap), missed)
    return Planted([ref], span(chart, t, days_after(end, gap + 12)), missed)


def ed_appropriate_workup(chart: Chart, t: datetime) -> Planted:
    """Same complaints, proper workup, normal results; the disease declared itself later."""
    rng = chart.rng
    missed = rng.choice(MISSED)
    p = presentation(chart, t, missed, sick=False)
    workup(chart, p, missed, thorough=True)
    ref, end = V.ed_visit(chart, t, p)
    gap = _ed_return_gap(chart, False)
    if rng.random() < 0.5:
        related_admission(chart, days_after(end, gap), missed)
    else:
        V.emergency_admission(chart, days_after(end, gap), _medical(chart), exact=True)
    return Planted([ref], span(chart, t, days_after(end, gap + 12)))


def ed_unrelated_admission(chart: Chart, t: datetime) -> Planted:
    """A minor complaint sent home; an unrelated medical admission days later."""
    rng = chart.rng
    p = V.background_complaint(chart, t)
    if rng.random() < 0.05:  # a febrile gastroenteritis-like abdominal pain
        p = presentation(chart, t, "appendicitis", sick=False)
        V.abdominal_workup(chart, p, 0.5)
    ref, end = V.ed_visit(chart, t, p)
    gap = _ed_return_gap(chart, False)
    _unrelated_admission(chart, days_after(end, gap))
    return Planted([ref], span(chart, t, days_after(end, gap + 12)))


def ed_chronic_exacerbation(chart: Chart, t: datetime) -> Planted:
    """Heart failure or COPD treated in the ED, readmitted with the same exacerbation."""
    rng = chart.rng
    dx = C.ADMIT_MEDICAL[1] if "chf" in chart.problems else C.ADMIT_MEDICAL[2]
    p = V.baseline(chart, t, [dx])
    p.hr += rng.uniform(0, 15)
    p.spo2 -= rng.uniform(0, 4)
    p.labs = {n: V.normal_lab(chart, n) for n in ("hb", "creat", "na", "k")}
    p.imaging.append(("xr_chest", None))
    ref, end = V.ed_visit(chart, t, p)
    gap = _ed_return_gap(chart, False)
    adm = V.Admission([C.DYSPNOEA], [dx, *V.secondary_dxs(chart)], 2 + rng.random() * 5,
                      imaging=[("xr_chest", None)])
    V.emergency_admission(chart, days_after(end, gap), adm, exact=True)
    return Planted([ref], span(chart, t, days_after(end, gap + 12)))


def ed_terminal_illness(chart: Chart, t: datetime) -> Planted:
    """Metastatic cancer (not in hospice): pain visit, then admission; expected course."""
    rng = chart.rng
    p = V.baseline(chart, t, [rng.choice([C.WEAKNESS, C.ABDOMINAL_PAIN[1], C.DYSPNOEA])])
    p.labs = {n: V.normal_lab(chart, n) for n in ("hb", "creat", "na")}
    p.labs["hb"] = rng.uniform(8.5, 11.5)
    ref, end = V.ed_visit(chart, t, p)
    gap = _ed_return_gap(chart, False)
    _unrelated_admission(chart, days_after(end, gap))
    return Planted([ref], span(chart, t, days_after(end, gap + 12)))


def ed_excl_trauma(chart: Chart, t: datetime) -> Planted:
    """Sent home, returns with a hip fracture after a fall: the trauma exclusion applies."""
    rng = chart.rng
    p = V.baseline(chart, t, [rng.choice(C.ED_BENIGN[:4])])
    ref, end = V.ed_visit(chart, t, p)
    gap = rng.uniform(1.0, 2.5)
    dx = C.ADMIT_TRAUMA[0]
    V.emergency_admission(chart, days_after(end, gap),
                          V.Admission([dx], [dx], 3 + rng.random() * 4, ["hip_fix"]), exact=True)
    return Planted([ref], span(chart, t, days_after(end, gap + 12)))


def ed_excl_planned(chart: Chart, t: datetime) -> Planted:
    """Sent home, then the elective operation already booked: a planned admission."""
    rng = chart.rng
    ref, end = V.ed_visit(chart, t, V.baseline(chart, t, [rng.choice(C.ED_BENIGN[:4])]))
    adm_t = days_after(end, rng.uniform(1.5, 2.8))
    V.elective_admission(chart, adm_t)
    return Planted([ref], span(chart, t, adm_t + timedelta(days=12)))


def _unrelated_admission(chart: Chart, t: datetime) -> None:
    """An unplanned admission unrelated to the index complaint; now and then for one of the
    dangerous diagnoses (a new infection, an MI), so the outcome alone does not mark a MOD."""
    rng = chart.rng
    if rng.random() < 0.3:
        related_admission(chart, t, rng.choice(("sepsis", "mi", "pe")))
    else:
        V.emergency_admission(chart, t, _medical(chart), exact=True)


def _medical(chart: Chart) -> V.Admission:
    """An unplanned medical admission (never injury: the ED return rule excludes those)."""
    rng = chart.rng
    while True:
        adm = V.pick_admission(rng, chart)
        if adm.dxs[0] not in C.ADMIT_TRAUMA:
            return adm


# --- primary-care visit -> unplanned admission within 14 d ----------------------------------
def _pc_gap(chart: Chart, mod: bool) -> float:
    rng = chart.rng
    return min(0.5 + rng.expovariate(1 / 3.5), 13.0) if mod else rng.uniform(0.5, 13.0)


def pc_missed(chart: Chart, t: datetime) -> Planted:
    rng = chart.rng
    missed = rng.choice((*MISSED, "stroke"))
    p = presentation(chart, t, missed, sick=True)
    workup(chart, p, missed, thorough=False)
    p.labs = {}
    ref, end = K.pc_encounter(chart, t, p, acute=True)
    if rng.random() < 0.15:  # referred, but routinely: the urgency was missed
        chart.order(ref, end, C.REFERRAL, "active")
    gap = _pc_gap(chart, True)
    related_admission(chart, days_after(end, gap), missed)
    return Planted([ref], span(chart, t, days_after(end, gap + 12)), missed)


def pc_appropriate_workup(chart: Chart, t: datetime) -> Planted:
    rng = chart.rng
    missed = rng.choice((*MISSED, "stroke"))
    p = presentation(chart, t, missed, sick=False)
    workup(chart, p, missed, thorough=True)
    p.imaging = []
    ref, end = K.pc_encounter(chart, t, p, acute=True)
    chart.order(ref, end, C.REFERRAL, "active")
    gap = _pc_gap(chart, False)
    if rng.random() < 0.5:
        related_admission(chart, days_after(end, gap), missed)
    else:
        V.emergency_admission(chart, days_after(end, gap), _medical(chart), exact=True)
    return Planted([ref], span(chart, t, days_after(end, gap + 12)))


def pc_routine_unrelated(chart: Chart, t: datetime) -> Planted:
    """A routine chronic-care visit; an unrelated admission (often an injury) days later."""
    rng = chart.rng
    p = V.baseline(chart, t, K.routine_dxs(chart))
    ref, end = K.pc_encounter(chart, t, p, acute=False)
    gap = _pc_gap(chart, False)
    V.emergency_admission(chart, days_after(end, gap), V.pick_admission(rng, chart),
                          exact=True)
    return Planted([ref], span(chart, t, days_after(end, gap + 12)))


def pc_chronic_progression(chart: Chart, t: datetime) -> Planted:
    rng = chart.rng
    dx = C.ADMIT_MEDICAL[1] if "chf" in chart.problems else C.ADMIT_MEDICAL[2]
    p = V.baseline(chart, t, [dx])
    p.labs = {n: V.normal_lab(chart, n) for n in ("creat", "na", "k")}
    ref, end = K.pc_encounter(chart, t, p, acute=True)
    chart.medication("furosemide" if dx is C.ADMIT_MEDICAL[1] else "tiotropium", end, enc=ref)
    gap = _pc_gap(chart, False)
    adm = V.Admission([C.DYSPNOEA], [dx, *V.secondary_dxs(chart)], 2 + rng.random() * 5)
    V.emergency_admission(chart, days_after(end, gap), adm, exact=True)
    return Planted([ref], span(chart, t, days_after(end, gap + 12)))


def pc_terminal_illness(chart: Chart, t: datetime) -> Planted:
    p = V.baseline(chart, t, [C.WEAKNESS])
    ref, end = K.pc_encounter(chart, t, p, acute=True)
    gap = _pc_gap(chart, False)
    _unrelated_admission(chart, days_after(end, gap))
    return Planted([ref], span(chart, t, days_after(end, gap + 12)))


def pc_excl_planned(chart: Chart, t: datetime) -> Planted:
    """Pre-operative visit, then the elective operation: a planned admission."""
    p = V.baseline(chart, t, [C.ADMIT_ELECTIVE[chart.rng.randrange(3)]])
    ref, end = K.pc_encounter(chart, t, p, acute=False)
    adm_t = days_after(end, chart.rng.uniform(3, 12))
    V.elective_admission(chart, adm_t)
    return Planted([ref], span(chart, t, adm_t + timedelta(days=12)))

