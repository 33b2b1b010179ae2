"""Planted imaging-report cases (issue 11 item 9): chest imaging suspicious for lung cancer
with no follow-up (TR-3), and a BI-RADS 0/4/5 mammogram with no work-up (TR-5).

The finding exists only as report text, never coded: either in ``presentedForm`` (base64
text/plain, no ``conclusion``) or in ``conclusion``. The wording is drawn from the
``examples.match`` / ``no_match`` phrasing guide of ``plugin/text/concepts.yaml``, varied in
sizes and sites. Look-alikes the rules must NOT flag are negated, uncertain, historical and
benign reports, and suspicious reports with timely follow-up (repeat chest CT, PET,
bronchoscopy, biopsy, pulmonary visit; diagnostic mammogram, breast ultrasound, biopsy,
breast-surgery visit); a suspicious report followed up elsewhere (not recorded) fires and is
labelled not-MOD.

The labeller (:func:`hits`, called from :func:`plugin.synth.triggers.hits`) reads what was
planted (a :class:`Fact` per report, code ``TR-3``/``TR-5``, ``positive`` when the text
affirms the finding), never the report text, so ``labels.csv`` does not depend on the
matcher it measures. These scenarios are planted only under the site profiles listed in
:data:`plugin.synth.mix.REPORT_TEXT_PROFILES`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from functools import partial

from plugin.synth import clinic as K
from plugin.synth import codes as C
from plugin.synth import visits as V
from plugin.synth.chart import Chart, Fact
from plugin.synth.codes import Dx
from plugin.synth.scenario import Planted, Scenario, days_after, span

Hit = tuple[str, str, datetime]
D = timedelta(days=1)
H = timedelta(hours=1)

# studies: (CPT of the Procedure, LOINC of the report, display)
CT_CHEST = ("71250", "24627-2", "CT Chest WO contrast")
XR_CHEST = ("71046", "36643-5", "XR Chest 2 Views")
MAMMO = ("77067", "24606-6", "MG Breast Screening")  # 77067 is not a TR-5 follow-up code
# follow-up procedures (CPT), as listed by the rules' valuesets
PET = ("78815", "PET with concurrently acquired CT, skull base to mid-thigh")
BRONCHOSCOPY = ("31628", "Bronchoscopy with transbronchial lung biopsy")
LUNG_BIOPSY = ("32405", "Biopsy, lung or mediastinum, percutaneous needle")
DX_MAMMO = ("77065", "Diagnostic mammography, unilateral")
BREAST_US = ("76641", "Ultrasound, breast, unilateral, complete")
BREAST_BIOPSY = ("19083", "Biopsy, breast, with placement of localization device, US guided")
# Encounter.serviceType of specialty visits (rules/valuesets pulmonary_visit,
# breast_or_oncology_visit)
PULMONOLOGY = {"system": C.SNOMED, "code": "418112009", "display": "Pulmonary medicine"}
GENERAL_SURGERY = {"system": C.SNOMED, "code": "394609007", "display": "General surgery"}
_SPECIALTY = {"pulm": PULMONOLOGY, "breast": GENERAL_SURGERY}

# labeller's copy of the rules' follow-up and exclusion codes (only those the generator writes)
_TR3_FOLLOWUP = frozenset({"71250", "71275", "71046", "24627-2", "36643-5", PET[0],
                           BRONCHOSCOPY[0], LUNG_BIOPSY[0]})
_TR5_FOLLOWUP = frozenset({DX_MAMMO[0], BREAST_US[0], BREAST_BIOPSY[0]})
_TERMINAL = ("icd10:C77", "icd10:C78", "icd10:C79", "icd10:C800", "icd10:K721", "icd10:K729",
             "icd10:I5084", "icd10:Z515", "snomed:94381002", "snomed:385763009")
_LUNG_CANCER = ("icd10:C34",)
_BREAST_CANCER = ("icd10:C50",)


# --- report wording (plugin/text/concepts.yaml is the guide) --------------------------------
def _size(chart: Chart, lo: float, hi: float) -> str:
    return f"{chart.rng.uniform(lo, hi):.1f}"


def _lobe(chart: Chart) -> str:
    return chart.rng.choice(("right upper lobe", "right middle lobe", "right lower lobe",
                             "left upper lobe", "left lower lobe"))


def lung_suspicious(chart: Chart) -> str:
    rng, lobe = chart.rng, _lobe(chart)
    mm = rng.randrange(15, 30)
    return rng.choice((
        f"FINDINGS: Spiculated {_size(chart, 1.2, 3.4)} cm nodule in the {lobe}. IMPRESSION: "
        f"Spiculated {_size(chart, 1.2, 3.4)} cm nodule in the {lobe}, suspicious for "
        "malignancy. Recommend PET-CT.",
        f"IMPRESSION: Lung-RADS 4B. Solid {mm} mm nodule, {lobe}.",
        f"IMPRESSION: Lung-RADS category 4A. Part-solid {mm} mm nodule in the {lobe}.",
        f"IMPRESSION: {_size(chart, 1.5, 4.5)} cm right hilar mass concerning for primary "
        "lung cancer.",
        "FINDINGS: Compared with prior CT. IMPRESSION: New suspicious pulmonary nodule "
        "compared with prior CT.",
        f"IMPRESSION: Suspicious {_size(chart, 1.1, 2.8)} cm {lobe} nodule.",
        f"FINDINGS: {_size(chart, 2.0, 5.0)} cm mass in the {lobe} with mediastinal "
        "lymphadenopathy. IMPRESSION: Findings highly suspicious for bronchogenic carcinoma.",
    ))


def lung_negated(chart: Chart) -> str:
    return chart.rng.choice((
        "FINDINGS: Lungs clear. No effusion. IMPRESSION: No suspicious pulmonary nodule or "
        "mass.",
        "IMPRESSION: Lungs are clear. No evidence of suspicious nodule.",
        f"FINDINGS: Stable {chart.rng.randrange(3, 6)} mm nodule in the {_lobe(chart)}. "
        "IMPRESSION: Lung-RADS 2. Benign-appearing nodule.",
    ))


def lung_uncertain(chart: Chart) -> str:
    return chart.rng.choice((
        "IMPRESSION: Lung mass suspicious for malignancy cannot be excluded.",
        "IMPRESSION: Possible spiculated nodule in the right lung, likely atelectasis.",
    ))


def lung_historical(chart: Chart) -> str:
    year = chart.rng.randrange(2012, 2020)
    return chart.rng.choice((
        f"IMPRESSION: History of spiculated lung mass, resected in {year}. No new nodule.",
        "IMPRESSION: History of lung nodule suspicious for malignancy, resected. No "
        "recurrence.",
    ))


def birads_suspicious(chart: Chart) -> str:
    rng = chart.rng
    side, clock = rng.choice(("left", "right")), rng.randrange(1, 13)
    return rng.choice((
        f"IMPRESSION: Irregular spiculated mass, {side} breast {clock} o'clock. BI-RADS 4C: "
        "suspicious.",
        f"Screening mammogram. Focal asymmetry, {side} breast. BI-RADS Category 0: Incomplete "
        "- need additional imaging evaluation.",
        f"Mammogram: {_size(chart, 0.8, 2.6)} cm irregular mass, {side} breast. ASSESSMENT: "
        "5 - Highly suggestive of malignancy.",
        f"Mammogram: grouped fine pleomorphic calcifications, {side} breast. BI-RADS 4B: "
        "suspicious abnormality.",
    ))


def birads_benign(chart: Chart) -> str:
    return chart.rng.choice((
        "Screening mammogram. No mammographic evidence of malignancy. BI-RADS 1: negative.",
        "Screening mammogram. Scattered fibroglandular densities. BI-RADS 2: benign findings.",
        "Screening mammogram. No suspicious abnormality. BI-RADS 1: negative.",
        "Screening mammogram. Prior BI-RADS 4 lesion, biopsy-proven fibroadenoma. BI-RADS 2: "
        "benign findings.",
    ))


# --- resources -----------------------------------------------------------------------------
def study(chart: Chart, enc: str, t: datetime, kind: tuple[str, str, str], text: str, *,
          trigger: str = "", affirmed: bool = False) -> str:
    """A study Procedure and its DiagnosticReport whose finding is text only; returns the
    report's reference. ``trigger``: the rule this report is a (look-alike) index for."""
    cpt, loinc, display = kind
    chart._procedure(enc, t, cpt, display, 20)  # the one Procedure builder
    rng = chart.rng
    res: dict[str, object] = {
        "resourceType": "DiagnosticReport",
        "id": chart.uid(),
        "status": "final",
        "category": [{"coding": [{"system": C.V2_0074, "code": "RAD"}]}],
        "code": {"coding": [{"system": C.LOINC, "code": loinc, "display": display}]},
        "subject": {"reference": f"Patient/{chart.pid}"},
        "encounter": {"reference": enc},
        "effectiveDateTime": chart.ts(t),
        "issued": (t + timedelta(minutes=30 + rng.randrange(240))).isoformat(
            timespec="seconds") + "Z",
    }
    if rng.random() < 0.6:  # the finding is in the attached report only (as sites send it)
        res["presentedForm"] = [{"contentType": "text/plain",
                                 "data": base64.b64encode(text.encode()).decode()}]
    else:
        res["conclusion"] = text.rsplit("IMPRESSION: ", 1)[-1]
    ref = chart._add("DiagnosticReport", res)
    chart.procs.append(Fact(ref, loinc, t))
    if trigger:
        chart.obs.append(Fact(ref, trigger, t, positive=affirmed))
    return ref


def _specialty_visit(chart: Chart, t: datetime, service: str, dxs: list[Dx]) -> str:
    start = V.clinic_time(chart, t)
    ref = chart.encounter("AMB", start, start + timedelta(minutes=30 + chart.rng.randrange(30)),
                          dxs, service=service)
    rtype, _, res = chart.resources[-1]
    assert rtype == "Encounter" and f"Encounter/{res['id']}" == ref  # noqa: S101
    res["serviceType"] = {"coding": [_SPECIALTY[service]]}
    return ref


def _index_visit(chart: Chart, t: datetime, dxs: list[Dx]) -> tuple[str, datetime]:
    p = V.baseline(chart, t, dxs)
    enc, end = K.pc_encounter(chart, t, p, acute=False)
    return enc, end + timedelta(hours=1 + chart.rng.random() * 3)


# --- TR-3 ----------------------------------------------------------------------------------
def _chest(chart: Chart, t: datetime, text: str, *, affirmed: bool) -> tuple[str, datetime]:
    rng = chart.rng
    enc, st = _index_visit(chart, t, [rng.choice((C.COUGH, C.DYSPNOEA, C.CHEST_PAIN))])
    kind = CT_CHEST if rng.random() < 0.7 else XR_CHEST
    return study(chart, enc, st, kind, text, trigger="TR-3", affirmed=affirmed), st


def tr3_missed(chart: Chart, t: datetime) -> Planted:
    ref, st = _chest(chart, t, lung_suspicious(chart), affirmed=True)
    return Planted([ref], span(chart, st, st + 40 * D), "lung_cancer")


def tr3_outside_followup(chart: Chart, t: datetime) -> Planted:
    """Suspicious report; the PET-CT was done at another hospital and never reached the
    record: the rule fires, the reviewer finds the loop closed."""
    ref, st = _chest(chart, t, lung_suspicious(chart), affirmed=True)
    return Planted([ref], span(chart, st, st + 40 * D))


def tr3_lookalike(chart: Chart, t: datetime, text: Callable[[Chart], str]) -> Planted:
    ref, st = _chest(chart, t, text(chart), affirmed=False)
    return Planted([ref], span(chart, st, st + 40 * D))


def tr3_followed_up(chart: Chart, t: datetime) -> Planted:
    ref, st = _chest(chart, t, lung_suspicious(chart), affirmed=True)
    rng = chart.rng
    when = days_after(st, rng.uniform(4, 26))
    how = rng.choice(("ct", "pet", "pulm", "biopsy"))
    if how == "pulm":
        _specialty_visit(chart, when, "pulm", [C.COUGH])
    else:
        enc = _specialty_visit(chart, when, "pulm", [C.COUGH]) if how == "biopsy" else (
            _index_visit(chart, when, [C.COUGH])[0])
        at = V.clinic_time(chart, when) + 2 * H
        if how == "ct":
            study(chart, enc, at, CT_CHEST, "IMPRESSION: Nodule unchanged in size. Lung-RADS 3.")
        else:
            cpt, display = PET if how == "pet" else rng.choice((BRONCHOSCOPY, LUNG_BIOPSY))
            chart._procedure(enc, at, cpt, display, 45)
    return Planted([ref], span(chart, st, st + 40 * D))


# --- TR-5 ----------------------------------------------------------------------------------
def _mammo(chart: Chart, t: datetime, text: str, *, affirmed: bool) -> tuple[str, datetime]:
    enc, st = _index_visit(chart, t, K.routine_dxs(chart))
    return study(chart, enc, st, MAMMO, text, trigger="TR-5", affirmed=affirmed), st


def tr5_missed(chart: Chart, t: datetime) -> Planted:
    ref, st = _mammo(chart, t, birads_suspicious(chart), affirmed=True)
    return Planted([ref], span(chart, st, st + 70 * D), "breast_cancer")


def tr5_outside_followup(chart: Chart, t: datetime) -> Planted:
    ref, st = _mammo(chart, t, birads_suspicious(chart), affirmed=True)
    return Planted([ref], span(chart, st, st + 70 * D))


def tr5_lookalike(chart: Chart, t: datetime) -> Planted:
    ref, st = _mammo(chart, t, birads_benign(chart), affirmed=False)
    return Planted([ref], span(chart, st, st + 70 * D))


def tr5_followed_up(chart: Chart, t: datetime) -> Planted:
    ref, st = _mammo(chart, t, birads_suspicious(chart), affirmed=True)
    rng = chart.rng
    when = days_after(st, rng.uniform(5, 52))
    how = rng.choice(("dx", "us", "biopsy", "visit"))
    enc = _specialty_visit(chart, when, "breast", K.routine_dxs(chart))
    if how != "visit":
        cpt, display = {"dx": DX_MAMMO, "us": BREAST_US, "biopsy": BREAST_BIOPSY}[how]
        chart._procedure(enc, V.clinic_time(chart, when) + 2 * H, cpt, display, 30)
    return Planted([ref], span(chart, st, st + 70 * D))


_SMOKER = {"smoking": 0.6, "copd": 0.3}
SCENARIOS: tuple[Scenario, ...] = (
    Scenario("tr3_text_missed", "TR-3", True, 0.0020, tr3_missed, (45, 66, 88), 0.55, _SMOKER),
    Scenario("tr3_text_outside_followup", "TR-3", False, 0.0012, tr3_outside_followup,
             (45, 66, 88), 0.55, _SMOKER),
    Scenario("tr3_text_excl_negated", "TR-3", False, 0.0010,
             partial(tr3_lookalike, text=lung_negated), (35, 62, 90), excluded=True),
    Scenario("tr3_text_excl_uncertain", "TR-3", False, 0.0006,
             partial(tr3_lookalike, text=lung_uncertain), (35, 62, 90), excluded=True),
    Scenario("tr3_text_excl_historical", "TR-3", False, 0.0006,
             partial(tr3_lookalike, text=lung_historical), (50, 70, 90), excluded=True),
    Scenario("tr3_text_excl_followed_up", "TR-3", False, 0.0010, tr3_followed_up,
             (45, 66, 88), 0.55, _SMOKER, excluded=True),
    Scenario("tr5_text_missed", "TR-5", True, 0.0016, tr5_missed, (40, 60, 80), 0.0),
    Scenario("tr5_text_outside_followup", "TR-5", False, 0.0007, tr5_outside_followup,
             (40, 60, 80), 0.0),
    Scenario("tr5_text_excl_benign", "TR-5", False, 0.0012, tr5_lookalike, (40, 60, 80), 0.0,
             excluded=True),
    Scenario("tr5_text_excl_followed_up", "TR-5", False, 0.0010, tr5_followed_up,
             (40, 60, 80), 0.0, excluded=True),
)


# --- labeller ------------------------------------------------------------------------------
def _cond(chart: Chart, lo: datetime, hi: datetime, prefixes: tuple[str, ...]) -> bool:
    return any(lo <= t <= hi and any(c.startswith(prefixes) for c in codes)
               for t, codes in chart.conds)


def _followed(chart: Chart, ref: str, t: datetime, days: int, codes: frozenset[str],
              service: str) -> bool:
    hi = t + days * D
    # the index's own study (Procedure and report at the same instant) is not a follow-up
    if any(p.code in codes and t < p.t <= hi for p in chart.procs if p.ref != ref):
        return True
    return any(e.service == service and t <= e.start <= hi for e in chart.encounters)


def hits(chart: Chart) -> Iterator[Hit]:
    """TR-3 / TR-5 on the planted report facts, with the rules' exclusions."""
    for o in chart.obs:
        if not o.positive or o.code not in ("TR-3", "TR-5"):
            continue
        t = o.t
        if o.code == "TR-3":
            if chart.age_at(t) < 18 or (chart.deceased is not None
                                        and t < chart.deceased <= t + 30 * D):
                continue
            if (_followed(chart, o.ref, t, 30, _TR3_FOLLOWUP, "pulm")
                    or _cond(chart, t - 365 * D, t, _LUNG_CANCER)
                    or _cond(chart, t - 365 * D, t + 30 * D, _TERMINAL)):
                continue
        else:
            if (_followed(chart, o.ref, t, 60, _TR5_FOLLOWUP, "breast")
                    or _cond(chart, datetime.min, t, _BREAST_CANCER)
                    or _cond(chart, t - 365 * D, t + 60 * D, _TERMINAL)):
                continue
        yield (o.code, o.ref, t)
