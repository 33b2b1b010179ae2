"""Questions consumers (CDS, the worklist) ask about rules, answered with the engine's own
semantics so that nobody outside :mod:`plugin.rules` reads a rule's logic block.

Which rules a source cannot evaluate for want of data (issue 11) is
:func:`plugin.rules.gaps.data_gaps`, exported here too so every engine asks the same function.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from plugin.rules.codesets import CodeSet
from plugin.rules.engine import Rule, RuleSet, Scope, hits
from plugin.rules.followup import FollowUp
from plugin.rules.gaps import DataGap, data_gaps, followup_kinds

__all__ = [
    "DataGap",
    "advises_at_discharge",
    "closing_codes",
    "data_gaps",
    "followup_kinds",
    "followup_order",
    "has_clinical_index",
    "open_findings",
]
from plugin.timeline.model import Finding, Timeline


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
