"""How much of a source the normalisation tables map, per field the rules read — for
``dxsafety profile`` (issue 11, item 7), so the profile never restates the mappings.

Streaming: feed timelines one by one (``Coverage.add``), read ``Coverage.fields()`` at the end.
Each :class:`FieldCoverage` gives the count of values seen, how many map, and the most common
values that do not, each with a count and one example reference (``Type/id``) to look at.

Fields (``FieldCoverage.field``):

* ``encounter.setting`` — the setting chain placed the encounter (``setting_from`` is not
  ``unknown``); unmapped value: the class code (``(no class)`` when none).
* ``encounter.admit_source`` / ``encounter.disposition`` — given values the ``admit_sources``
  / ``dispositions`` tables know (a kept-as-is admit source, a disposition that fell to
  ``other``, are unmapped).
* ``location.kind`` — transfers whose location has a kind other than ``other``; value: name.
* ``<kind>.code_system`` for condition, observation, procedure, report, order, medication —
  the primary code's system is a known short name (not ``local:…``); value: the system.
* ``observation.unit`` — numeric values whose unit the UCUM reader reads (a missing unit is
  unmapped too: it is compared as written); value: the unit.
* ``observation.result`` — observations with a value, interpretation or answer whose
  ``abnormal`` or ``positive`` is known; value: the code of the observation.
* ``threshold:<label>`` — for each :class:`ThresholdInput` given (a rule's numeric test: which
  observations it reads, in which unit), the numeric values of those observations whose unit
  converts to the threshold's unit (the others can never match); value: the unit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from plugin.normalize.lookups import molar_mass
from plugin.normalize.tables import read_table
from plugin.normalize.units import convert, to_ucum
from plugin.timeline.model import Event, Kind, Timeline

__all__ = ["Coverage", "FieldCoverage", "ThresholdInput", "field_coverage"]

_CODED = (Kind.CONDITION, Kind.OBSERVATION, Kind.PROCEDURE, Kind.REPORT, Kind.ORDER,
          Kind.MEDICATION)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldCoverage:
    field: str
    total: int
    mapped: int
    unmapped: tuple[tuple[str, int, str], ...]  # (value, count, example reference), top first

    @property
    def share(self) -> float | None:
        """Mapped share, None when the source holds no value of this field."""
        return self.mapped / self.total if self.total else None


@dataclass(frozen=True, slots=True)
class ThresholdInput:
    """One numeric test of a rule: ``label`` (e.g. ``"TR-7 > 10 mIU/L"``), ``reads`` (is this
    observation one the test reads — typically the rule selector's code check) and ``unit``."""

    label: str
    reads: Callable[[Event], bool]
    unit: str


@dataclass(slots=True)
class _Tally:
    total: int = 0
    mapped: int = 0
    misses: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, ok: bool, value: str, ref: str) -> None:
        self.total += 1
        if ok:
            self.mapped += 1
        else:
            self.misses[value] += 1
            self.examples.setdefault(value, ref)


class Coverage:
    """Accumulates per-field coverage over timelines (see the module docstring)."""

    def __init__(self, top: int = 10, thresholds: Sequence[ThresholdInput] = ()) -> None:
        self.top = top
        self.thresholds = tuple(thresholds)
        self._tallies: dict[str, _Tally] = {}
        known = {r["value"] for r in read_table("admit_sources")}
        self._admit_known = known | {r["code"] for r in read_table("admit_sources")}

    def _tally(self, name: str, ok: bool, value: str, ref: str) -> None:
        self._tallies.setdefault(name, _Tally()).add(ok, value, ref)

    def add(self, timeline: Timeline) -> None:
        for e in timeline.events:
            self.add_event(e)

    def add_event(self, e: Event) -> None:
        if e.kind is Kind.ENCOUNTER and e.detail is not None:
            d = e.detail
            self._tally("encounter.setting", d.setting_from != "unknown",
                        d.class_code or "(no class)", e.source)  # fmt: skip
            if d.admit_source is not None:
                self._tally("encounter.admit_source", d.admit_source in self._admit_known,
                            d.admit_source, e.source)  # fmt: skip
            if d.disposition is not None:
                self._tally("encounter.disposition", d.disposition != "other",
                            d.disposition, e.source)  # fmt: skip
        elif e.kind is Kind.TRANSFER:
            self._tally("location.kind", e.code != "other", e.text or "?", e.source)
        if e.kind in _CODED:
            system = e.system or "(uncoded)"
            ok = bool(e.system) and not e.system.startswith("local:")
            self._tally(f"{e.kind.value}.code_system", ok, system, e.source)
        if e.kind is Kind.OBSERVATION:
            label = f"{e.system}:{e.code}" if e.code else "(uncoded)"
            if e.value is not None:
                unit = e.unit or "(no unit)"
                self._tally("observation.unit", to_ucum(e.unit) is not None, unit, e.source)
            if e.value is not None or e.interpretation or e.positive is not None:
                known = e.abnormal is not None or e.positive is not None
                self._tally("observation.result", known, label, e.source)
            if e.value is not None:
                for th in self.thresholds:
                    if th.reads(e):
                        mm = molar_mass(e.system, e.code)
                        ok = convert(e.value, e.unit, th.unit, g_per_mol=mm) is not None
                        self._tally(f"threshold:{th.label}", ok, e.unit or "(no unit)",
                                    e.source)  # fmt: skip

    def fields(self) -> list[FieldCoverage]:
        out = []
        for name in sorted(self._tallies):
            t = self._tallies[name]
            top = tuple((v, n, t.examples[v]) for v, n in t.misses.most_common(self.top))
            out.append(FieldCoverage(field=name, total=t.total, mapped=t.mapped, unmapped=top))
        return out


def field_coverage(timelines: list[Timeline] | tuple[Timeline, ...], top: int = 10
                   ) -> list[FieldCoverage]:  # fmt: skip
    """Coverage of a few timelines in one call (tests, small sources)."""
    cov = Coverage(top)
    for tl in timelines:
        cov.add(tl)
    return cov.fields()
