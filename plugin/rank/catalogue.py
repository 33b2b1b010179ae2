"""The feature catalogue: what each ranker feature measures, why it may bear on a missed
opportunity, and its direction where the literature gives one.

``FEATURES.md`` is generated from this table (``python -m plugin.rank.catalogue``; a test
checks it is current). Two things are read from it at run time:

* ``monotone``: the LightGBM monotone constraint of the review head (+1 raises P(MOD),
  -1 lowers it); set only where the direction is clinical, not where the generator put it.
* ``reason``: only features marked as reasons are ever shown to a reviewer, and in the
  words of :mod:`plugin.rank.explain`.

Sources are short names of the references in ``/work/shared/reference/etriggers.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from plugin.rank import codesets as cs
from plugin.rank.features import ENCOUNTER_FEATURES, REVIEW_FEATURES, WINDOW_FEATURES

SPADE = "SPADE (Liberman & Newman-Toker, BMJQS 2018; Vaghani, JAMIA 2021)"
ED_RETURN = "ED return e-triggers (Murphy/Singh; Aaronson, AJEM 2017)"
PC_TRIGGER = "PC-3 (Singh, BMJQS 2012)"
SAFER_DX = "Safer Dx Instrument (Singh, Diagnosis 2019)"
VITALS = "abnormal vital signs at ED discharge (Sklar, Ann Emerg Med 2007; SPADE)"
FOLLOWUP = "test-result follow-up triggers (Murphy 2017-2018; Meyer, JGIM 2017)"


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    measures: str
    why: str
    direction: int = 0  # +1 raises P(MOD) / risk, -1 lowers it, 0 depends on the case
    source: str = ""
    monotone: bool = False  # enforce ``direction`` in the review head
    reason: bool = True  # may be shown to a reviewer


def _family() -> list[Entry]:
    out = [
        Entry(f"rf_{g.name}", f"{g.label} recorded by the visit (problem list or diagnoses)",
              "vascular and other risk factors raise the prior of a dangerous diagnosis "
              "behind a benign-looking presentation", 0, SPADE)
        for g in cs.RISK_FACTORS
    ]
    out += [
        Entry(f"hx_{g.name}", f"{g.label} recorded by the visit",
              "chronic disease explains many admissions as expected course (a look-alike)",
              0, ED_RETURN)
        for g in cs.CHRONIC
    ]
    out += [
        Entry(f"sym_{g.name}", f"{g.label} coded at the index visit",
              "the presenting symptom decides which dangerous diagnoses are in play", 0, SPADE)
        for g in cs.SYMPTOMS
    ]
    out += [
        Entry(f"lab_{name}",
              f"last {name} at the visit as a multiple of its own reference "
              f"{'lower' if name in cs.LOW_SIDE_LABS else 'upper'} limit (unit-free)",
              "an abnormal result at a treat-and-release visit is a red flag left unexplained",
              0, SAFER_DX)
        for name in cs.LABS
    ]
    return out


_ENTRIES: tuple[Entry, ...] = (
    Entry("age", "age in years at the index event",
          "older patients present atypically and carry more risk", 0, SPADE),
    Entry("sex", "administrative sex", "case mix only", 0, reason=False),
    *_family(),
    Entry("n_risk_factors", "number of the risk factors above",
          "more risk factors, higher prior of stroke / MI behind benign symptoms", 0, SPADE),
    Entry("terminal_hx", "hospice or palliative care recorded",
          "deterioration is expected; reviewers exclude these", -1, ED_RETURN, monotone=True),
    Entry("setting", "setting of the index visit (ED, clinic, inpatient, ...)",
          "the trigger's population", 0),
    Entry("disposition", "discharge disposition of the index visit", "home vs transfer", 0),
    Entry("duration_h", "length of the index visit in hours",
          "a short ED stay leaves less time for work-up", 0, SPADE),
    Entry("planned", "index visit scheduled", "scheduled visits differ from walk-ins", 0,
          reason=False),
    Entry("admit_elective", "index admission elective", "elective stays are not triggers", 0,
          reason=False),
    Entry("trauma_dx", "injury diagnosis at the visit",
          "injury explains return visits unrelated to the complaint", 0, ED_RETURN),
    Entry("temp_max", "highest temperature at the visit (°C)",
          "fever or hypothermia at discharge is a red flag", 0, VITALS),
    Entry("hr_max", "highest heart rate at the visit", "tachycardia at discharge", 0, VITALS),
    Entry("sbp_min", "lowest systolic blood pressure", "hypotension at discharge", 0, VITALS),
    Entry("sbp_max", "highest systolic blood pressure",
          "severe hypertension with neurological symptoms", 0, VITALS),
    Entry("dbp_min", "lowest diastolic blood pressure", "haemodynamic instability", 0, VITALS),
    Entry("spo2_min", "lowest oxygen saturation", "hypoxia at discharge (PE, sepsis)", 0, VITALS),
    Entry("rr_max", "highest respiratory rate", "tachypnoea (sepsis, PE)", 0, VITALS),
    Entry("n_vitals_abnormal", "number of abnormal vital-sign groups at the visit",
          "instability at discharge raises the chance the diagnosis was missed", 1, VITALS,
          monotone=True),
    Entry("n_labs_abnormal", "abnormal lab results at the visit",
          "unexplained abnormal results at a treat-and-release visit", 0, SAFER_DX),
    Entry("fit_positive", "a FIT/FOBT at the visit was positive", "the TR-1 index result", 0,
          FOLLOWUP),
    Entry("imaging_any", "any imaging at the index visit",
          "test ordering at the index visit: work-up done", 0, SPADE),
    Entry("head_imaging", "head CT or MRI at the index visit",
          "dizziness worked up with imaging is less often a missed stroke", -1, SPADE),
    Entry("n_orders", "orders and referrals placed at the visit",
          "a plan was made (work-up or follow-up)", 0, SAFER_DX),
    Entry("prior_ed_30", "ED visits in the 30 d before",
          "repeated visits for the same complaint are a classic missed-opportunity pattern",
          1, ED_RETURN, monotone=True),
    Entry("prior_ed_365", "ED visits in the prior year", "frequent attenders", 0, ED_RETURN),
    Entry("prior_amb_30", "clinic visits in the 30 d before", "recent contacts", 0, PC_TRIGGER),
    Entry("prior_amb_365", "clinic visits in the prior year", "engagement in care", 0,
          PC_TRIGGER),
    Entry("prior_ip_365", "admissions in the prior year", "chronic illness burden", 0,
          ED_RETURN),
    Entry("on_thyroid_rx", "thyroid replacement prescribed in the past year",
          "the TR-7 premise (high TSH on replacement)", 0, FOLLOWUP),
    Entry("trigger", "the e-trigger that fired", "PPV differs by trigger", 0, reason=False),
    Entry("rule_sequence", "the rule is symptom-then-outcome (else missing follow-up)",
          "rule family", 0, reason=False),
    Entry("index_kind", "kind of the index event", "rule family", 0, reason=False),
    Entry("index_x_limit", "index result as a multiple of its upper reference limit",
          "further from normal, harder to justify no follow-up", 0, FOLLOWUP),
    Entry("index_abnormal", "index result flagged or outside its reference range",
          "an abnormal result needs a documented plan", 0, FOLLOWUP),
    Entry("days_to_outcome", "days from the end of the index visit to the outcome (0 if it "
          "began during the visit)", "time to return: early returns are likelier misses", -1,
          ED_RETURN, monotone=True),
    Entry("outcome_group", "dangerous diagnosis at the outcome, if any",
          "the outcome names what may have been missed", 0, SAFER_DX),
    Entry("outcome_primary_group", "dangerous diagnosis as the outcome's main diagnosis",
          "main vs secondary diagnosis", 0, SAFER_DX),
    Entry("outcome_same_dx", "outcome shares the index visit's diagnosis category",
          "a return for the same problem", 0, ED_RETURN),
    Entry("outcome_setting", "setting of the outcome encounter", "severity", 0),
    Entry("outcome_los_h", "length of the outcome stay (within the window)", "severity", 0),
    Entry("outcome_planned", "outcome admission scheduled",
          "planned admissions are excluded by reviewers", -1, PC_TRIGGER, monotone=True),
    Entry("outcome_admit_elective", "outcome admission elective",
          "planned admissions are excluded by reviewers", -1, PC_TRIGGER, monotone=True),
    Entry("outcome_icu", "outcome needed intensive care", "severity of the outcome", 1,
          ED_RETURN, monotone=True),
    Entry("outcome_history_code", "outcome coded as a history-of-stroke code",
          "miscoded stroke history is the main SPADE false positive", -1, SPADE,
          monotone=True),
    Entry("outcome_trauma", "outcome is an injury", "unrelated return", -1, ED_RETURN,
          monotone=True),
    Entry("outcome_terminal", "palliative care at the outcome", "expected course", -1,
          ED_RETURN, monotone=True),
    Entry("outcome_imaging", "imaging during the outcome stay", "work-up of the outcome", 0),
    Entry("win_encounters", "other visits in the rule's window", "contacts after the index", 0,
          SAFER_DX),
    Entry("win_amb", "clinic visits in the window", "follow-up may have happened", 0, SAFER_DX),
    Entry("win_ed", "ED visits in the window", "return visits", 0, ED_RETURN),
    Entry("win_orders", "orders in the window", "follow-up ordered", 0, FOLLOWUP),
    Entry("win_procedures", "procedures in the window", "follow-up done", 0, FOLLOWUP),
    Entry("win_thyroid_rx", "thyroid prescription in the window", "TR-7 follow-up", -1,
          FOLLOWUP, monotone=True),
    Entry("win_repeat_lab", "the index test repeated in the window", "follow-up done", -1,
          FOLLOWUP, monotone=True),
    Entry("win_reports", "reports in the window", "follow-up results", 0, FOLLOWUP),
    Entry("win_outside_reports", "reports from outside organisations in the window",
          "follow-up done elsewhere (a published false-positive mechanism)", -1, FOLLOWUP,
          monotone=True),
    Entry("orders_active", "index-visit orders still open", "loop not closed", 0, FOLLOWUP),
    Entry("orders_revoked", "index-visit orders cancelled", "loop not closed", 0, FOLLOWUP),
    Entry("orders_completed", "index-visit orders completed", "loop closed", 0, FOLLOWUP),
    Entry("win_terminal", "hospice or palliative care in the window", "expected course", -1,
          FOLLOWUP, monotone=True),
    Entry("win_declined", "patient declined the follow-up", "not a missed opportunity by the "
          "team (published exclusion)", -1, FOLLOWUP, monotone=True),
    Entry("win_nonadherence", "non-adherence documented", "published exclusion", -1, FOLLOWUP,
          monotone=True),
    Entry("win_died", "patient died in the window", "severity; death may pre-empt follow-up",
          0, ED_RETURN),
)

CATALOGUE: dict[str, Entry] = {e.name: e for e in _ENTRIES}
# generator structure or documentation volume: removed (see FEATURES.md, "Removed")
REMOVED: dict[str, str] = {
    "days_since_thyroid_rx": "the day of the last refill is the generator's schedule, not a "
    "clinical signal (it was the top reason for an ED return admission)",
    "n_labs": "how much a site charts, not how sick the patient was; collapses across sites",
    "n_dx": "coding volume differs by site",
    "n_procedures": "documentation volume",
    "outcome_n_dx": "coding volume at the outcome",
    "win_meds": "refill schedule",
    "index_value": "unit-dependent (mg/dL vs mmol/L); replaced by index_x_limit",
}


def monotone_vector(names: tuple[str, ...]) -> list[int]:
    """LightGBM ``monotone_constraints`` for ``names`` (0 where none is enforced)."""
    return [
        CATALOGUE[n].direction if n in CATALOGUE and CATALOGUE[n].monotone else 0 for n in names
    ]


def shown(name: str) -> bool:
    entry = CATALOGUE.get(name)
    return entry is not None and entry.reason


def markdown() -> str:
    """FEATURES.md."""
    arrow = {1: "↑ P(MOD)", -1: "↓ P(MOD)", 0: "—"}
    lines = [
        "# Ranker feature catalogue",
        "",
        "Generated from `plugin/rank/catalogue.py` (`python -m plugin.rank.catalogue > "
        "plugin/rank/FEATURES.md`); a test checks it is current.",
        "",
        "Direction: the effect on P(missed opportunity) where the literature gives one; "
        "**enforced** means a LightGBM monotone constraint in the review head. Reason: the "
        "feature may be shown to a reviewer. Lab values are multiples of the result's own "
        "reference limit, so the feature does not depend on the unit a site writes.",
        "",
        "| feature | head | measures | why it may matter | direction | reason | source |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in _ENTRIES:
        head = "review + real-time" if e.name in ENCOUNTER_FEATURES else "review"
        d = arrow[e.direction] + (" (enforced)" if e.monotone else "")
        lines.append(
            f"| `{e.name}` | {head} | {e.measures} | {e.why} | {d} | "
            f"{'yes' if e.reason else 'no'} | {e.source} |"
        )
    lines += ["", "## Removed", "", "| feature | why |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in REMOVED.items()]
    return "\n".join(lines) + "\n"


def missing() -> list[str]:
    """Feature names without a catalogue entry (a test keeps this empty)."""
    return [n for n in (*REVIEW_FEATURES, *WINDOW_FEATURES) if n not in CATALOGUE]


if __name__ == "__main__":
    import sys

    sys.stdout.write(markdown())
