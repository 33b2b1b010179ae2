"""Per-resource converters: one FHIR resource (a plain dict) → timeline :class:`Event` s.

Each converter reads only what the timeline needs, through the typed accessors of
:mod:`plugin.fhir.values` (which raise :class:`Malformed` on a wrong type or a bad date), and
returns ``[]`` for resources the timeline leaves out:

* ``entered-in-error`` resources of every type; refuted Conditions; ``not-done`` Procedures;
  ``cancelled`` Observations and DiagnosticReports;
* resources with no usable time raise :class:`Untimed` (reported by the caller as skipped).

Every event's ``offset_min`` is the UTC offset written in the source value its time came
from (None for a date only; the ``--assume-tz`` zone's offset for a date-time without one).

Primary code: the first coding of the preferred system (see ``_PREFER``); every other coding of
the same CodeableConcept goes to ``alt``. Times: see :mod:`plugin.fhir.values`.

Per type (Encounter: :mod:`plugin.fhir.encounter`):

* **Condition** — time from ``onsetDateTime``, ``onsetPeriod.start``, ``recordedDate``, else the
  start of its encounter (``Condition.encounter``, or the Encounter whose ``diagnosis`` lists
  it); ``status`` is the clinical status; ``recorded`` the recorded date.
* **Observation** — time from ``effective[x]``, else ``issued`` (also ``recorded``);
  ``valueQuantity``/``valueInteger`` → ``value`` with the UCUM ``code`` as unit (else ``unit``)
  and ``comparator``; an unambiguous ``valueString`` number (``"15.2 mIU/L"``, ``"<25"``) the
  same way; a unit the UCUM reader cannot read is kept and warned (it never matches a
  threshold in another unit). Interpretation codes (v3/v2 systems) upper case; when there is
  none, a coded or string answer the ``qualitative`` table calls positive gives ``POS``, and
  negative ``NEG``; the first reference range with a low or high. ``abnormal`` / ``positive``
  and their provenance from :func:`plugin.normalize.results.judge`. Each coded ``component``
  (blood-pressure systolic/diastolic...) is one more event with the same time and source, its
  own value, unit, interpretation, range and semantics.
* **Procedure** — ``performed[x]`` (period end → ``end``), else its encounter's start.
* **DiagnosticReport** — ``effective[x]``, else ``issued``; ``conclusionCode`` codes go to ``alt``.
* **ServiceRequest** — ``authoredOn``, else ``occurrence[x]``. **MedicationRequest** —
  ``authoredOn``; code from ``medicationCodeableConcept`` or the referenced (or contained)
  Medication. **Patient** — ``deceasedDateTime`` → one ``death`` event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from plugin.errors import Untimed
from plugin.fhir.refs import ReferenceIndex
from plugin.fhir.values import (
    assumed_timezone,
    codeable_text,
    codings,
    first_code,
    number,
    obj,
    objs,
    period,
    reference,
    text,
    warn,
    when,
)
from plugin.normalize import results, units
from plugin.normalize.lookups import qualitative
from plugin.text.narrative import report_narrative
from plugin.timeline.model import Code, Event, Kind

JSON = dict[str, Any]
When = tuple[datetime, bool] | None


@dataclass(slots=True)
class Context:
    patient: str
    index: ReferenceIndex
    icu_locations: frozenset[str] = field(default_factory=frozenset)
    # "Condition/x" -> the Encounter whose diagnosis lists it (for Conditions with no encounter)
    diagnosis_of: dict[str, str] = field(default_factory=dict)


_PREFER: dict[str, tuple[str, ...]] = {
    "Condition": ("icd10", "icd9", "snomed"),
    "Observation": ("loinc", "snomed"),
    "Procedure": ("cpt", "hcpcs", "icd10pcs", "snomed", "icd9pcs"),
    "DiagnosticReport": ("loinc", "cpt", "snomed"),
    "ServiceRequest": ("cpt", "hcpcs", "loinc", "snomed"),
    "MedicationRequest": ("rxnorm",),
}
_INTERPRETATION_SYSTEMS = frozenset(
    {
        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
        "http://hl7.org/fhir/v2/0078",
        "http://terminology.hl7.org/CodeSystem/v2-0078",
    }
)
_UCUM = "http://unitsofmeasure.org"
_OFFSET = re.compile(r"T\d\d:\d\d(?::\d\d(?:\.\d+)?)?(Z|[+-]\d\d:\d\d)?$")


def source_of(r: JSON) -> str:
    return f"{r['resourceType']}/{r.get('id') or '?'}"


def primary(rtype: str, cc: JSON | None) -> tuple[Code | None, tuple[Code, ...], str | None]:
    """(primary code, other codes, display text) of a CodeableConcept."""
    found = codings(cc)
    if not found:
        return None, (), codeable_text(cc)
    best = 0
    for system in _PREFER.get(rtype, ()):
        hit = next((i for i, (c, _) in enumerate(found) if c.system == system), None)
        if hit is not None:
            best = hit
            break
    code, display = found[best]
    alt = tuple(c for i, (c, _) in enumerate(found) if i != best and c != code)
    return code, alt, display or codeable_text(cc)


def first_of(*values: When) -> When:
    return next((v for v in values if v is not None), None)


def offset_of(r: JSON, at: When, *paths: str) -> int | None:
    """The UTC offset (minutes) written in the first of ``paths`` (``"period.start"``) that
    holds a date-time; None for a date only, or when none holds one."""
    if at is None or at[1]:
        return None
    for path in paths:
        raw: Any = r
        for key in path.split("."):
            raw = raw.get(key) if isinstance(raw, dict) else None
        if isinstance(raw, str) and (m := _OFFSET.search(raw.strip())):
            if m.group(1) is None:
                tz = assumed_timezone()
                delta = at[0].astimezone(tz).utcoffset() if tz is not None else None
                return int(delta.total_seconds() // 60) if delta is not None else None
            if m.group(1) == "Z":
                return 0
            sign = -1 if m.group(1)[0] == "-" else 1
            return sign * (int(m.group(1)[1:3]) * 60 + int(m.group(1)[4:6]))
    return None


def status_of(r: JSON) -> str | None:
    return text(r, "status")


def _encounter_start(r: JSON, ctx: Context) -> tuple[str | None, When]:
    ref = reference(r, "encounter") or reference(r, "context")
    if ref is None and r.get("resourceType") == "Condition":
        ref = ctx.diagnosis_of.get(source_of(r))
    enc = ctx.index.resolve(ref, "Encounter")
    start = None
    if enc is not None:
        s, e = period(enc, "period")
        start = first_of(s, e)
    return ctx.index.canonical(ref, "Encounter"), start


def make_event(r: JSON, ctx: Context, kind: Kind, at: When, code: Code | None, **kw: Any) -> Event:
    if at is None:
        raise Untimed("no usable date")
    return Event(
        patient=ctx.patient,
        t=at[0],
        date_only=at[1],
        kind=kind,
        system=code.system if code else "",
        code=code.code if code else "",
        source=source_of(r),
        **{"status": status_of(r), **kw},
    )


def condition(r: JSON, ctx: Context) -> list[Event]:
    verification = first_code(obj(r, "verificationStatus"))
    if status_of(r) == "entered-in-error" or verification in ("entered-in-error", "refuted"):
        return []
    code, alt, label = primary("Condition", obj(r, "code"))
    onset_start, _ = period(r, "onsetPeriod")
    recorded = when(r, "recordedDate")
    encounter, enc_start = _encounter_start(r, ctx)
    at = first_of(when(r, "onsetDateTime"), onset_start, recorded, enc_start)
    offset = offset_of(r, at, "onsetDateTime", "onsetPeriod.start", "recordedDate")
    clinical = first_code(obj(r, "clinicalStatus"))
    recorded_at = recorded[0] if recorded else None
    return [
        make_event(
            r,
            ctx,
            Kind.CONDITION,
            at,
            code,
            alt=alt,
            text=label,
            encounter=encounter,
            recorded=recorded_at,
            status=clinical,
            offset_min=offset,
        )
    ]


def _interpretations(r: JSON) -> tuple[str, ...]:
    out: list[str] = []
    for cc in objs(r, "interpretation"):
        for coding in objs(cc, "coding"):
            code = text(coding, "code")
            system = text(coding, "system")
            if code and (system in _INTERPRETATION_SYSTEMS or (system is None and len(code) <= 4)):
                if code.upper() not in out:
                    out.append(code.upper())
    return tuple(out)


@dataclass(frozen=True, slots=True)
class _Value:
    value: float | None = None
    unit: str | None = None
    comparator: str | None = None
    coded: tuple[tuple[str, str], ...] = ()
    strings: tuple[str, ...] = ()


def _answer_system(system: str) -> str:
    """Short system of a qualitative answer code (v2-0078/v3 interpretation codes as values)."""
    if system.endswith(("v2-0078", "v3-ObservationInterpretation")):
        return "v2-0078"
    return system


def _value(r: JSON) -> _Value:
    """The value of an Observation (or component), as read (see the module docstring)."""
    q = obj(r, "valueQuantity")
    if q is not None:
        unit = text(q, "code") if text(q, "system") == _UCUM and text(q, "code") else None
        unit = unit or text(q, "unit") or text(q, "code")
        if unit is not None and not units.is_known(unit):
            warn("unit not readable as UCUM", unit, unit)
        return _Value(number(q, "value"), unit, text(q, "comparator"))
    if r.get("valueInteger") is not None:
        return _Value(number(r, "valueInteger"))
    cc = obj(r, "valueCodeableConcept")
    coded = tuple((_answer_system(c.system), c.code) for c, _ in codings(cc))
    strings = tuple(t for t in (codeable_text(cc), text(r, "valueString")) if t)
    string = text(r, "valueString")
    parsed = results.parse_value_string(string) if string else None
    if parsed is not None:
        return _Value(parsed[0], parsed[1], parsed[2], coded, strings)
    return _Value(coded=coded, strings=strings)


def _implied(v: _Value) -> tuple[str, ...]:
    """``POS`` / ``NEG`` implied by a qualitative answer (when there is no interpretation)."""
    meanings = [qualitative(system, code) for system, code in v.coded]
    meanings += [qualitative("text", t) for t in v.strings]
    meaning = next((m for m in meanings if m is not None), None)
    return {"positive": ("POS",), "negative": ("NEG",)}.get(meaning or "", ())


def _reference_range(r: JSON) -> tuple[float | None, float | None]:
    for rr in objs(r, "referenceRange"):
        low, high = obj(rr, "low"), obj(rr, "high")
        if low is not None or high is not None:
            return (number(low, "value") if low else None, number(high, "value") if high else None)
    return None, None


def observation(r: JSON, ctx: Context) -> list[Event]:
    if status_of(r) in ("entered-in-error", "cancelled"):
        return []
    start, _ = period(r, "effectivePeriod")
    issued = when(r, "issued")
    at = first_of(when(r, "effectiveDateTime"), when(r, "effectiveInstant"), start, issued)
    offset = offset_of(r, at, "effectiveDateTime", "effectiveInstant", "effectivePeriod.start",
                       "issued")  # fmt: skip
    encounter = ctx.index.canonical(reference(r, "encounter"), "Encounter")
    common = {
        "encounter": encounter,
        "recorded": issued[0] if issued else None,
        "offset_min": offset,
    }
    events = []
    for part in [r, *objs(r, "component")]:
        code, alt, label = primary("Observation", obj(part, "code"))
        if part is not r and code is None:
            continue
        v = _value(part)
        low, high = _reference_range(part)
        coded_interpretation = _interpretations(part)
        interpretation = coded_interpretation or _implied(v)
        judged = results.judge(
            interpretations=coded_interpretation,
            coded=v.coded,
            strings=v.strings,
            value=v.value,
            comparator=v.comparator,
            low=low,
            high=high,
        )
        events.append(
            make_event(
                r,
                ctx,
                Kind.OBSERVATION,
                at,
                code,
                alt=alt,
                text=label,
                value=v.value,
                unit=v.unit,
                comparator=v.comparator,
                interpretation=interpretation,
                ref_low=low,
                ref_high=high,
                abnormal=judged.abnormal,
                abnormal_from=judged.abnormal_from,
                positive=judged.positive,
                positive_from=judged.positive_from,
                **common,
            )
        )
    return events


def procedure(r: JSON, ctx: Context) -> list[Event]:
    if status_of(r) in ("entered-in-error", "not-done"):
        return []
    code, alt, label = primary("Procedure", obj(r, "code"))
    start, end = period(r, "performedPeriod")
    encounter, enc_start = _encounter_start(r, ctx)
    at = first_of(when(r, "performedDateTime"), start, end, enc_start)
    offset = offset_of(r, at, "performedDateTime", "performedPeriod.start", "performedPeriod.end")
    return [
        make_event(
            r,
            ctx,
            Kind.PROCEDURE,
            at,
            code,
            alt=alt,
            text=label,
            encounter=encounter,
            end=end[0] if end else None,
            offset_min=offset,
        )
    ]


def diagnostic_report(r: JSON, ctx: Context) -> list[Event]:
    if status_of(r) in ("entered-in-error", "cancelled"):
        return []
    code, alt, label = primary("DiagnosticReport", obj(r, "code"))
    conclusions = tuple(c for cc in objs(r, "conclusionCode") for c, _ in codings(cc))
    start, _ = period(r, "effectivePeriod")
    issued = when(r, "issued")
    at = first_of(when(r, "effectiveDateTime"), start, issued)
    offset = offset_of(r, at, "effectiveDateTime", "effectivePeriod.start", "issued")
    encounter = ctx.index.canonical(reference(r, "encounter"), "Encounter")
    return [
        make_event(
            r,
            ctx,
            Kind.REPORT,
            at,
            code,
            alt=alt + conclusions,
            text=label,
            narrative=report_narrative(r),  # conclusion + presentedForm text (issue 11)
            encounter=encounter,
            recorded=issued[0] if issued else None,
            offset_min=offset,
        )
    ]


def service_request(r: JSON, ctx: Context) -> list[Event]:
    if status_of(r) == "entered-in-error":
        return []
    code, alt, label = primary("ServiceRequest", obj(r, "code"))
    start, _ = period(r, "occurrencePeriod")
    at = first_of(when(r, "authoredOn"), when(r, "occurrenceDateTime"), start)
    offset = offset_of(r, at, "authoredOn", "occurrenceDateTime", "occurrencePeriod.start")
    encounter = ctx.index.canonical(reference(r, "encounter"), "Encounter")
    return [
        make_event(
            r, ctx, Kind.ORDER, at, code, alt=alt, text=label, encounter=encounter,
            offset_min=offset,
        )
    ]  # fmt: skip


def medication_request(r: JSON, ctx: Context) -> list[Event]:
    if status_of(r) == "entered-in-error":
        return []
    cc = obj(r, "medicationCodeableConcept")
    if cc is None:
        med = ctx.index.resolve(reference(r, "medicationReference"), "Medication", container=r)
        cc = obj(med, "code") if med is not None else None
    code, alt, label = primary("MedicationRequest", cc)
    encounter = ctx.index.canonical(reference(r, "encounter"), "Encounter")
    at = when(r, "authoredOn")
    return [
        make_event(
            r,
            ctx,
            Kind.MEDICATION,
            at,
            code,
            alt=alt,
            text=label,
            encounter=encounter,
            offset_min=offset_of(r, at, "authoredOn"),
        )
    ]


def patient_death(r: JSON, ctx: Context) -> list[Event]:
    at = when(r, "deceasedDateTime")
    if at is None:
        return []
    return [
        make_event(r, ctx, Kind.DEATH, at, None, offset_min=offset_of(r, at, "deceasedDateTime"))
    ]
