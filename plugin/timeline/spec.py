"""Timelines from the compact inline format of rule test cases (``rules/README.md``).

``timeline_from_spec({"patient": {...}, "events": [...]})``::

    patient: {id: p1, birth_date: 1950-04-01, sex: female, deceased: 40d}   # all optional
    events:
      - {t: 0d, kind: encounter, setting: ED, end: 4h, disposition: home, diagnosis: [icd10:R42]}
      - {t: 12d, kind: encounter, setting: IP, end: 3d, diagnosis: [icd10:I63.9], planned: false}
      - {t: 2d, kind: observation, code: loinc:29771-3, interpretation: [POS], value: 7.1 %}
      - {t: 30d, kind: procedure, code: cpt:45378}

* ``t``: an offset from 2025-01-01T00:00Z (``0d``, ``-30d``, ``36h``, ``90m``, ``2w``, ``1y`` =
  365 d) or an ISO date/datetime (see :mod:`plugin.fhir.values` for date-only handling);
  ``end``: an offset from ``t`` (or an ISO datetime).
* ``kind``: defaults to ``encounter`` when ``setting`` is given, else ``condition``.
* ``code`` / ``codes``: ``system:code`` strings; the first is the primary code, the rest ``alt``.
  Encounters take their primary code from ``setting`` and ``codes`` as ``alt``.
* Encounter keys: ``setting``, ``disposition``, ``admit_source``, ``diagnosis`` (list),
  ``principal`` (list: the principal diagnosis's codes; they count as diagnoses too),
  ``planned``, ``icu`` (adds an ICU location stay), ``part_of`` (an event ``id``),
  ``class_code``. ``released`` is derived, never written.
* Any event: ``id`` (source becomes ``Kind/id``, default ``<Kind>/e<n>``), ``encounter`` (an event
  ``id``), ``status``, ``value`` (``7.1``, ``"7.1 %"`` or with a comparator ``"<25 ng/mL"``),
  ``unit``, ``comparator``, ``interpretation``, ``ref_low``, ``ref_high``, ``text``, ``answer``
  (a qualitative answer: a ``system:code`` such as ``snomed:10828004`` or a string such as
  ``Detected``). ``abnormal`` / ``positive`` are derived from these exactly as from FHIR
  (:func:`plugin.normalize.results.judge`), never written.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from plugin.errors import TimelineSpecError
from plugin.normalize.lookups import qualitative
from plugin.normalize.results import judge, parse_value_string
from plugin.timeline.build import build_timeline
from plugin.timeline.codes import parse_code
from plugin.timeline.model import (
    Code,
    EncounterDetail,
    Event,
    Kind,
    LocationStay,
    PatientInfo,
    Setting,
    Timeline,
)

EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
_OFFSET = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)\s*([smhdwy])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_SOURCE_TYPE = {
    Kind.ENCOUNTER: "Encounter",
    Kind.CONDITION: "Condition",
    Kind.OBSERVATION: "Observation",
    Kind.PROCEDURE: "Procedure",
    Kind.REPORT: "DiagnosticReport",
    Kind.ORDER: "ServiceRequest",
    Kind.MEDICATION: "MedicationRequest",
    Kind.DEATH: "Patient",
    Kind.TRANSFER: "Encounter",
}
_EVENT_KEYS = frozenset(
    """t end kind setting code codes disposition admit_source diagnosis principal planned icu
    part_of class_code id encounter status value unit interpretation ref_low ref_high
    text comparator answer""".split()
)


def parse_offset(value: object, base: datetime = EPOCH) -> tuple[datetime, bool]:
    """An offset (``12d``) from ``base`` or an ISO date/datetime → (UTC datetime, date_only)."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC), False
    if hasattr(value, "isoformat") and not isinstance(value, str):  # a YAML date
        value = value.isoformat()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return base + timedelta(days=float(value)), False
    if not isinstance(value, str):
        raise ValueError(f"expected an offset like '12d' or an ISO date, got {value!r}")
    m = _OFFSET.match(value)
    if m:
        return base + timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)]), False
    try:
        if len(value.strip()) == 10:  # a date: midnight UTC, as for FHIR date-only values
            return datetime.fromisoformat(value.strip()).replace(tzinfo=UTC), True
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise ValueError(f"expected an offset like '12d' or an ISO date, got {value!r}") from exc
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC), False


def timeline_from_spec(spec: dict[str, Any]) -> Timeline:
    """Build a timeline from a test case's ``patient`` and ``events``; raises
    :class:`TimelineSpecError` naming the event and key that is wrong."""
    p = spec.get("patient") or {}
    try:
        pid = str(p.get("id", "test-patient"))
        birth = p.get("birth_date")
        deceased = p.get("deceased")
        info = PatientInfo(
            id=pid,
            birth_date=parse_offset(birth)[0].date() if birth is not None else None,
            sex=p.get("sex"),
            deceased=parse_offset(deceased)[0] if deceased is not None else None,
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise TimelineSpecError(f"patient: {exc}") from exc
    raw_events = spec.get("events") or []
    ids = {
        str(e["id"]): _kind(e)
        for e in raw_events
        if isinstance(e, dict) and e.get("id") is not None
    }
    events = []
    for n, raw in enumerate(raw_events):
        try:
            events.append(_event(raw, n, pid, ids))
        except (ValueError, TypeError, KeyError) as exc:
            raise TimelineSpecError(f"events[{n}]: {exc}") from exc
    if info.deceased is not None:
        events.append(
            Event(
                patient=pid,
                t=info.deceased,
                kind=Kind.DEATH,
                system="",
                code="",
                source=f"Patient/{pid}",
            )
        )
    return build_timeline(info, events)


def _kind(raw: dict[str, Any]) -> Kind:
    if "kind" in raw:
        return Kind(raw["kind"])
    return Kind.ENCOUNTER if "setting" in raw else Kind.CONDITION


def _ref(ids: dict[str, Kind], value: object) -> str:
    key = str(value)
    if key not in ids:
        raise ValueError(f"no event with id {key!r}")
    return f"{_SOURCE_TYPE[ids[key]]}/{key}"


def _event(raw: object, n: int, pid: str, ids: dict[str, Kind]) -> Event:
    if not isinstance(raw, dict):
        raise TypeError("expected a mapping")
    for derived in ("released", "abnormal", "positive"):
        if derived in raw:
            raise ValueError(f"'{derived}' is derived from the events, do not write it")
    unknown = sorted(set(raw) - _EVENT_KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}")
    kind = _kind(raw)
    t, date_only = parse_offset(raw["t"])
    end = parse_offset(raw["end"], base=t)[0] if raw.get("end") is not None else None
    codes = [raw["code"]] if raw.get("code") else []
    codes += list(raw.get("codes") or [])
    parsed = [parse_code(str(c)) for c in codes]
    source = f"{_SOURCE_TYPE[kind]}/{raw.get('id', f'e{n}')}"
    value, unit, comparator = raw.get("value"), raw.get("unit"), raw.get("comparator")
    if isinstance(value, str):
        read = parse_value_string(value)
        if read is not None:
            value, unit, comparator = read[0], read[1] or unit, read[2] or comparator
        else:
            number, _, rest = value.strip().partition(" ")
            value, unit = float(number), rest.strip() or unit
    detail = None
    if kind is Kind.ENCOUNTER:
        setting = Setting(raw.get("setting", "OTHER"))
        icu = bool(raw.get("icu")) or setting is Setting.ICU
        principal = tuple(parse_code(str(c)) for c in raw.get("principal") or ())
        diagnoses = tuple(parse_code(str(c)) for c in raw.get("diagnosis") or ())
        detail = EncounterDetail(
            setting=setting,
            class_code=str(raw.get("class_code", setting.value)),
            admit_source=raw.get("admit_source"),
            disposition=raw.get("disposition"),
            diagnoses=tuple(dict.fromkeys((*principal, *diagnoses))),
            principal=principal,
            locations=(LocationStay(name="ICU", start=t, end=end, icu=True),) if icu else (),
            part_of=_ref(ids, raw["part_of"]) if raw.get("part_of") is not None else None,
            planned=bool(raw.get("planned", False)),
        )
        parsed = [Code("setting", setting.value), *parsed]
    primary = parsed[0] if parsed else None
    interpretation = tuple(str(i).upper() for i in raw.get("interpretation") or ())
    coded, strings = _answer(raw.get("answer"))
    judged = judge(
        interpretations=interpretation,
        coded=coded,
        strings=strings,
        value=float(value) if value is not None else None,
        comparator=comparator,
        low=raw.get("ref_low"),
        high=raw.get("ref_high"),
    )
    if not interpretation:  # as the FHIR converter: a qualitative answer implies POS / NEG
        meaning = judged.positive
        interpretation = () if meaning is None else ("POS",) if meaning else ("NEG",)
    return Event(
        patient=pid,
        t=t,
        date_only=date_only,
        kind=kind,
        system=primary.system if primary else "",
        code=primary.code if primary else "",
        alt=tuple(parsed[1:]),
        source=source,
        end=end,
        encounter=_ref(ids, raw["encounter"]) if raw.get("encounter") is not None else None,
        status=raw.get("status"),
        value=float(value) if value is not None else None,
        unit=unit,
        comparator=comparator,
        interpretation=interpretation,
        ref_low=raw.get("ref_low"),
        ref_high=raw.get("ref_high"),
        text=raw.get("text"),
        detail=detail,
        abnormal=judged.abnormal,
        abnormal_from=judged.abnormal_from,
        positive=judged.positive,
        positive_from=judged.positive_from,
    )


def _answer(answer: object) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """A test case's ``answer``: ``system:code`` when the system is a known answer system,
    else a string answer."""
    if answer is None:
        return (), ()
    text = str(answer)
    system, sep, code = text.partition(":")
    if sep and qualitative(system, code) is not None:
        return ((system, code),), ()
    return (), (text,)
