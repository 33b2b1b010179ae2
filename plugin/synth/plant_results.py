"""Planted abnormal-result cases: positive FIT without colonoscopy (TR-1), TSH > 10 on
thyroid replacement without repeat or dose change (TR-7).

The index is the result (an Observation); MOD cases and look-alikes differ in what is
recorded around it (referral declined, outside report, recent dose change, frailty).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from plugin.synth import clinic as K
from plugin.synth import codes as C
from plugin.synth import visits as V
from plugin.synth.chart import Chart, outside_report
from plugin.synth.scenario import Planted, days_after, span

_COLONOSCOPY_ORDER = (C.CPT, "45378", "Colonoscopy, flexible; diagnostic")
_OUTSIDE_COLONOSCOPY = ("18746-8", "Colonoscopy study")
_TSH_REPORT = ("3016-3", "Thyrotropin [Units/volume] in Serum or Plasma")


def _fit_visit(chart: Chart, t: datetime, *, anaemia: float) -> tuple[str, str, datetime]:
    """Routine visit with a positive FIT. Returns (encounter, FIT observation, FIT time)."""
    rng = chart.rng
    p = V.baseline(chart, t, K.routine_dxs(chart))
    if rng.random() < 0.5:
        p.labs = {n: V.normal_lab(chart, n) for n in ("hb", "mcv", "creat")}
        if rng.random() < anaemia:
            p.labs["hb"] = rng.uniform(11.3, 12.3)
    ref, end = K.pc_encounter(chart, t, p, acute=False)
    ft = end + timedelta(minutes=30)
    chart.last["fit"] = ft
    return ref, chart.fit(ref, ft, True), ft


def fit_no_followup(chart: Chart, t: datetime) -> Planted:
    rng = chart.rng
    enc, obs, ft = _fit_visit(chart, t, anaemia=0.45)
    if rng.random() < 0.25:  # ordered, never scheduled
        chart.order(enc, ft, _COLONOSCOPY_ORDER, "active")
    last = ft + timedelta(days=70)
    if rng.random() < 0.3:  # the cancer shows itself months later
        later = days_after(ft, rng.uniform(150, 330))
        p = V.baseline(chart, later, [C.CRC])
        p.labs = {"hb": rng.uniform(9.8, 11.8), "mcv": rng.uniform(82, 90)}
        K.pc_encounter(chart, later, p, acute=True)
        last = later
    return Planted([obs], span(chart, ft, last), "colorectal_cancer")


def fit_declined(chart: Chart, t: datetime) -> Planted:
    rng = chart.rng
    enc, obs, ft = _fit_visit(chart, t, anaemia=0.2)
    # often documented only in a note (invisible here): coded evidence is partial
    if rng.random() < 0.7:
        chart.order(enc, ft, _COLONOSCOPY_ORDER, "revoked")
    if rng.random() < 0.55:
        later = days_after(ft, rng.uniform(7, 35))
        K.pc_encounter(chart, later, V.baseline(chart, later, [C.DECLINED]), acute=False)
    return Planted([obs], span(chart, ft, ft + timedelta(days=70)))


def fit_outside_followup(chart: Chart, t: datetime) -> Planted:
    rng = chart.rng
    enc, obs, ft = _fit_visit(chart, t, anaemia=0.2)
    if rng.random() < 0.6:
        chart.order(enc, ft, _COLONOSCOPY_ORDER, "completed")
    if rng.random() < 0.65:  # else the outside report never reached the record
        outside_report(chart, days_after(ft, rng.uniform(15, 55)), _OUTSIDE_COLONOSCOPY,
                       "Outside colonoscopy: two small tubular adenomas removed.")
    return Planted([obs], span(chart, ft, ft + timedelta(days=70)))


def fit_advanced_illness(chart: Chart, t: datetime) -> Planted:
    """Frail patient (heart failure, dementia): colonoscopy judged not appropriate."""
    _, obs, ft = _fit_visit(chart, t, anaemia=0.3)
    return Planted([obs], span(chart, ft, ft + timedelta(days=70)))


def fit_excl_day59(chart: Chart, t: datetime) -> Planted:
    _, obs, ft = _fit_visit(chart, t, anaemia=0.3)
    K.gi_scope(chart, days_after(ft, chart.rng.uniform(52, 58.5)), [C.CHRONIC["hypertension"]])
    return Planted([obs], span(chart, ft, ft + timedelta(days=70)))


def fit_excl_hospice(chart: Chart, t: datetime) -> Planted:
    _, obs, ft = _fit_visit(chart, t, anaemia=0.3)
    later = days_after(ft, chart.rng.uniform(5, 40))
    K.pc_encounter(chart, later, V.baseline(chart, later, [C.HOSPICE]), acute=False)
    return Planted([obs], span(chart, ft, ft + timedelta(days=70)))


# --- TSH > 10 on thyroid replacement --------------------------------------------------------
def _tsh_visit(chart: Chart, t: datetime, value: float, *, rx_before: tuple[float, float],
               ed: bool = False) -> tuple[str, str, datetime]:
    rng = chart.rng
    chart.medication("levothyroxine", V.clinic_time(chart, t - timedelta(days=rng.uniform(
        *rx_before))))
    p = V.baseline(chart, t, [C.CHRONIC["hypothyroidism"]])
    if ed:
        p.dxs = [C.WEAKNESS]
        ref, end = V.ed_visit(chart, t, p)
        lt = end - timedelta(hours=1)
    else:
        ref, end = K.pc_encounter(chart, t, p, acute=False)
        lt = end + timedelta(minutes=30)
    chart.last["tsh"] = lt
    return ref, chart.lab(ref, lt, "tsh", value), lt


def _high_tsh(chart: Chart) -> float:
    return min(10.4 + chart.rng.expovariate(1 / 9), 80.0)


def tsh_no_followup(chart: Chart, t: datetime) -> Planted:
    _, obs, lt = _tsh_visit(chart, t, _high_tsh(chart), rx_before=(45, 330))
    return Planted([obs], span(chart, lt, lt + timedelta(days=65)), "hypothyroidism")


def tsh_recent_dose_change(chart: Chart, t: datetime) -> Planted:
    """Dose raised 2-5 weeks ago: TSH not yet at steady state, recheck planned at ~10 weeks."""
    rng = chart.rng
    chart.medication("levothyroxine", V.clinic_time(chart, t - timedelta(days=rng.uniform(
        120, 300))), status="stopped")
    _, obs, lt = _tsh_visit(chart, t, rng.uniform(10.5, 22.0), rx_before=(14, 35))
    chart.lab(None, V.clinic_time(chart, days_after(lt, rng.uniform(66, 95))), "tsh",
              rng.uniform(1.5, 6.0))
    return Planted([obs], span(chart, lt, lt + timedelta(days=100)))


def tsh_outside_lab(chart: Chart, t: datetime) -> Planted:
    rng = chart.rng
    _, obs, lt = _tsh_visit(chart, t, rng.uniform(10.5, 28.0), rx_before=(45, 330))
    if rng.random() < 0.65:  # else the outside result never reached the record
        outside_report(chart, days_after(lt, rng.uniform(20, 55)), _TSH_REPORT,
                       f"Outside laboratory: TSH {rng.uniform(1.2, 5.5):.1f} mIU/L.")
    return Planted([obs], span(chart, lt, lt + timedelta(days=65)))


def tsh_mild_elderly(chart: Chart, t: datetime) -> Planted:
    """Very old patient, TSH just above 10: not treating further is a reasonable choice."""
    _, obs, lt = _tsh_visit(chart, t, chart.rng.uniform(10.1, 12.8), rx_before=(45, 330))
    return Planted([obs], span(chart, lt, lt + timedelta(days=65)))


def tsh_excl_ed(chart: Chart, t: datetime) -> Planted:
    _, obs, lt = _tsh_visit(chart, t, _high_tsh(chart), rx_before=(45, 330), ed=True)
    return Planted([obs], span(chart, lt, lt + timedelta(days=65)))


def tsh_excl_nonadherence(chart: Chart, t: datetime) -> Planted:
    rng = chart.rng
    chart.medication("levothyroxine", V.clinic_time(chart, t - timedelta(days=rng.uniform(
        45, 300))))
    p = V.baseline(chart, t, [C.CHRONIC["hypothyroidism"], C.NONADHERENCE])
    ref, end = K.pc_encounter(chart, t, p, acute=False)
    lt = end + timedelta(minutes=30)
    obs = chart.lab(ref, lt, "tsh", _high_tsh(chart))
    return Planted([obs], span(chart, lt, lt + timedelta(days=65)))


def tsh_excl_repeat(chart: Chart, t: datetime) -> Planted:
    rng = chart.rng
    _, obs, lt = _tsh_visit(chart, t, _high_tsh(chart), rx_before=(45, 330))
    chart.lab(None, V.clinic_time(chart, days_after(lt, rng.uniform(35, 58))), "tsh",
              rng.uniform(2.0, 8.0))
    return Planted([obs], span(chart, lt, lt + timedelta(days=65)))


def tsh_excl_new_rx(chart: Chart, t: datetime) -> Planted:
    rng = chart.rng
    _, obs, lt = _tsh_visit(chart, t, _high_tsh(chart), rx_before=(45, 330))
    chart.medication("levothyroxine", V.clinic_time(chart, days_after(lt, rng.uniform(2, 25))))
    return Planted([obs], span(chart, lt, lt + timedelta(days=65)))
