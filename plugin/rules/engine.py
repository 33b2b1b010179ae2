"""Rule semantics: one evaluation per (rule, patient timeline), shared by scan and CDS.

Windows (also in ``rules/README.md``): a sequence outcome counts when
``anchor < t <= anchor + within`` (end inclusive, anchor excluded); an absence
follow-up closes the loop when ``anchor <= t <= anchor + within``. Condition windows
``between: [a, b]`` are inclusive at both ends, relative to the anchor. Times are UTC
elapsed time. An absence rule fires only once its window has closed by ``as_of``.
The index event itself never satisfies its own outcome, follow-up or conditions.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from plugin.rules.schema import AgeBounds, Level, RuleSpec, Status
from plugin.rules.selectors import Matcher
from plugin.timeline.model import Event, Finding, Timeline


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
    """A loaded, compiled rule. ``spec`` keeps every metadata field of the file."""

    spec: RuleSpec
    path: str
    index: tuple[Matcher, ...]
    outcome: tuple[Matcher, ...] = ()  # sequence
    expect_any: tuple[Matcher, ...] = ()  # absence
    require: tuple[CompiledCondition, ...] = ()
    exclude: tuple[CompiledCondition, ...] = ()

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
        return self.spec.logic.type

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
    def published(self) -> object:
        return self.spec.published

    @property
    def trigger(self) -> str | None:
        """The catalogue id from the ``trigger.xx-n`` tag, upper case (``SP-1``)."""
        for tag in self.spec.tags:
            if tag.startswith("trigger."):
                return tag.split(".", 1)[1].upper()
        return None


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[Rule, ...]
    source: str = ""
    valuesets: dict[str, object] = field(default_factory=dict)

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


class _Index:
    """Events plus their times, for window lookups by bisection."""

    __slots__ = ("events", "times")

    def __init__(self, events: Sequence[Event]):
        self.events = events
        self.times = [e.t for e in events]

    def between(self, lo: datetime, hi: datetime, *, lo_open: bool = False) -> Sequence[Event]:
        start = bisect_right(self.times, lo) if lo_open else bisect_left(self.times, lo)
        return self.events[start : bisect_right(self.times, hi)]


def _first(matchers: Iterable[Matcher], events: Iterable[Event], skip: Event) -> Event | None:
    ms = tuple(matchers)
    for e in events:
        if e is skip or (e.source == skip.source and e.kind is skip.kind):
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


def _condition(
    cond: CompiledCondition,
    tl: Timeline,
    idx: _Index,
    index: Event,
    anchor: datetime,
    outcome: Event | None = None,
) -> tuple[bool | None, Event | None]:
    """(holds, evidence). ``holds`` is None when it cannot be decided (unknown age/sex)."""
    if cond.any:
        results = [_condition(c, tl, idx, index, anchor, outcome) for c in cond.any]
        first = next((r for r in results if r[0]), None)
        if first is not None:
            return first
        return (None, None) if any(r[0] is None for r in results) else (False, None)
    if cond.relative_to == "outcome":
        if outcome is None:
            return None, None
        anchor = outcome.t
    if cond.matcher is not None:
        if cond.between is not None:
            candidates: Iterable[Event] = idx.between(
                anchor + cond.between[0], anchor + cond.between[1]
            )
        else:
            candidates = tl.events
        if cond.same_encounter:
            candidates = [e for e in candidates if _in_encounter(e, index)]
        if cond.before_outcome:
            if outcome is None:
                return None, None
            candidates = [e for e in candidates if e.t < outcome.t]
        hit = _first((cond.matcher,), candidates, index)
        if hit is not None and outcome is not None and hit is outcome:
            hit = None
        return hit is not None, hit
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


def _conditions_pass(
    rule: Rule,
    tl: Timeline,
    idx: _Index,
    index: Event,
    anchor: datetime,
    outcome: Event | None,
    evidence: list[str],
) -> bool:
    """Requirements hold and no exclusion does, for the conditions of this stage
    (index-relative ones when ``outcome`` is None, outcome-relative ones otherwise)."""
    stage = outcome is not None
    for cond in rule.require:  # unknown (None) does not satisfy a requirement
        if cond.on_outcome is not stage:
            continue
        holds, ev = _condition(cond, tl, idx, index, anchor, outcome)
        if not holds:
            return False
        if ev is not None:
            evidence.append(ev.source)
    # unknown (None) does not exclude: a human looks rather than a case being lost
    return not any(
        _condition(c, tl, idx, index, anchor, outcome)[0]
        for c in rule.exclude
        if c.on_outcome is stage
    )


def index_matches(rule: Rule, tl: Timeline, index: Event) -> list[str] | None:
    """Does ``index`` start this rule's pattern? The evidence (index first, then what the
    index-relative ``require`` conditions matched) if the index selector matches and those
    conditions hold with no exclusion; None otherwise. Used for real-time advice, where the
    outcome or the closing of the window lies in the future."""
    if not any(m(index) for m in rule.index):
        return None
    anchor = index.t if rule.anchor == "start" else index.stop
    evidence = [index.source]
    if not _conditions_pass(rule, tl, _Index(tl.events), index, anchor, None, evidence):
        return None
    return list(dict.fromkeys(evidence))


def evaluate_rule(rule: Rule, tl: Timeline, *, as_of: datetime | None = None) -> list[Finding]:
    """Findings of one rule for one patient."""
    as_of = as_of or datetime.now(UTC)
    idx = _Index(tl.events)
    within = rule.within
    findings: list[Finding] = []
    for index in tl.events:
        if not any(m(index) for m in rule.index):
            continue
        anchor = index.t if rule.anchor == "start" else index.stop
        evidence = [index.source]
        if not _conditions_pass(rule, tl, idx, index, anchor, None, evidence):
            continue
        outcome: Event | None = None
        if rule.type == "sequence":
            window = idx.between(anchor, anchor + within, lo_open=True)
            for candidate in window:
                if candidate is index or not any(m(candidate) for m in rule.outcome):
                    continue
                if candidate.source == index.source and candidate.kind is index.kind:
                    continue
                extra: list[str] = []
                if _conditions_pass(rule, tl, idx, index, anchor, candidate, extra):
                    outcome = candidate
                    evidence += [candidate.source, *extra]
                    break
            if outcome is None:
                continue
        else:
            if anchor + within > as_of:
                continue  # window still open
            closed = any(
                _first((m,), idx.between(anchor, anchor + (m.within or within)), index)
                for m in rule.expect_any
            )
            if closed:
                continue
        findings.append(_finding(rule, tl, index, anchor, outcome, evidence))
    return findings


def _finding(
    rule: Rule,
    tl: Timeline,
    index: Event,
    anchor: datetime,
    outcome: Event | None,
    evidence: list[str],
) -> Finding:
    pid = tl.patient.id
    what = _describe(index)
    if outcome is not None:
        days = (outcome.t - anchor).total_seconds() / 86400
        summary = f"{what}, then {_describe(outcome)} after {days:.1f} d"
    else:
        summary = f"{what} with no expected follow-up in {_days(rule.within)}"
    return Finding(
        key=finding_key(pid, rule.id, index),
        patient_id=pid,
        rule_id=rule.id,
        rule_title=rule.title,
        level=rule.level.name,
        index_ref=index.source,
        index_start=index.t,
        index_end=index.end,
        window_end=anchor + rule.within,
        outcome_ref=outcome.source if outcome is not None else None,
        evidence=tuple(dict.fromkeys(evidence)),
        summary=summary,
        extra={"trigger": rule.trigger or "", "type": rule.type},
    )


def _days(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:g} h" if hours <= 72 else f"{hours / 24:g} days"


def _describe(e: Event) -> str:
    when = e.t.date().isoformat()
    if e.detail is not None:
        dx = ", ".join(c.code for c in e.detail.diagnoses[:3])
        return f"{e.detail.setting.value} encounter on {when}" + (f" ({dx})" if dx else "")
    label = e.text or e.code
    value = f" {e.value:g}{' ' + e.unit if e.unit else ''}" if e.value is not None else ""
    return f"{e.kind.value} {label}{value} on {when}"


def evaluate(
    ruleset: RuleSet | Iterable[Rule], tl: Timeline, *, as_of: datetime | None = None
) -> list[Finding]:
    """Every rule over one timeline; findings ordered by index time then rule."""
    rules = ruleset.rules if isinstance(ruleset, RuleSet) else tuple(ruleset)
    out: list[Finding] = []
    for rule in rules:
        out.extend(evaluate_rule(rule, tl, as_of=as_of))
    out.sort(key=lambda f: (f.index_start, f.rule_id))
    return out
