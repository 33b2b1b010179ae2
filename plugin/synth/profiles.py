"""Site profiles for ``dxsafety synth --profile NAME``: how a hospital writes its chart.

A profile changes three things, none of them the ground truth:

* **Prevalence and care pathways**: per-scenario weight multipliers (an academic ED works
  more dizziness up; a community site misses more) and background visit rates.
* **Documentation**: some sites chart fewer vital signs (never the temperature, which a rule
  reads).
* **Coding habits** (issue 11): applied to each written resource after the chart is built,
  so the facts the labeller reads (:mod:`plugin.synth.triggers`) are unchanged and
  ``labels.csv`` stays truthful. Habits are the ones seen in other hospitals' exports:
  ``Encounter.class`` with only a display or a local code; WHO ICD-10 (4 characters), dotless
  codes, SNOMED-only diagnoses, ICD-9 on the problem list; common and converted units
  (``mIU/L``, ``uIU/mL``, ``10*9/L``, ``g/L``, ``ng/L``, glucose in ``mmol/L``); results with
  only a ``referenceRange``; qualitative results as LOINC answers or strings; imaging
  findings only in report text (with negated, uncertain and historical look-alikes);
  date-times written without an offset.

``default`` is today's generator: no habit is applied and the output is byte-identical for
a seed. Habit draws use their own RNG (seeded from the profile, seed, chunk and patient), so
a profile never shifts the chart RNG: the same seed gives the same patients, cases and
labels under every profile that keeps the default mix.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from plugin.synth import codes as C

Resource = dict[str, Any]

WHO_ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD9 = "http://hl7.org/fhir/sid/icd-9-cm"
LOCAL_CLASS = "http://hospital.example.org/fhir/CodeSystem/encounter-class"
LOINC_ANSWERS = {"10828004": ("LA6576-8", "Positive"), "260385009": ("LA6577-6", "Negative")}
STRINGS = {"10828004": ("POSITIVE", "Detected", "Positive"),
           "260385009": ("NEGATIVE", "Not detected", "Negative")}
# chronic problem-list entries some sites still carry in ICD-9-CM (dotted, as written)
ICD9_PROBLEMS = {
    "I10": ("401.9", "Essential hypertension"),
    "E11.9": ("250.00", "Diabetes mellitus without complication"),
    "I48.91": ("427.31", "Atrial fibrillation"),
    "E03.9": ("244.9", "Unspecified hypothyroidism"),
    "E78.5": ("272.4", "Other and unspecified hyperlipidemia"),
    "J44.9": ("496", "Chronic airway obstruction"),
    "I50.9": ("428.0", "Congestive heart failure, unspecified"),
}
_CLASS_DISPLAY = {"AMB": "Outpatient", "EMER": "Emergency", "IMP": "Inpatient"}
_CLASS_LOCAL = {"AMB": "OP", "EMER": "ER", "IMP": "IN"}
_DATED = ("effectiveDateTime", "onsetDateTime", "recordedDate", "authoredOn", "deceasedDateTime")
_PERIODS = ("period", "performedPeriod")
_OPTIONAL_VITALS = frozenset({"8867-4", "9279-1", "59408-5"})  # HR, RR, SpO2 (not temperature)


@dataclass(frozen=True, slots=True)
class Unit:
    """A site's unit for a LOINC result: the code it writes, its unit and the factor."""

    loinc: str
    unit: str
    factor: float
    decimals: int
    ucum: bool = True  # False: a common spelling that is not UCUM (written without system)


# per lab LOINC: the alternatives a site may write instead of the canonical UCUM unit
UNITS: dict[str, tuple[Unit, ...]] = {
    "3016-3": (Unit("3016-3", "mIU/L", 1.0, 2, ucum=False), Unit("3016-3", "u[IU]/mL", 1.0, 2)),
    "6690-2": (Unit("6690-2", "10*9/L", 1.0, 1), Unit("6690-2", "K/uL", 1.0, 1, ucum=False)),
    "777-3": (Unit("777-3", "10*9/L", 1.0, 0),),
    "718-7": (Unit("718-7", "g/L", 10.0, 0),),
    "10839-9": (Unit("10839-9", "ng/L", 1000.0, 0),),
    "2345-7": (Unit("15074-8", "mmol/L", 1 / 18.016, 1),),
    "2160-0": (Unit("14682-9", "umol/L", 88.42, 0),),
}


@dataclass(frozen=True, slots=True)
class Habits:
    """Rates (0-1) of each coding habit; ``per_patient`` habits hold for a whole chart."""

    class_display_only: float = 0.0
    class_local: float = 0.0
    who_icd10: float = 0.0
    flip_dots: float = 0.0
    snomed_only: float = 0.0
    icd9_problems: float = 0.0
    units: float = 0.0  # per patient: this chart's lab writes the site's units
    no_interpretation: float = 0.0
    qualitative_answer: float = 0.0  # LOINC LA answer instead of SNOMED
    qualitative_string: float = 0.0  # valueString instead of a coded answer
    report_text_only: float = 0.0  # imaging findings only in presentedForm / conclusion text
    no_offset: float = 0.0  # per patient: date-times written local, without an offset
    drop_vitals: float = 0.0  # documentation: HR/RR/SpO2 not charted


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    description: str
    habits: Habits | None = None
    weights: Mapping[str, float] = field(default_factory=dict)  # scenario or trigger -> x
    pc_rate: float = 1.0
    ed_rate: float = 1.0

    def multiplier(self, scenario: str, trigger: str) -> float:
        return self.weights.get(scenario, self.weights.get(trigger, 1.0))


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("default", "today's generator: canonical codes and UCUM, coded findings"),
        Profile(
            "academic",
            "academic centre: local Encounter.class codes, WHO ICD-10, SI units, LOINC answer "
            "lists, report text beside codes; works up more, misses fewer strokes, more "
            "primary-care misses",
            Habits(class_local=0.85, who_icd10=0.7, flip_dots=0.3, snomed_only=0.1,
                   units=0.8, no_interpretation=0.5, qualitative_answer=0.8,
                   report_text_only=0.5, drop_vitals=0.1),
            weights={"sp_missed_stroke": 0.7, "sp_workup_done": 1.5,
                     "ed_appropriate_workup": 1.4, "pc_missed": 1.3, "ed_missed_pe": 1.4,
                     "tsh_no_followup": 0.8, "fit_outside_followup": 0.6},
            pc_rate=0.85,
            ed_rate=1.2,
        ),
        Profile(
            "community",
            "community hospital: Encounter.class display only, SNOMED-only and ICD-9 problem "
            "lists, results as strings with no interpretation, findings only in report text, "
            "sparse vitals, local times without offset; fewer work-ups, more miscoded stroke "
            "history and missed thyroid follow-up",
            Habits(class_display_only=0.8, flip_dots=0.5, snomed_only=0.35, icd9_problems=0.5,
                   units=0.5, no_interpretation=0.8, qualitative_string=0.8,
                   report_text_only=0.9, no_offset=0.6, drop_vitals=0.35),
            weights={"sp_workup_done": 0.6, "sp_miscoded_stroke_history": 1.6,
                     "ed_appropriate_workup": 0.7, "tsh_no_followup": 1.4,
                     "fit_outside_followup": 2.0, "ed_missed_sepsis": 1.4},
            pc_rate=1.2,
            ed_rate=0.9,
        ),
        Profile(
            "noisy",
            "every habit mixed per chart at moderate rates, default case mix, more background "
            "visits (issue 11: the population that is not the easy case)",
            Habits(class_display_only=0.3, class_local=0.3, who_icd10=0.3, flip_dots=0.5,
                   snomed_only=0.2, icd9_problems=0.2, units=0.5, no_interpretation=0.5,
                   qualitative_answer=0.3, qualitative_string=0.3, report_text_only=0.6,
                   no_offset=0.3, drop_vitals=0.2),
            pc_rate=1.3,
            ed_rate=1.3,
        ),
        Profile(
            "metamorphic",
            "the default population re-coded: the noisy profile's coding habits only (no "
            "change of case mix, care or documentation), so a seed gives the same patients "
            "and labels as `default` written another way",
            Habits(class_display_only=0.3, class_local=0.3, who_icd10=0.3, flip_dots=0.5,
                   snomed_only=0.2, icd9_problems=0.2, units=0.5, no_interpretation=0.5,
                   qualitative_answer=0.3, qualitative_string=0.3, report_text_only=0.6,
                   no_offset=0.3),
        ),
    )
}


def get(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None


class Writer:
    """Applies a profile's habits to one patient's resources (in place, in order)."""

    def __init__(self, habits: Habits, rng: random.Random) -> None:
        self.h = habits
        self.rng = rng
        # chart-level habits: one draw per patient, so a chart is internally consistent
        self.units = rng.random() < habits.units
        self.no_offset = rng.random() < habits.no_offset

    def _p(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate

    def apply(self, rtype: str, res: Resource) -> bool:
        """Rewrite ``res``; False when the resource is not written at all (not charted)."""
        fn = getattr(self, f"_{rtype.lower()}", None)
        if fn is not None and fn(res) is False:
            return False
        if self.no_offset:
            _strip_offsets(res)
        return True

    def _encounter(self, res: Resource) -> None:
        klass = res.get("class", {})
        code = klass.get("code", "")
        if self._p(self.h.class_display_only):
            res["class"] = {"display": _CLASS_DISPLAY.get(code, klass.get("display", ""))}
        elif self._p(self.h.class_local):
            res["class"] = {"system": LOCAL_CLASS, "code": _CLASS_LOCAL.get(code, code),
                            "display": _CLASS_DISPLAY.get(code, "")}

    def _condition(self, res: Resource) -> None:
        codings: list[dict[str, str]] = res["code"]["coding"]
        problem = res["category"][0]["coding"][0]["code"] == "problem-list-item"
        has_snomed = any(c["system"] == C.SNOMED for c in codings)
        if has_snomed and self._p(self.h.snomed_only):
            res["code"]["coding"] = [c for c in codings if c["system"] == C.SNOMED]
            return
        out = []
        for c in codings:
            if c["system"] != C.ICD10:
                out.append(c)
                continue
            dotted = c["code"] if "." in c["code"] or len(c["code"]) <= 3 else (
                c["code"][:3] + "." + c["code"][3:])
            if problem and dotted in ICD9_PROBLEMS and self._p(self.h.icd9_problems):
                code9, disp = ICD9_PROBLEMS[dotted]
                out.append({"system": ICD9, "code": code9, "display": disp})
                continue
            c = dict(c)
            if self._p(self.h.who_icd10):
                c["system"] = WHO_ICD10
                c["code"] = c["code"][:5] if "." in c["code"] else c["code"][:4]
            if self._p(self.h.flip_dots):
                c["code"] = c["code"].replace(".", "") if "." in c["code"] else (
                    c["code"][:3] + "." + c["code"][3:] if len(c["code"]) > 3 else c["code"])
            out.append(c)
        res["code"]["coding"] = out

    def _observation(self, res: Resource) -> bool:
        loinc = res["code"]["coding"][0]["code"]
        cat = res["category"][0]["coding"][0]["code"]
        if cat == "vital-signs":
            return not (loinc in _OPTIONAL_VITALS and self._p(self.h.drop_vitals))
        if "valueQuantity" in res:
            if self.units and loinc in UNITS:
                _convert(res, self.rng.choice(UNITS[loinc]))
            if "referenceRange" in res and self._p(self.h.no_interpretation):
                res.pop("interpretation", None)
        elif "valueCodeableConcept" in res:
            answer = res["valueCodeableConcept"]["coding"][0]["code"]
            if answer in STRINGS and self._p(self.h.qualitative_string):
                del res["valueCodeableConcept"]
                res["valueString"] = self.rng.choice(STRINGS[answer])
                res.pop("interpretation", None)
            elif answer in LOINC_ANSWERS and self._p(self.h.qualitative_answer):
                la, display = LOINC_ANSWERS[answer]
                res["valueCodeableConcept"] = {
                    "coding": [{"system": C.LOINC, "code": la, "display": display}],
                    "text": display,
                }
                if self._p(self.h.no_interpretation):
                    res.pop("interpretation", None)
        return True

    def _diagnosticreport(self, res: Resource) -> None:
        codes = res.get("conclusionCode")
        if not codes or not self._p(self.h.report_text_only):
            return
        finding = codes[0]["coding"][0]["code"]
        head = res["code"]["coding"][0]["code"] in _HEAD_STUDIES
        texts = _REPORT_TEXT.get(finding, _REPORT_TEXT[C.NORMAL[0]]) if head else _BODY_NORMAL
        text = self.rng.choice(texts)
        del res["conclusionCode"]
        impression = text.rsplit("IMPRESSION: ", 1)[-1]
        if self.rng.random() < 0.5:
            res.pop("conclusion", None)  # the finding is in the attached report only
        else:
            res["conclusion"] = impression
        res["presentedForm"] = [{
            "contentType": "text/plain",
            "data": base64.b64encode(text.encode()).decode(),
        }]


# report narratives by conclusion code: positives, and negated / uncertain / historical
# look-alikes for normal studies (a text matcher must not read them as findings)
_REPORT_TEXT: dict[str, tuple[str, ...]] = {
    C.INFARCT[0]: (
        "FINDINGS: Hypodensity in the left MCA territory with loss of grey-white "
        "differentiation. IMPRESSION: Acute ischemic infarct, left MCA territory.",
        "FINDINGS: Restricted diffusion in the right cerebellar hemisphere. "
        "IMPRESSION: Acute right cerebellar infarct.",
    ),
    C.NORMAL[0]: (
        "FINDINGS: No intracranial hemorrhage, mass effect or midline shift. "
        "IMPRESSION: No acute intracranial abnormality.",
        "FINDINGS: Grey-white differentiation preserved. IMPRESSION: No evidence of acute "
        "infarct or hemorrhage.",
        "FINDINGS: Chronic small vessel ischemic change. History of prior infarct, unchanged. "
        "IMPRESSION: No new infarct.",
        "FINDINGS: Motion-degraded study. IMPRESSION: Possible tiny lacunar infarct cannot be "
        "excluded; no large territory infarct. Consider MRI if clinically indicated.",
    ),
}
_HEAD_STUDIES = frozenset({C.IMAGING["ct_head"].loinc, C.IMAGING["mri_brain"].loinc})
_BODY_NORMAL = (
    "FINDINGS: Lungs clear. No effusion. IMPRESSION: No suspicious pulmonary nodule or mass.",
    "FINDINGS: No free fluid or free air. IMPRESSION: No acute abnormality.",
    "FINDINGS: Stable 4 mm nodule, unchanged since prior; benign appearance. IMPRESSION: No "
    "suspicious lesion. No follow-up needed.",
    "FINDINGS: Bibasilar atelectasis. IMPRESSION: No evidence of pneumonia or malignancy.",
)


def _convert(res: Resource, to: Unit) -> None:
    def q(v: float) -> dict[str, Any]:
        value = round(v * to.factor, to.decimals) if to.decimals else float(round(v * to.factor))
        out: dict[str, Any] = {"value": value, "unit": to.unit}
        if to.ucum:
            out |= {"system": C.UCUM, "code": to.unit}
        return out

    res["valueQuantity"] = q(res["valueQuantity"]["value"])
    for rng in res.get("referenceRange", []):
        for side in ("low", "high"):
            if side in rng:
                rng[side] = q(rng[side]["value"])
    if to.loinc != res["code"]["coding"][0]["code"]:
        res["code"]["coding"] = [{"system": C.LOINC, "code": to.loinc}]


def _strip(text: str) -> str:
    if len(text) > 19 and text[10] == "T":
        return text[:19]  # local wall-clock time, offset dropped (as written by the site)
    return text


def _strip_offsets(res: Resource) -> None:
    for key in _DATED:
        if isinstance(res.get(key), str):
            res[key] = _strip(res[key])
    for key in _PERIODS:
        period = res.get(key)
        if isinstance(period, dict):
            for side in ("start", "end"):
                if isinstance(period.get(side), str):
                    period[side] = _strip(period[side])


def writer_for(profile: Profile, seed: int, chunk: int, pid: str) -> Writer | None:
    if profile.habits is None:
        return None
    rng = random.Random(f"dxsafety-profile:{profile.name}:{seed}:{chunk}:{pid}")  # noqa: S311
    return Writer(profile.habits, rng)
