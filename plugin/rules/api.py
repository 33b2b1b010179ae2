"""Questions consumers (CDS, the worklist) ask about rules, answered with the engine's own
semantics so that nobody outside :mod:`plugin.rules` reads a rule's logic block.

Which rules a source cannot evaluate for want of data (issue 11) is
:func:`plugin.rules.gaps.data_gaps`, exported here too so every engine asks the same function.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from plugin.rules.codesets import CodeSet
from plugin.rules.engine import Rule, RuleSet, Scope, hits
from plugin.rules.followup import FollowUp
from plugin.rules.gaps import DataGap, data_gaps, followup_kinds
from plugin.rules.selectors import resolve_codes

__all__ = [
    "DataGap",
    "RuleIndex",
    "advises_at_discharge",
    "closing_codes",
    "data_gaps",
    "followup_kinds",
    "followup_order",
    "has_clinical_index",
    "open_findings",
    "rule_index",
]
from plugin.timeline.model import Code, Finding, Kind, Timeline


def open_findings(
    rules: RuleSet | Iterable[Rule], tl: Timeline, *, now: datetime, lookback: timedelta
) -> list[Finding]:
    """Findings still open at ``now``: of rules whose findings a follow-up closes
    (``absence``), those whose window closed within ``lookback`` of ``now`` and with no
    follow-up since the anchor, neither in the window nor later. Highest level first, then
    the most recent window."""
    rules = rules.rules if isinstance(rules, RuleSet) else tuple(rules)
    scope = Scope(tl)
    out: list[tuple[Rule, Finding]] = []
    for rule in rules:
        if not rule.logic_type.closes_with_followup:
            continue
        for hit in hits(rule, tl, as_of=now, scope=scope):
            if hit.finding.window_end < now - lookback:
                continue
            if rule.logic_type.still_open(rule, scope, hit):
                out.append((rule, hit.finding))
    out.sort(key=lambda rf: (-rf[0].level, -rf[1].window_end.timestamp()))
    return [f for _, f in out]


def followup_order(rule: Rule) -> FollowUp | None:
    """The orderable follow-up the rule expects (SNOMED CT coding preferred), or None."""
    return rule.followup


def closing_codes(rule: Rule) -> CodeSet:
    """The codes whose events close a finding of this rule (an order for one of them
    acknowledges it). Empty for rules no follow-up closes."""
    return rule.closing


def has_clinical_index(rule: Rule) -> bool:
    """The index names a clinical problem (codes or diagnoses), not just "an ED visit": a
    rule like "any ED visit, then death within 24 h" matches every discharge and says
    nothing about this one."""
    return all(sel.codes or sel.diagnosis for sel in rule.spec.logic.index_selectors())


def advises_at_discharge(rule: Rule) -> bool:
    """Is an index match at a discharge worth a pattern card (its outcome lies ahead)?"""
    return rule.logic_type.advises_at_discharge and has_clinical_index(rule)


# --- issue 14 (engineer G): a compiled index of rules by the event kinds and codes that can
# start them, so a hook call evaluates only the rules this patient's record could trigger ---
@dataclass(frozen=True, slots=True)
class _Gate:
    """What an index selector needs at least: an event of one of ``kinds`` that has a code
    in ``codes`` (when the selector names codes) and a diagnosis in ``diagnoses`` (when it
    names diagnoses). A necessary condition only: the rule's own matchers still decide."""

    kinds: frozenset[Kind]
    codes: CodeSet | None
    diagnoses: CodeSet | None


@dataclass(frozen=True, slots=True)
class RuleIndex:
    """Rules compiled once (:func:`rule_index`); :meth:`candidates` gives, for a timeline,
    the rules whose index selector some event could satisfy, in the original order.
    ``open_findings(index.candidates(tl), ...)`` equals ``open_findings(rules, ...)``:
    a rule none of whose index selectors can match starts no finding."""

    gates: tuple[tuple[Rule, tuple[_Gate, ...] | None], ...]  # None: no cheap gate

    def candidates(self, tl: Timeline) -> list[Rule]:
        codes: dict[Kind, set[Code]] = {}
        diagnoses: dict[Kind, set[Code]] = {}
        for e in tl.events:
            codes.setdefault(e.kind, set()).update(e.codes)
            if e.detail is not None:
                diagnoses.setdefault(e.kind, set()).update(e.detail.diagnoses)
                diagnoses[e.kind].update(e.detail.principal)
        return [
            rule
            for rule, gates in self.gates
            if gates is None or any(_open(g, codes, diagnoses) for g in gates)
        ]


def _open(gate: _Gate, codes: dict[Kind, set[Code]], diagnoses: dict[Kind, set[Code]]) -> bool:
    for kind in gate.kinds:
        if kind not in codes:
            continue
        if gate.codes is not None and not gate.codes.any_of(codes[kind]):
            continue
        if gate.diagnoses is not None and not gate.diagnoses.any_of(diagnoses.get(kind, ())):
            continue
        return True
    return False


def rule_index(
    rules: RuleSet | Iterable[Rule], valuesets: Mapping[str, CodeSet] | None = None
) -> RuleIndex:
    """Compile the gates of ``rules`` (value sets from the RuleSet, or ``valuesets``)."""
    if isinstance(rules, RuleSet):
        valuesets = rules.valuesets if valuesets is None else valuesets
        rules = rules.rules
    sets = valuesets or {}
    out: list[tuple[Rule, tuple[_Gate, ...] | None]] = []
    for rule in rules:
        gates: list[_Gate] = []
        try:
            for sel in rule.spec.logic.index_selectors():
                kinds = sel.kind if isinstance(sel.kind, list) else [sel.kind]
                gates.append(
                    _Gate(
                        kinds=frozenset(Kind(k) for k in kinds),
                        codes=resolve_codes(sel.codes, sets) if sel.codes else None,
                        diagnoses=resolve_codes(sel.diagnosis, sets) if sel.diagnosis else None,
                    )
                )
        except KeyError:  # a value set we were not given: no gate, the rule always runs
            out.append((rule, None))
            continue
        out.append((rule, tuple(gates)))
    return RuleIndex(tuple(out))
