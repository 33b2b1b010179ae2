"""Missing data is not absence of care (issue 11 item 5): which absence rules a source can
evaluate, decided once from the kinds of record the source holds.

An absence rule fires when none of its expected follow-ups (``expect_any``) happened. Each
follow-up names the kinds of record that would show it (procedure, report, order,
encounter...). When the source holds **no** record of any kind a follow-up could appear in —
the export has no Procedures at all, or a Bulk ``_type`` left them out — "no follow-up" is
guaranteed by the data, not by care:

* no follow-up of the rule is observable → the rule is **not evaluated** (no finding);
* some are, some are not → findings are kept and marked ``extra["data_gap"]`` with the
  reason (a human looks; the catalogue's TR-3 on the MIMIC demo: encounters are present,
  procedures, reports and orders are not).

A source that holds the kind at all is never suppressed: a patient with no colonoscopy in a
source that holds procedures is exactly the miss the rule looks for. Sequence rules (an
outcome that did happen) are never affected.

:func:`data_gaps` is the one decision; every engine (the Python engine, the SQL engine, CDS)
calls it with the kinds present — :func:`plugin.scan.kinds_present` derives them from the
resource types read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from plugin.rules.engine import Rule, RuleSet
from plugin.timeline.model import Kind

# The FHIR resource type behind each kind, for messages only (the table that maps types to
# kinds is plugin/fhir/resource_types.py; the rules never import the FHIR edge).
_LABEL: dict[Kind, str] = {
    Kind.ENCOUNTER: "Encounter",
    Kind.CONDITION: "Condition",
    Kind.OBSERVATION: "Observation",
    Kind.PROCEDURE: "Procedure",
    Kind.REPORT: "DiagnosticReport",
    Kind.ORDER: "ServiceRequest",
    Kind.MEDICATION: "MedicationRequest",
    Kind.DEATH: "Patient.deceased",
    Kind.TRANSFER: "Encounter.location",
}


@dataclass(frozen=True, slots=True)
class DataGap:
    """Why a rule's "no follow-up" cannot be trusted on this source."""

    rule_id: str
    trigger: str | None
    evaluated: bool  # False: no finding at all; True: findings kept, marked
    missing: tuple[Kind, ...]  # the follow-up kinds the source holds none of
    reason: str


def followup_kinds(rule: Rule) -> tuple[frozenset[Kind], ...]:
    """The kinds each of the rule's closing follow-ups can appear in (empty for rules no
    follow-up closes)."""
    if not rule.logic_type.closes_with_followup:
        return ()
    return tuple(m.kinds for m in rule.parts.get("expect_any", ()))


def _names(kinds: Iterable[Kind]) -> str:
    names = sorted(_LABEL.get(k, k.value) for k in kinds)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def rule_gap(rule: Rule, present: Iterable[Kind | str]) -> DataGap | None:
    """The gap of one rule on a source holding records of ``present`` kinds, or None."""
    have = frozenset(Kind(k) for k in present)
    groups = followup_kinds(rule)
    blind = [g for g in groups if not g & have]
    if not blind:
        return None
    missing = tuple(sorted(frozenset().union(*blind)))
    label = rule.trigger or rule.id
    if len(blind) == len(groups):
        reason = (
            f"{label} not evaluated: the source holds no {_names(missing)} records, so none "
            "of its follow-ups could be seen (missing data, not missing care)"
        )
        return DataGap(rule.id, rule.trigger, False, missing, reason)
    reason = (
        f"{label} data gap: the source holds no {_names(missing)} records, so {len(blind)} of "
        f"the {len(groups)} kinds of follow-up it looks for could not be seen; its findings "
        "are marked data_gap"
    )
    return DataGap(rule.id, rule.trigger, True, missing, reason)


def data_gaps(rules: RuleSet | Iterable[Rule], present: Iterable[Kind | str]) -> dict[str, DataGap]:
    """Rule id → its gap, for every rule with one, on a source holding ``present`` kinds."""
    kinds = frozenset(Kind(k) for k in present)
    items = rules.rules if isinstance(rules, RuleSet) else tuple(rules)
    return {r.id: gap for r in items if (gap := rule_gap(r, kinds)) is not None}
