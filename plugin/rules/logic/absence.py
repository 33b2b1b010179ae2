"""``type: absence``: an index, then none of the expected follow-ups within the window (an
abnormal result never acted on). A follow-up closes the loop when
``anchor <= t <= anchor + within`` (its own ``within`` when it has one); a finding exists
only once the window has closed by ``as_of``. It stays open (for CDS) while no follow-up
has happened at any time since the anchor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from plugin.rules.codesets import CodeSet
from plugin.rules.logic.base import LogicType
from plugin.rules.schema import Expect, LogicSpec, Selector
from plugin.rules.selectors import Matcher, compile_selector

if TYPE_CHECKING:
    from plugin.rules.engine import Completion, Hit, Match, Rule, Scope


class AbsenceLogic(LogicSpec):
    type: Literal["absence"]
    expect_any: Annotated[list[Expect], Field(min_length=1)]
    anchor: Literal["start", "end"] = "start"

    @model_validator(mode="after")
    def _no_outcome(self) -> AbsenceLogic:
        if any(c.mentions_outcome() for c in (*self.require, *self.exclude)):
            raise ValueError("an absence rule has no outcome: 'relative_to: outcome' is invalid")
        return self


class AbsenceType(LogicType):
    name = "absence"
    spec = AbsenceLogic
    summary = "an index, then no expected follow-up within the window (an open loop)"
    closes_with_followup = True

    def compile(
        self, spec: LogicSpec, valuesets: Mapping[str, CodeSet]
    ) -> dict[str, tuple[Matcher, ...]]:
        if not isinstance(spec, AbsenceLogic):
            raise TypeError(spec)
        return {"expect_any": tuple(compile_selector(e, valuesets) for e in spec.expect_any)}

    def followups(self, spec: LogicSpec) -> Sequence[Selector]:
        if not isinstance(spec, AbsenceLogic):
            raise TypeError(spec)
        return spec.expect_any

    def complete(
        self, rule: Rule, scope: Scope, match: Match, *, as_of: datetime
    ) -> Completion | None:
        from plugin.rules.engine import Completion, days_text, describe, first

        anchor, within = match.anchor, rule.within
        if anchor + within > as_of:
            return None  # window still open
        closed = any(
            first((m,), scope.between(anchor, anchor + (m.within or within)), match.index)
            for m in rule.parts["expect_any"]
        )
        if closed:
            return None
        return Completion(
            summary=f"{describe(match.index)} with no expected follow-up in {days_text(within)}"
        )

    def still_open(self, rule: Rule, scope: Scope, hit: Hit) -> bool:
        from plugin.rules.engine import first

        return first(rule.parts["expect_any"], scope.since(hit.anchor), hit.index) is None


ABSENCE = AbsenceType()
