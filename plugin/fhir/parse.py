"""All the resources of one patient → that patient's :class:`Timeline`.

``timeline_from_resources(resources, validate="fast")`` is the only entry point rules and the
ranker need: it validates (see :mod:`plugin.fhir.validate`), resolves references between the
resources (:mod:`plugin.fhir.refs`: ``Type/id``, ``urn:uuid:``, conditional references),
converts each resource (:mod:`plugin.fhir.convert`, :mod:`plugin.fhir.encounter`) and
assembles the timeline (:func:`plugin.timeline.build.build_timeline`).

Resources it cannot use are skipped, never fatal: pass ``errors=[]`` to receive one
:class:`FhirParseError` per skipped resource (``where`` is ``Type/id``; the file and line are
known to the reader, see :mod:`plugin.fhir.stage`). Values read anyway with a caveat (a
placeholder date read as unknown, an end before its start, a date-time without an offset) are
kept and, with ``warnings=[]``, reported there the same way, once per resource and value.

CAUTION — times are normalised to UTC; date-only and partial dates become midnight UTC with
``date_only=True`` (details in :mod:`plugin.fhir.values`). Each event keeps the UTC offset its
time was written with (``Event.offset_min``; None for date-only values and for values without
an offset read as UTC), for output in the chart's local time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from datetime import date, datetime
from typing import Any

import orjson

from plugin.errors import FhirParseError
from plugin.fhir import resource_types
from plugin.fhir.convert import Context, source_of
from plugin.fhir.encounter import is_icu_encounter
from plugin.fhir.refs import ReferenceIndex
from plugin.fhir.validate import Mode, check_full
from plugin.fhir.values import (
    Malformed,
    Note,
    collecting,
    local_offsets,
    reference,
    text,
    when,
)
from plugin.timeline.build import build_timeline
from plugin.timeline.model import Event, PatientInfo, Timeline

__all__ = [
    "TIMELINE_TYPES",
    "patient_info",
    "resource_events",
    "timeline_from_resources",
]

JSON = dict[str, Any]
# Both from the one table of types (plugin/fhir/resource_types.py).
CONVERTERS: dict[str, resource_types.Converter] = resource_types.converters()
TIMELINE_TYPES: frozenset[str] = resource_types.timeline_types()  # what staging keeps


def timeline_from_resources(
    resources: Iterable[JSON],
    *,
    validate: Mode = "fast",
    errors: list[FhirParseError] | None = None,
    patient_id: str | None = None,
    warnings: list[FhirParseError] | None = None,
) -> Timeline:
    """Build one patient's timeline. ``patient_id`` defaults to the Patient resource's id, or
    to the patient most resources refer to."""
    accepted: list[JSON] = []
    for r in resources:
        if validate == "full":
            reason = check_full(r)
            if reason is not None:
                _report(errors, r, reason)
                continue
        accepted.append(r)
    index = ReferenceIndex(accepted)
    patient_res = next((r for r in accepted if r.get("resourceType") == "Patient"), None)
    pid = patient_id or _patient_id(accepted, patient_res)
    info = PatientInfo(id=pid)
    if patient_res is not None:
        try:
            with collecting() as notes:
                info = patient_info(patient_res, pid)
            _warn(warnings, patient_res, notes)
        except Malformed as exc:
            _report(errors, patient_res, f"malformed: {exc}")
            accepted = [r for r in accepted if r is not patient_res]
    ctx = Context(
        patient=pid,
        index=index,
        icu_locations=_icu_locations(accepted, index),
        diagnosis_of=_diagnosis_of(accepted, index),
    )
    events: list[Event] = []
    for r in accepted:
        try:
            with collecting() as notes, local_offsets() as offsets:
                produced = resource_events(r, ctx)
            events.extend(_with_offsets(produced, offsets) if offsets else produced)
        except Malformed as exc:
            _report(errors, r, str(exc) if "date" in str(exc) else f"malformed: {exc}")
        else:
            _warn(warnings, r, notes)
    return build_timeline(info, events)


def resource_events(resource: JSON, ctx: Context) -> list[Event]:
    """The events of one resource (``[]`` for types the timeline does not read).
    Raises :class:`Malformed` (or its subclass ``Untimed``)."""
    converter = CONVERTERS.get(resource.get("resourceType", ""))
    return converter(resource, ctx) if converter is not None else []


def patient_info(r: JSON, pid: str) -> PatientInfo:
    birth = when(r, "birthDate")  # a placeholder (0001-01-01) reads as unknown, warned
    deceased = when(r, "deceasedDateTime")
    birth_date: date | None = birth[0].date() if birth else None
    return PatientInfo(
        id=pid,
        birth_date=birth_date,
        sex=text(r, "gender"),
        deceased=deceased[0] if deceased else None,
    )


def _patient_id(resources: list[JSON], patient: JSON | None) -> str:
    if patient is not None and isinstance(patient.get("id"), str):
        return str(patient["id"])
    votes: Counter[str] = Counter()
    for r in resources:
        for key in ("subject", "patient"):
            try:
                ref = reference(r, key)
            except Malformed:
                continue
            if (ref and "Patient" in ref) or (ref and ref.startswith("urn:uuid:")):
                votes[ref.rsplit("/", 1)[-1].rsplit(":", 1)[-1]] += 1
    return votes.most_common(1)[0][0] if votes else "?"


def _icu_locations(resources: list[JSON], index: ReferenceIndex) -> frozenset[str]:
    """Locations used by ICU encounters are ICU locations (MIMIC ships no Location resources)."""
    found = set()
    for r in resources:
        if r.get("resourceType") != "Encounter":
            continue
        try:
            if not is_icu_encounter(r):
                continue
        except Malformed:
            continue
        for entry in r.get("location") or []:
            ref = entry.get("location", {}).get("reference") if isinstance(entry, dict) else None
            if isinstance(ref, str):
                canonical = index.canonical(ref, "Location")
                if canonical:
                    found.add(canonical)
    return frozenset(found)


def _diagnosis_of(resources: list[JSON], index: ReferenceIndex) -> dict[str, str]:
    """``Condition/x`` → ``Encounter/y`` for Conditions listed in ``Encounter.diagnosis``, so a
    Condition with neither a date nor ``Condition.encounter`` takes its encounter's time."""
    found: dict[str, str] = {}
    for r in resources:
        if r.get("resourceType") != "Encounter" or not isinstance(r.get("diagnosis"), list):
            continue
        for d in r["diagnosis"]:
            cond = d.get("condition") if isinstance(d, dict) else None
            ref = cond.get("reference") if isinstance(cond, dict) else None
            canonical = index.canonical(ref, "Condition") if isinstance(ref, str) else None
            if canonical:
                found.setdefault(canonical, f"Encounter/{r.get('id')}")
    return found


def _with_offsets(events: list[Event], offsets: dict[datetime, int]) -> list[Event]:
    """Each event with the UTC offset its time was written with in the chart (``offset_min``),
    so that reviewers see the chart's local time, not UTC."""
    return [
        replace(e, offset_min=offsets[e.t]) if e.offset_min is None and e.t in offsets else e
        for e in events
    ]


def _warn(warnings: list[FhirParseError] | None, r: JSON, notes: list[Note]) -> None:
    """Report the notes about ``r``'s own values, each once. Converting ``r`` also reads
    other resources' dates (a Condition takes its Encounter's start): those notes belong to
    the other resource, which reports them when it is converted."""
    if warnings is None or not notes:
        return
    try:
        own = orjson.dumps(r)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes: keep every note
        own = b""
    rid = r.get("id") if isinstance(r.get("id"), str) else None
    for note in dict.fromkeys(notes):
        if not own or orjson.dumps(note.value) in own:
            what = f"{note.reason}: {note.detail}"
            warnings.append(FhirParseError(source_of(r), what, r.get("resourceType"), rid))


def _report(errors: list[FhirParseError] | None, r: JSON, reason: str) -> None:
    if errors is not None:
        rid = r.get("id") if isinstance(r.get("id"), str) else None
        errors.append(FhirParseError(source_of(r), reason, r.get("resourceType"), rid))
