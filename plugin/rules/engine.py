"""Rule semantics: one evaluation per (rule, patient timeline), shared by scan and CDS.

Windows (also in ``rules/README.md``): a sequence outcome counts when
``anchor < t <= anchor + within`` (end inclusive, anchor excluded); an absence
follow-up closes the loop when ``anchor <= t <= anchor + within``. Condition windows
``between: [a, b]`` are inclusive at both ends, relative to the anchor. Times are UTC
elapsed time. An absence rule fires only once its window has closed by ``as_of``.
The index event itself never satisfies its own outcome, follow-up or conditions, nor does
the other record of the same study (a Procedure and a DiagnosticReport at the same instant in
the same encounter: :func:`same_source`).

This module holds what every logic type shares (the index scan, the conditions, the
finding); what happens after the index is the logic type's (:mod:`plugin.rules.logic`).
A missing birth date or sex makes an age/sex condition undecidable: it does not satisfy
a ``require`` and does not apply an ``exclude`` (a human looks rather than a case being
lost); the finding records which fact was unknown in ``extra["unknown"]``.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from plugin.rules.codesets import CodeSet
from plugin.rules.followup import FollowUp
from plugin.rules.schema import (
    AgeBounds,
    Level,
    Published,
    RuleSpec,
    Status,
    ValueSetSpec,
    shift,
)
from plugin.rules.selectors import Matcher
from plugin.timeline.model import Event, Finding, Kind, Timeline

if TYPE_CHECKING:
    from plugin.rules.gaps import DataGap
    from plugin.rules.logic import LogicType


@dataclass(frozen=True, slots=True, kw_only=True)
class CompiledCondition:
    matcher: Matcher | None = None
    between: tuple[timedelta, timedelta] | None = None
    same_encounter: bool = False
    before_outcome: bool = False
    relative_to: str = "index"  # "index" | "outcome"
    age: AgeBounds | None = None
    died_within: timedelta | None = None
    sex: frozenset[str] | None = None
    any: tuple[CompiledCondition, ...] = ()

    @property
    def on_outcome(self) -> bool:
        return (
            self.relative_to == "outcome"
            or self.before_outcome
            or any(c.on_outcome for c in self.any)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """A loaded, compiled rule. ``spec`` keeps every metadata field of the file;
    ``logic_type`` is the registered type that evaluates it; ``parts`` its type-specific
    compiled selectors (``outcome`` of a sequence, ``expect_any`` of an absence)."""

    spec: RuleSpec
    path: str
    logic_type: LogicType
    index: tuple[Matcher, ...]
    parts: Mapping[str, tuple[Matcher, ...]] = field(default_factory=dict)
    require: tuple[CompiledCondition, ...] = ()
    exclude: tuple[CompiledCondition, ...] = ()
    closing: CodeSet = field(default_factory=CodeSet)  # codes of follow-ups that close it
    followup: FollowUp | None = None  # the orderable follow-up it expects
    origin: str = ""  # the rules root this rule came from
    version: str = ""  # "<modified or date>+<hash of the file>"
    catalogue_version: str = ""  # digest of every file of the ruleset it was loaded with

    @property
    def id(self) -> str:
        return str(self.spec.id)

    @property
    def title(self) -> str:
        return self.spec.title

    @property
    def status(self) -> Status:
        return self.spec.status

    @property
    def level(self) -> Level:
        return self.spec.level

    @property
    def type(self) -> str:
        return self.logic_type.name

    @property
    def within(self) -> timedelta:
        return self.spec.logic.within

    @property
    def anchor(self) -> str:
        return self.spec.logic.anchor

    @property
    def description(self) -> str:
        return self.spec.description

    @property
    def references(self) -> list[str]:
        return self.spec.references

    @property
    def tags(self) -> list[str]:
        return self.spec.tags

    @property
    def falsepositives(self) -> list[str]:
        return self.spec.falsepositives

    @property
    def published(self) -> Published | None:
        return self.spec.published

    @property
    def trigger(self) -> str | None:
        """The catalogue id (``SP-1``) from the rule's ``trigger:`` key."""
        return self.spec.trigger


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[Rule, ...]
    source: str = ""  # the roots, joined with os.pathsep
    valuesets: Mapping[str, CodeSet] = field(default_factory=dict)
    valueset_specs: Mapping[str, ValueSetSpec] = field(default_factory=dict)  # titles, sources
    roots: tuple[str, ...] = ()
    catalogue_version: str = ""

    def get(self, rule_id: str) -> Rule | None:
        """The rule with this id, or the first rule of this catalogue id (``SP-1``)."""
        found = self.find(rule_id)
        return found[0] if found else None

    def find(self, rule_id: str) -> list[Rule]:
        """Every rule with this id or catalogue id (variants such as ED-1 72 h / 10 d)."""
        want = rule_id.upper()
        return [r for r in self.rules if r.id == rule_id or r.trigger == want]

    def __len__(self) -> int:
        return len(self.rules)


def finding_key(patient_id: str, rule_id: str, index: Event) -> str:
    raw = f"{patient_id}|{rule_id}|{index.source}|{index.t.isoformat()}"
    return hashlib.sha1(raw.encode(), usedforsecurity=False).hexdigest()[:24]


class Scope:
    """One patient's timeline plus its event times, for window lookups by bisection.
    Logic types receive it to look for their outcome or follow-up."""

    __slots__ = ("events", "timeline", "times")

    def __init__(self, timeline: Timeline):
        self.timeline = timeline
        self.events: Sequence[Event] = timeline.events
        self.times = [e.t for e in self.events]

    def between(self, lo: datetime, hi: datetime, *, lo_open: bool = False) -> Sequence[Event]:
        start = bisect_right(self.times, lo) if lo_open else bisect_left(self.times, lo)
        return self.events[start : bisect_right(self.times, hi)]

    def since(self, lo: datetime) -> Sequence[Event]:
        return self.events[bisect_left(self.times, lo) :]


_STUDY = frozenset({Kind.PROCEDURE, Kind.REPORT})


def same_source(e: Event, index: Event) -> bool:
    """The index itself, another view of the same resource, or the other record of the same
    study: a Procedure and a DiagnosticReport at the same instant in the same encounter are
    one imaging study and its report, written as two resources (never its own evidence). A
    *repeat* study is a follow-up; the study that was read is not (VA TR-3: "a repeated chest
    x-ray or CT within 30 days after" the index; issue 11)."""
    if e is index or (e.source == index.source and e.kind is index.kind):
        return True
    return (
        e.kind is not index.kind
        and e.kind in _STUDY
        and index.kind in _STUDY
        and e.t == index.t
        and e.encounter == index.encounter
    )


def first(matchers: Iterable[Matcher], events: Iterable[Event], skip: Event) -> Event | None:
    """The first event a matcher accepts, skipping the index and its own resource."""
    ms = tuple(matchers)
    for e in events:
        if same_source(e, skip):
            continue
        if any(m(e) for m in ms):
            return e
    return None


def _age_ok(bounds: AgeBounds, age: float) -> bool:
    return (
        (bounds.lt is None or age < bounds.lt)
        and (bounds.le is None or age <= bounds.le)
        and (bounds.gt is None or age > bounds.gt)
        and (bounds.ge is None or age >= bounds.ge)
    )


def _in_encounter(e: Event, index: Event) -> bool:
    return e.encounter == index.source or (e.source == index.source and e.kind is not index.kind)


def _unknown_facts(cond: CompiledCondition, tl: Timeline, index: Event) -> set[str]:
    """Which patient facts (age, sex) an undecidable condition was missing."""
    out: set[str] = set()
    if cond.age is not None and tl.patient.age_at(index.t) is None:
        out.add("age")
    if cond.sex is not None and tl.patient.sex is None:
        out.add("sex")
    for c in cond.any:
        out |= _unknown_facts(c, tl, index)
    return out


def _condition(
    cond: CompiledCondition,
    scope: Scope,
    index: Event,
    anchor: datetime,
    outcome: Event | None = None,
) -> tuple[bool | None, Event | None]:
    """(holds, evidence). ``holds`` is None when it cannot be decided (unknown age/sex)."""
    tl = scope.timeline
    if cond.any:
        results = [_condition(c, scope, index, anchor, outcome) for c in cond.any]
        hit = next((r for r in results if r[0]), None)
        if hit is not None:
            return hit
        return (None, None) if any(r[0] is None for r in results) else (False, None)
    if cond.relative_to == "outcome":
        if outcome is None:
            return None, None
        anchor = outcome.t
    if cond.matcher is not None:
        if cond.between is not None:
            candidates: Iterable[Event] = scope.between(
                shift(anchor, cond.between[0]), shift(anchor, cond.between[1])
            )
        else:
            candidates = tl.events
        if cond.same_encounter:
            candidates = [e for e in candidates if _in_encounter(e, index)]
        if cond.before_outcome:
            if outcome is None:
                return None, None
            candidates = [e for e in candidates if e.t < outcome.t]
        found = first((cond.matcher,), candidates, index)
        if found is not None and outcome is not None and found is outcome:
            found = None
        return found is not None, found
    if cond.age is not None:
        age = tl.patient.age_at(index.t)
        return (None, None) if age is None else (_age_ok(cond.age, age), None)
    if cond.died_within is not None:
        dead = tl.patient.deceased
        return dead is not None and anchor <= dead <= anchor + cond.died_within, None
    if cond.sex is not None:
        sex = tl.patient.sex
        return (None, None) if sex is None else (sex in cond.sex, None)
    return None, None


@dataclass(slots=True)
class Match:
    """What is known about one index event while it is being evaluated."""

    index: Event
    anchor: datetime
    evidence: list[str]
    unknown: set[str] = field(default_factory=set)  # undecided exclusions: "age", "sex"


def conditions_pass(rule: Rule, scope: Scope, match: Match, outcome: Event | None = None) -> bool:
    """Requirements hold and no exclusion does, for the conditions of this stage
    (index-relative ones when ``outcome`` is None, outcome-relative ones otherwise).
    Evidence of requirements is appended to ``match.evidence``; facts that left an
    exclusion undecided to ``match.unknown``."""
    stage = outcome is not None
    evidence: list[str] = []
    for cond in rule.require:  # unknown (None) does not satisfy a requirement
        if cond.on_outcome is not stage:
            continue
        holds, ev = _condition(cond, scope, match.index, match.anchor, outcome)
        if not holds:
            return False
        if ev is not None:
            evidence.append(ev.source)
    unknown: set[str] = set()
    for cond in rule.exclude:
        if cond.on_outcome is not stage:
            continue
        holds, _ = _condition(cond, scope, match.index, match.anchor, outcome)
        if holds:
            return False
        if holds is None:  # does not exclude: a human looks rather than a case being lost
            unknown |= _unknown_facts(cond, scope.timeline, match.index)
    match.evidence += evidence
    match.unknown |= unknown
    return True


def _start(rule: Rule, scope: Scope, index: Event) -> Match | None:
    if not any(m(index) for m in rule.index):
        return None
    anchor = index.t if rule.anchor == "start" else index.stop
    match = Match(index=index, anchor=anchor, evidence=[index.source])
    return match if conditions_pass(rule, scope, match) else None


def index_matches(rule: Rule, tl: Timeline, index: Event) -> list[str] | None:
    """Does ``index`` start this rule's pattern? The evidence (index first, then what the
    index-relative ``require`` conditions matched) if the index selector matches and those
    conditions hold with no exclusion; None otherwise. Used for real-time advice, where the
    outcome or the closing of the window lies in the future."""
    match = _start(rule, Scope(tl), index)
    return None if match is None else list(dict.fromkeys(match.evidence))


@dataclass(frozen=True, slots=True)
class Hit:
    """A finding with the events it came from (for the rules API's follow-up questions)."""

    finding: Finding
    index: Event
    anchor: datetime


def hits(rule: Rule, tl: Timeline, *, as_of: datetime, scope: Scope | None = None) -> Iterator[Hit]:
    scope = scope or Scope(tl)
    for index in tl.events:
        match = _start(rule, scope, index)
        if match is None:
            continue
        done = rule.logic_type.complete(rule, scope, match, as_of=as_of)
        if done is None:
            continue
        yield Hit(_finding(rule, tl, match, done), index, match.anchor)


def evaluate_rule(rule: Rule, tl: Timeline, *, as_of: datetime | None = None) -> list[Finding]:
    """Findings of one rule for one patient."""
    return [h.finding for h in hits(rule, tl, as_of=as_of or datetime.now(UTC))]


@dataclass(frozen=True, slots=True)
class Completion:
    """A logic type's verdict that an index became a finding."""

    summary: str
    outcome: Event | None = None


def _finding(rule: Rule, tl: Timeline, match: Match, done: Completion) -> Finding:
    pid = tl.patient.id
    summary = done.summary
    extra = {
        "trigger": rule.trigger or "",
        "type": rule.type,
        "rule_version": rule.version,
        "catalogue_version": rule.catalogue_version,
        # the index time as the chart wrote it (its own UTC offset), for reviewers (issue 11)
        "index_local": match.index.local_t.isoformat(),
    }
    if match.unknown:
        facts = ", ".join(sorted(match.unknown))
        extra["unknown"] = facts
        summary += f" ({facts} unknown: an exclusion on it was not applied)"
    return Finding(
        key=finding_key(pid, rule.id, match.index),
        patient_id=pid,
        rule_id=rule.id,
        rule_title=rule.title,
        level=rule.level.name,
        index_ref=match.index.source,
        index_start=match.index.t,
        index_end=match.index.end,
        window_end=match.anchor + rule.within,
        outcome_ref=done.outcome.source if done.outcome is not None else None,
        evidence=tuple(dict.fromkeys(match.evidence)),
        summary=summary,
        extra=extra,
    )


def days_text(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:g} h" if hours <= 72 else f"{hours / 24:g} days"


def describe(e: Event) -> str:
    """One line about an event for a finding's summary."""
    when = e.t.date().isoformat()
    if e.detail is not None:
        # the principal diagnosis first (what a reviewer reads first), then by code: an order
        # every engine reproduces (a SQL engine does not keep the order Conditions were read)
        principal = set(e.detail.principal)
        shown = sorted(set(e.detail.diagnoses),
                       key=lambda c: (c not in principal, c.system, c.code))[:3]  # fmt: skip
        dx = ", ".join(c.code for c in shown)
        return f"{e.detail.setting.value} encounter on {when}" + (f" ({dx})" if dx else "")
    label = e.text or e.code
    value = f" {e.value:g}{' ' + e.unit if e.unit else ''}" if e.value is not None else ""
    return f"{e.kind.value} {label}{value} on {when}"


def evaluate(
    ruleset: RuleSet | Iterable[Rule],
    tl: Timeline,
    *,
    as_of: datetime | None = None,
    gaps: Mapping[str, DataGap] | None = None,
) -> list[Finding]:
    """Every rule over one timeline; findings ordered by index time then rule.

    ``gaps`` (:func:`plugin.rules.gaps.data_gaps` for the source): a rule the source cannot
    evaluate gives no finding; the findings of a rule with a partial gap carry
    ``extra["data_gap"]`` with the reason."""
    rules = ruleset.rules if isinstance(ruleset, RuleSet) else tuple(ruleset)
    as_of = as_of or datetime.now(UTC)
    scope = Scope(tl)
    out: list[Finding] = []
    for rule in rules:
        gap = gaps.get(rule.id) if gaps else None
        if gap is not None and not gap.evaluated:
            continue  # missing data, not missing care (issue 11)
        found = [h.finding for h in hits(rule, tl, as_of=as_of, scope=scope)]
        if gap is not None:
            for f in found:
                f.extra["data_gap"] = gap.reason
        out.extend(found)
    out.sort(key=lambda f: (f.index_start, f.rule_id))
    return out
