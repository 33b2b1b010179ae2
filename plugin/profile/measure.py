"""``dxsafety profile``: what a site runs before trusting a scan (issue 11 item 7).

Read through the one population pipeline, the profile gives, for every field the rules read,
the share that maps to the timeline's vocabulary with the top unmapped values (count, example
reference) — the mapping fields come from :class:`plugin.normalize.coverage.Coverage`, so the
profile never restates a mapping; report text (a readable narrative for the text matcher) is
measured here — records per kind per year (a kind held only for some periods shows), and per
rule which inputs the source lacks and whether the rule can be evaluated
(:func:`plugin.rules.data_gaps`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from plugin.fhir.read import ReadReport
from plugin.normalize.coverage import Coverage
from plugin.rules import RuleSet, data_gaps
from plugin.scan import kinds_present
from plugin.timeline.model import Event, Kind, Timeline

TOP = 10
REPORT_TEXT = "report.text"


@dataclass(slots=True)
class Field:
    """One field the rules read: how many records have it mapped, and the top unmapped."""

    name: str
    total: int = 0
    mapped: int = 0
    unmapped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # unmapped value -> a reference

    def add(self, ok: bool, value: str, ref: str) -> None:
        self.total += 1
        if ok:
            self.mapped += 1
            return
        self.unmapped[value] += 1
        self.examples.setdefault(value, ref)

    @property
    def share(self) -> float | None:
        return self.mapped / self.total if self.total else None

    def as_json(self) -> dict[str, Any]:
        return {
            "field": self.name,
            "total": self.total,
            "mapped": self.mapped,
            "share": None if self.share is None else round(self.share, 4),
            "top_unmapped": [
                {"value": v, "count": n, "example": self.examples[v]}
                for v, n in self.unmapped.most_common(TOP)
            ],
        }


@dataclass(slots=True)
class Profile:
    source: str
    patients: int = 0
    resources: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    fields: dict[str, Field] = field(default_factory=dict)
    by_year: dict[str, Counter[int]] = field(default_factory=dict)  # kind -> year -> records
    rules: list[dict[str, Any]] = field(default_factory=list)

    def partial_periods(self, min_records: int = 20) -> dict[str, list[int]]:
        """Kind -> the busy years in which the source holds none of this kind although it
        usually holds it (a median of at least ``min_records / 2`` a year in the years it
        does): a kind held only for some periods (an interface switched on late, a feed that
        stopped). A busy year holds ``min_records`` records of at least half the kinds;
        deaths are rare anyway and left out."""
        kinds = [k for k in self.by_year if k != Kind.DEATH.value]
        totals: Counter[int] = Counter()
        spread: Counter[int] = Counter()  # kinds present per year
        for kind in kinds:
            totals.update(self.by_year[kind])
            spread.update(self.by_year[kind].keys())
        # a busy year holds enough records of at least half the kinds: back-dated condition
        # onsets alone (a problem list reaching years before the first visit) are not one
        busy = sorted(
            y for y, n in totals.items() if n >= min_records and 2 * spread[y] >= len(kinds)
        )
        out: dict[str, list[int]] = {}
        for kind, counts in sorted(self.by_year.items()):
            held = sorted(counts[y] for y in busy if counts.get(y))
            # a kind that is rare anyway (deaths) says nothing by being absent for a year
            if kind == Kind.DEATH.value or not held or held[len(held) // 2] < min_records // 2:
                continue
            gaps = [y for y in busy if not counts.get(y)]
            if gaps:
                out[kind] = gaps
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "patients": self.patients,
            "resources": dict(sorted(self.resources.items())),
            "skipped": self.skipped,
            "fields": [f.as_json() for f in self.fields.values()],
            "records_by_year": {
                k: {str(y): n for y, n in sorted(c.items())}
                for k, c in sorted(self.by_year.items())
            },
            "partial_periods": self.partial_periods(),
            "rules": self.rules,
        }


def _observe(p: Profile, text: Field, e: Event) -> None:
    if e.kind is Kind.REPORT:
        label = f"{e.system}:{e.code}" if e.code else (e.text or "(uncoded)")
        text.add(e.narrative is not None, label, e.source)
    p.by_year.setdefault(e.kind.value, Counter())[e.t.year] += 1


def _fields(coverage: Coverage, text: Field) -> dict[str, Field]:
    out: dict[str, Field] = {}
    for fc in coverage.fields():
        f = Field(fc.field, fc.total, fc.mapped)
        for value, n, example in fc.unmapped:
            f.unmapped[value] = n
            f.examples[value] = example
        out[fc.field] = f
    if text.total:
        out[REPORT_TEXT] = text
    return dict(sorted(out.items()))


def _rule_rows(ruleset: RuleSet, p: Profile) -> list[dict[str, Any]]:
    present = kinds_present(p.resources)
    gaps = data_gaps(ruleset, present)
    counts = Counter({k: sum(p.by_year.get(k.value, Counter()).values()) for k in Kind})
    rows = []
    for rule in ruleset.rules:
        kinds = {k for m in rule.index for k in m.kinds}
        for matchers in rule.parts.values():
            kinds |= {k for m in matchers for k in m.kinds}
        missing = sorted(k.value for k in kinds if counts[k] == 0)
        gap = gaps.get(rule.id)
        rows.append(
            {
                "rule_id": rule.id,
                "trigger": rule.trigger,
                "title": rule.title,
                "inputs": {k.value: counts[k] for k in sorted(kinds)},
                "missing": missing,
                "evaluated": gap is None or gap.evaluated,
                "data_gap": gap.reason if gap is not None else None,
            }
        )
    return rows


def build_profile(
    timelines: Iterable[Timeline], ruleset: RuleSet, report: ReadReport, *, source: str = ""
) -> Profile:
    """The profile of a population (``report`` is the read report the timelines came with)."""
    p = Profile(source=source)
    coverage = Coverage(TOP)
    text = Field(REPORT_TEXT)
    for tl in timelines:
        p.patients += 1
        coverage.add(tl)
        for e in tl.events:
            _observe(p, text, e)
    p.fields = _fields(coverage, text)
    p.resources = Counter(report.resources)
    p.skipped = report.skipped
    p.rules = _rule_rows(ruleset, p)
    return p
