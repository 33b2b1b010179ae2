"""Assemble a :class:`Timeline` from events: sort, link conditions, derive ``released``.

The same derivations run whether the events come from FHIR (:mod:`plugin.fhir.parse`) or from a
rule test's inline events (:func:`plugin.timeline.spec.timeline_from_spec`, which imports this
module, never the reverse), so a rule means the same in both.

* **Order**: events are sorted by ``(t, kind, source)`` (then system and code, so that
  components of one Observation have a stable order).
* **Condition → encounter**: every Condition event that names an encounter (``Event.encounter``)
  adds its codes (primary and ``alt``) to that encounter's ``diagnoses``. FHIR: a Condition with
  ``Condition.encounter`` — encounter diagnoses and problems recorded at that visit alike. Which
  Condition gave which code is kept in ``EncounterDetail.linked``, so that
  :meth:`Timeline.until` can take back the codes of Conditions recorded later.
* **released** (treat-and-release): an ED or AMB encounter is released when

  - its disposition is not ``admitted``, ``expired`` or ``transfer``, and
  - no IP, OBS or ICU encounter of the patient overlaps the window from its start to 24 h after
    its end (an admission starting during the visit or within 24 h after it; or one already
    under way), and
  - it is not the ``part_of`` parent of an IP, OBS or ICU encounter.

  Every other encounter has ``released=False``; a value given by the caller is overwritten.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import timedelta

from plugin.timeline.model import Code, Event, Kind, PatientInfo, Setting, Timeline

__all__ = ["RELEASE_GAP", "build_timeline"]

RELEASE_GAP = timedelta(hours=24)
_RELEASABLE = frozenset({Setting.ED, Setting.AMB})
_ADMISSION = frozenset({Setting.IP, Setting.OBS, Setting.ICU})
_NOT_RELEASED_DISPOSITIONS = frozenset({"admitted", "expired", "transfer"})


def build_timeline(patient: PatientInfo, events: Iterable[Event]) -> Timeline:
    evs = _link_conditions(list(events))
    evs = _derive_released(evs)
    evs.sort(key=lambda e: (e.t, e.kind.value, e.source, e.system, e.code))
    return Timeline(patient=patient, events=tuple(evs))


def _link_conditions(events: list[Event]) -> list[Event]:
    linked: dict[str, list[tuple[str, Code]]] = {}
    for e in events:
        if e.kind is Kind.CONDITION and e.encounter:
            linked.setdefault(e.encounter, []).extend((e.source, c) for c in e.codes)
    if not linked:
        return events
    out = []
    for e in events:
        extra = linked.get(e.source) if e.kind is Kind.ENCOUNTER and e.detail else None
        if extra and e.detail is not None:
            merged = tuple(dict.fromkeys((*e.detail.diagnoses, *(c for _, c in extra))))
            links = tuple(dict.fromkeys((*e.detail.linked, *extra)))
            e = replace(e, detail=replace(e.detail, diagnoses=merged, linked=links))
        out.append(e)
    return out


def _derive_released(events: list[Event]) -> list[Event]:
    encounters = [e for e in events if e.kind is Kind.ENCOUNTER and e.detail is not None]
    admissions = [e for e in encounters if e.detail and e.detail.setting in _ADMISSION]
    parents = {e.detail.part_of for e in admissions if e.detail and e.detail.part_of}
    out = []
    for e in events:
        if e.kind is Kind.ENCOUNTER and e.detail is not None:
            released = _is_released(e, admissions, parents)
            if released != e.detail.released:
                e = replace(e, detail=replace(e.detail, released=released))
        out.append(e)
    return out


def _is_released(e: Event, admissions: list[Event], parents: set[str]) -> bool:
    detail = e.detail
    if detail is None or detail.setting not in _RELEASABLE:
        return False
    if detail.disposition in _NOT_RELEASED_DISPOSITIONS or e.source in parents:
        return False
    horizon = e.stop + RELEASE_GAP
    return not any(a.source != e.source and a.t <= horizon and a.stop >= e.t for a in admissions)
