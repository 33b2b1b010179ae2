"""The CDS fast path: skip the Observations no rule can read before building the timeline.

Observations are most of a prefetch (vital signs, routine labs: 468 of the bench's 500
resources) and most of the timeline's build time. The rules read events only through their
compiled selectors (``index``, conditions, ``expect_any``, outcomes). When every selector
that can match an observation names codes (``codes:``), an Observation none of whose codes
(its own and its components') is in the union of those code sets yields only events that no
selector accepts: such events never start, require, exclude, close or become evidence of a
finding, and the engine's time windows select by time, so the other events it sees are the
same. Dropping them before the timeline is built gives the same findings and cards.

:func:`read_plan` decides this once per rule set (None: some observation selector has no
code list, so nothing is skipped). The codes are read as :func:`plugin.fhir.values.codings`
reads them and normalised by the same function (:func:`plugin.timeline.codes.normalise`), so
they are ``Event.codes``. An Observation whose code is malformed is kept: the converter
reports it.

The skipped events are missing only from the timeline the rules see. The worklist case
snapshot, which shows reviewers every event around the index, is built (after the reply, when
a call has findings) from a timeline that also has the skipped Observations dated near the
findings (:meth:`ReadPlan.around`, :meth:`plugin.cds.advice.Advice.snapshot_timeline`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from plugin.fhir.resource_types import TYPES
from plugin.fhir.values import Malformed, period, when
from plugin.rules import Rule
from plugin.rules.codesets import CodeSet
from plugin.rules.schema import Selector
from plugin.rules.selectors import resolve_codes
from plugin.timeline.codes import normalise
from plugin.timeline.model import Finding, Kind
from plugin.worklist.snapshot import LOOK_AHEAD, LOOK_BACK

__all__ = ["ReadPlan", "read_plan", "selectors"]

JSON = dict[str, Any]
_MAX_SEEN = 50_000
_SLACK = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """Which Observations the rules can read: those with a code in ``observation_codes``."""

    observation_codes: CodeSet
    # (system, code) as written -> is its normalised code in the set. Codes repeat across
    # a record (every heart rate is LOINC 8867-4), so most lookups skip normalising.
    _seen: dict[tuple[str | None, str], bool] = field(default_factory=dict, compare=False)

    def keep(self, resource: JSON) -> bool:
        """False only for an Observation whose codes all lie outside the set. Reads the
        codings as :func:`plugin.fhir.values.codings` does (a coding without a code is
        skipped); any shape that function would reject keeps the resource."""
        if resource.get("resourceType") != "Observation":
            return True
        parts = resource.get("component")
        if parts is None:
            parts = (resource,)
        elif isinstance(parts, list):
            parts = [resource, *parts]
        else:
            return True
        for part in parts:
            if not isinstance(part, dict):
                return True
            cc = part.get("code")
            if cc is None:
                continue
            if not isinstance(cc, dict):
                return True
            found = cc.get("coding")
            if found is None:
                continue
            if not isinstance(found, list):
                return True
            for coding in found:
                if not isinstance(coding, dict):
                    return True
                code, system = coding.get("code"), coding.get("system")
                display = coding.get("display")
                if not isinstance(code, str | None) or not isinstance(system, str | None):
                    return True
                if not code:
                    continue
                if not isinstance(display, str | None):
                    return True
                if self._wanted(system, code):
                    return True
        return False

    def _wanted(self, system: str | None, code: str) -> bool:
        hit = self._seen.get((system, code))
        if hit is None:
            hit = normalise(system, code) in self.observation_codes
            if len(self._seen) >= _MAX_SEEN:  # bounded: codes are few, but never trust input
                self._seen.clear()
            self._seen[(system, code)] = hit
        return hit

    def relevant(self, resources: Iterable[JSON]) -> list[JSON]:
        return [r for r in resources if self.keep(r)]

    def around(self, resources: Iterable[JSON], findings: Sequence[Finding]) -> list[JSON]:
        """What the worklist snapshots of ``findings`` show: the resources the rules read,
        plus the skipped Observations that may be dated within a snapshot's window
        (:func:`plugin.worklist.snapshot.snapshot`; a day wider on each side, for offsets
        read in another zone). Snapshots of the timeline of these equal those of the
        timeline of every resource, at a fraction of the cost."""
        windows = [
            (
                f.index_start - LOOK_BACK - _SLACK,
                max(f.window_end, f.index_end or f.index_start) + LOOK_AHEAD + _SLACK,
            )
            for f in findings
        ]
        return [r for r in resources if self.keep(r) or _maybe_within(r, windows)]


def _maybe_within(r: JSON, windows: Sequence[tuple[datetime, datetime]]) -> bool:
    """Might this Observation's event time lie in one of ``windows``? Every date the
    converter may take it from is tried; a resource without a readable one is kept."""
    if not windows:
        return False
    try:
        start, _ = period(r, "effectivePeriod")
        issued = when(r, "issued")
        dates = (when(r, "effectiveDateTime"), when(r, "effectiveInstant"), start, issued)
        times = [t[0] for t in dates if t is not None]
    except Malformed:
        return True
    if not times:
        return True
    return any(lo <= t <= hi for t in times for lo, hi in windows)


def selectors(node: Any) -> Iterable[Selector]:
    """Every event selector in a rule's spec (index, conditions, logic types' own)."""
    if isinstance(node, Selector):
        yield node
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from selectors(getattr(node, name))
    elif isinstance(node, list | tuple):
        for item in node:
            yield from selectors(item)
    elif isinstance(node, dict):
        for item in node.values():
            yield from selectors(item)


def read_plan(rules: Sequence[Rule], valuesets: Mapping[str, CodeSet]) -> ReadPlan | None:
    """The plan for ``rules``; None when Observations cannot be skipped safely."""
    # Only the Observation type yields observation events, and only those (the type table).
    yielding = [t.name for t in TYPES if Kind.OBSERVATION in t.kinds]
    observation_type = next((t for t in TYPES if t.name == "Observation"), None)
    if yielding != ["Observation"] or observation_type is None:
        return None
    if set(observation_type.kinds) != {Kind.OBSERVATION}:
        return None
    codes = CodeSet()
    for rule in rules:
        for sel in selectors(rule.spec):
            kinds = sel.kind if isinstance(sel.kind, list) else [sel.kind]
            if Kind.OBSERVATION.value not in kinds:
                continue
            if not sel.codes:  # matches observations by value or flag alone
                return None
            try:
                codes.update(resolve_codes(sel.codes, valuesets))
            except KeyError:  # a value set we were not given: read everything
                return None
    return ReadPlan(codes)
