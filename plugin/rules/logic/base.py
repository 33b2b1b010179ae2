"""The interface every logic type implements (registered in :mod:`plugin.rules.logic`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from plugin.rules.codesets import CodeSet
from plugin.rules.schema import LogicSpec, Selector
from plugin.rules.selectors import Matcher

if TYPE_CHECKING:
    from plugin.rules.engine import Completion, Hit, Match, Rule, Scope


class LogicType(ABC):
    """One kind of rule logic. Subclasses set the class variables and implement
    :meth:`complete`; the defaults describe a type with no follow-up to close it."""

    name: ClassVar[str]  # the ``type:`` value
    spec: ClassVar[type[LogicSpec]]  # its pydantic model
    summary: ClassVar[str]  # one line for docs and listings
    # Findings are loops a follow-up closes, worth showing at the chart while still open
    # (absence). False: a finding is history for the worklist (sequence).
    closes_with_followup: ClassVar[bool] = False
    # An index at a discharge is worth a pattern card when no model is configured: the
    # pattern's outcome lies in the future (sequence).
    advises_at_discharge: ClassVar[bool] = False

    def compile(
        self, spec: LogicSpec, valuesets: Mapping[str, CodeSet]
    ) -> dict[str, tuple[Matcher, ...]]:
        """Type-specific selectors, compiled (stored as ``Rule.parts``)."""
        return {}

    def followups(self, spec: LogicSpec) -> Sequence[Selector]:
        """The selectors whose events close a finding of this type (none by default)."""
        return ()

    @abstractmethod
    def complete(
        self, rule: Rule, scope: Scope, match: Match, *, as_of: datetime
    ) -> Completion | None:
        """After an index that matched (with its index-stage conditions): the finding's
        completion, or None when this index gives no finding."""

    def still_open(self, rule: Rule, scope: Scope, hit: Hit) -> bool:
        """Is this finding still something to act on (no follow-up even late)?"""
        return False
