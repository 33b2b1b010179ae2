"""``type: sequence``: an index, then an outcome within the window (a symptom, then the
disease). The outcome counts when ``anchor < t <= anchor + within``; outcome-relative
conditions are checked per candidate outcome, the first that passes is the finding's."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from plugin.rules.codesets import CodeSet
from plugin.rules.logic.base import LogicType
from plugin.rules.schema import LogicSpec, Selector
from plugin.rules.selectors import Matcher, compile_any

if TYPE_CHECKING:
    from plugin.rules.engine import Completion, Match, Rule, Scope


class SequenceLogic(LogicSpec):
    type: Literal["sequence"]
    outcome: Selector | list[Selector]


class SequenceType(LogicType):
    name = "sequence"
    spec = SequenceLogic
    summary = "an index, then an outcome within the window (the diagnosis that was missed)"
    advises_at_discharge = True

    def compile(
        self, spec: LogicSpec, valuesets: Mapping[str, CodeSet]
    ) -> dict[str, tuple[Matcher, ...]]:
        if not isinstance(spec, SequenceLogic):
            raise TypeError(spec)
        return {"outcome": compile_any(spec.outcome, valuesets)}

    def complete(
        self, rule: Rule, scope: Scope, match: Match, *, as_of: datetime
    ) -> Completion | None:
        from plugin.rules.engine import Completion, conditions_pass, describe, same_source

        index, anchor = match.index, match.anchor
        outcomes = rule.parts["outcome"]
        for candidate in scope.between(anchor, anchor + rule.within, lo_open=True):
            if same_source(candidate, index) or not any(m(candidate) for m in outcomes):
                continue
            before = len(match.evidence)
            if conditions_pass(rule, scope, match, candidate):
                match.evidence.insert(before, candidate.source)  # the outcome, then its evidence
                days = (candidate.t - anchor).total_seconds() / 86400
                return Completion(
                    summary=f"{describe(index)}, then {describe(candidate)} after {days:.1f} d",
                    outcome=candidate,
                )
        return None


SEQUENCE = SequenceType()
