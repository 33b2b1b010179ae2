"""A test-only logic type, ``single``: the index alone is a finding (with its conditions).

It shows what a new logic type is: this module (spec model, completion) plus one
:func:`plugin.rules.logic.register` call; nothing else in the rules package changes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from plugin.rules.engine import Completion, Match, Rule, Scope, describe
from plugin.rules.logic import LogicType
from plugin.rules.schema import Duration, LogicSpec


class SingleLogic(LogicSpec):
    type: Literal["single"]
    within: Duration = timedelta(0)


class SingleType(LogicType):
    name = "single"
    spec = SingleLogic
    summary = "the index alone is a finding"

    def complete(
        self, rule: Rule, scope: Scope, match: Match, *, as_of: datetime
    ) -> Completion | None:
        return Completion(summary=f"{describe(match.index)} (single)")


SINGLE = SingleType()
