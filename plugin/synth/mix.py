"""The scenario mix: which cases are planted and how often.

Weights are per-patient probabilities. They were tuned (``bench/synth_bench.py --ppv``) so
that on a generated population the rules-only PPV of each trigger is near its published
value: SP-1 31.2 %, ED-1 (72 h) 11 %, PC-3 20.9 %, TR-1 56 %, TR-7 60.1 %. Measured with the
rule engine on 100,000 patients (seed 2027): SP-1 35.3 %, ED-1 72 h 12.1 %, PC-3 21.3 %,
TR-1 55.2 %, TR-7 61.2 % (seed 777: 29.9, 11.4, 22.8, 54.8, 63.1); by-products SP-2 39.7 %,
SP-3 34.7 %, ED-1 10 d 8.5 % (published 5.4 %: not tuned). Look-alikes are
the published false-positive mechanisms (miscoded stroke history, workup done, unrelated or
trauma admission, chronic disease course, terminal illness, patient declined, follow-up
outside); ``excluded`` scenarios are built so the rule's exclusions must suppress them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from plugin.synth import plant_imaging as I
from plugin.synth import plant_results as R
from plugin.synth import plant_visits as P
from plugin.synth.scenario import Scenario

_VASCULAR = {"hypertension": 0.85, "af": 0.45, "diabetes": 0.4, "hyperlipidaemia": 0.6,
             "smoking": 0.25, "cad": 0.25}
_CARDIAC = {"hypertension": 0.8, "diabetes": 0.45, "hyperlipidaemia": 0.7, "cad": 0.4,
            "smoking": 0.35}
_ON_LEVO = {"hypothyroidism": 1.0}

SCENARIOS: tuple[Scenario, ...] = (
    # SP-1: benign dizziness/headache ED discharge -> stroke admission within 30 d
    Scenario("sp_missed_stroke", "SP-1", True, 0.0027, P.sp_missed_stroke, (52, 76, 95),
             0.55, _VASCULAR),
    Scenario("sp_miscoded_stroke_history", "SP-1", False, 0.0041, P.sp_miscoded,
             (55, 79, 96), 0.5, {"stroke_history": 0.95, "hypertension": 0.75, "af": 0.2}),
    Scenario("sp_workup_done", "SP-1", False, 0.0028, P.sp_workup_done, (35, 64, 92), 0.5,
             {"af": 0.08}),
    Scenario("sp_excl_admitted_at_index", "SP-1", False, 0.0004, P.sp_excl_admitted,
             (55, 75, 92), 0.5, _VASCULAR, excluded=True),
    # ED-1: ED treat-and-release -> unplanned admission (72 h / 10 d)
    Scenario("ed_missed_appendicitis", "ED-1", True, 0.0010,
             partial(P.ed_missed, missed="appendicitis"), (12, 28, 70)),
    Scenario("ed_missed_sepsis", "ED-1", True, 0.0010, partial(P.ed_missed, missed="sepsis"),
             (45, 76, 96), 0.5, {"diabetes": 0.35, "ckd": 0.3}),
    Scenario("ed_missed_mi", "ED-1", True, 0.0007, partial(P.ed_missed, missed="mi"),
             (40, 64, 90), 0.65, _CARDIAC),
    Scenario("ed_missed_pe", "ED-1", True, 0.0007, partial(P.ed_missed, missed="pe"),
             (25, 56, 88), 0.45, {"cancer_history": 0.15}),
    Scenario("ed_appropriate_workup", "ED-1", False, 0.024, P.ed_appropriate_workup,
             (18, 55, 95)),
    Scenario("ed_unrelated_admission", "ED-1", False, 0.024, P.ed_unrelated_admission,
             (18, 62, 96)),
    Scenario("ed_chronic_exacerbation", "ED-1", False, 0.010, P.ed_chronic_exacerbation,
             (50, 75, 96), 0.5, {"chf": 0.6, "copd": 0.6}),
    Scenario("ed_terminal_illness", "ED-1", False, 0.0045, P.ed_terminal_illness, (40, 70, 95),
             0.5, {"metastatic_cancer": 1.0}),
    Scenario("ed_excl_trauma_admission", "ED-1", False, 0.0008, P.ed_excl_trauma,
             (60, 80, 96), excluded=True),
    Scenario("ed_excl_planned_admission", "ED-1", False, 0.0006, P.ed_excl_planned,
             (50, 68, 88), excluded=True),
    # PC-3: primary-care visit -> unplanned admission within 14 d
    Scenario("pc_missed", "PC-3", True, 0.0020, P.pc_missed, (25, 66, 95), 0.55, _CARDIAC),
    Scenario("pc_routine_unrelated", "PC-3", False, 0.0035, P.pc_routine_unrelated,
             (30, 70, 96)),
    Scenario("pc_appropriate_workup", "PC-3", False, 0.0022, P.pc_appropriate_workup,
             (25, 60, 95)),
    Scenario("pc_chronic_progression", "PC-3", False, 0.0010, P.pc_chronic_progression,
             (50, 76, 96), 0.5, {"chf": 0.6, "copd": 0.6}),
    Scenario("pc_terminal_illness", "PC-3", False, 0.0008, P.pc_terminal_illness,
             (40, 72, 95), 0.5, {"metastatic_cancer": 1.0}),
    Scenario("pc_excl_planned_admission", "PC-3", False, 0.0006, P.pc_excl_planned,
             (45, 67, 88), excluded=True),
    # TR-1: positive FIT without colonoscopy or GI visit within 60 d
    Scenario("fit_no_followup", "TR-1", True, 0.0028, R.fit_no_followup, (50, 62, 75)),
    Scenario("fit_declined", "TR-1", False, 0.0009, R.fit_declined, (50, 64, 75)),
    Scenario("fit_outside_followup", "TR-1", False, 0.0007, R.fit_outside_followup,
             (50, 62, 75)),
    Scenario("fit_advanced_illness", "TR-1", False, 0.0006, R.fit_advanced_illness,
             (66, 72, 75), 0.5, {"chf": 0.85, "dementia": 0.7, "ckd": 0.6}),
    Scenario("fit_excl_age_over_75", "TR-1", False, 0.0004, R.fit_no_followup, (76.5, 79, 84),
             excluded=True),
    Scenario("fit_excl_followup_day_59", "TR-1", False, 0.0004, R.fit_excl_day59,
             (50, 62, 75), excluded=True),
    Scenario("fit_excl_hospice", "TR-1", False, 0.0003, R.fit_excl_hospice, (55, 68, 75),
             excluded=True),
    # TR-7: TSH > 10 on thyroid replacement, no repeat in 60 d and no new order in 30 d
    Scenario("tsh_no_followup", "TR-7", True, 0.0024, R.tsh_no_followup, (25, 62, 92), 0.25,
             _ON_LEVO),
    Scenario("tsh_recent_dose_change", "TR-7", False, 0.0006, R.tsh_recent_dose_change,
             (25, 58, 90), 0.25, _ON_LEVO),
    Scenario("tsh_outside_lab", "TR-7", False, 0.0005, R.tsh_outside_lab, (25, 58, 90), 0.25,
             _ON_LEVO),
    Scenario("tsh_mild_elderly", "TR-7", False, 0.0005, R.tsh_mild_elderly, (82, 88, 96), 0.25,
             _ON_LEVO),
    Scenario("tsh_excl_ed_visit", "TR-7", False, 0.0003, R.tsh_excl_ed, (25, 60, 92), 0.25,
             _ON_LEVO, excluded=True),
    Scenario("tsh_excl_nonadherence", "TR-7", False, 0.0003, R.tsh_excl_nonadherence,
             (25, 60, 92), 0.25, _ON_LEVO, excluded=True),
    Scenario("tsh_excl_repeat_day_58", "TR-7", False, 0.0003, R.tsh_excl_repeat, (25, 60, 92),
             0.25, _ON_LEVO, excluded=True),
    Scenario("tsh_excl_new_order", "TR-7", False, 0.0003, R.tsh_excl_new_rx, (25, 60, 92),
             0.25, _ON_LEVO, excluded=True),
)


# Issue 11: report-text cases (TR-3, TR-5; plant_imaging) are planted only under these site
# profiles, after the others, so `default` stays byte-identical and `metamorphic` keeps the
# default's patients and labels.
REPORT_TEXT_PROFILES = frozenset({"academic", "community", "noisy"})


def scenarios_for(profile: str) -> tuple[Scenario, ...]:
    """The scenarios a site profile plants, in draw order."""
    return SCENARIOS + I.SCENARIOS if profile in REPORT_TEXT_PROFILES else SCENARIOS


def cumulative(
    multiplier: Callable[[str, str], float] | None = None,
    scenarios: tuple[Scenario, ...] = SCENARIOS,
) -> list[float]:
    """Cumulative weights; ``multiplier(scenario, trigger)`` scales each (site profiles)."""
    out, acc = [], 0.0
    for s in scenarios:
        acc += s.weight * (multiplier(s.name, s.trigger) if multiplier is not None else 1.0)
        out.append(acc)
    if acc >= 1.0:
        raise ValueError("scenario weights add up to 1 or more")
    return out
