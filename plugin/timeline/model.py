"""The internal timeline: what rules and the ranker read instead of FHIR JSON.

Everything here is a frozen dataclass built once per patient by
:mod:`plugin.timeline.build` (from FHIR) or by rule tests (inline events).

Conventions (documented once, relied on everywhere):

* ``Event.t`` is a timezone-aware ``datetime`` in **UTC**. FHIR values with an
  offset are converted; values without an offset are taken as UTC.
* Date-only FHIR values (``2024-03-05``) become midnight UTC of that day and set
  ``date_only=True``; partial dates (``2024-03`` / ``2024``) become the first day
  of the month / year, also ``date_only=True``.
* Codes are normalised once (:mod:`plugin.timeline.codes`): ``system`` is a short
  name (``icd10``, ``icd9``, ``snomed``, ``loinc``, ``cpt``, ``hcpcs``, ``rxnorm``,
  or ``local:<uri>``); ICD codes are upper case without the dot (``I639``).
* ``source`` is the FHIR reference of the resource that produced the event
  (``"Encounter/123"``), so findings and cards can point back to it.
* ``offset_min`` keeps the source's own UTC offset (minutes; None when the value had none, or
  is a date only): :attr:`Event.local_t` and :func:`local_index_time` give times in the
  chart's local offset for reviewers; every comparison stays on UTC ``t``.

Result semantics of observations (issue 11; filled by :mod:`plugin.fhir.convert` through
:func:`plugin.normalize.results.judge`, read by the ``abnormal`` / ``positive`` selectors):

* ``value`` / ``unit`` / ``comparator`` — ``valueQuantity`` (``comparator`` one of ``<``,
  ``<=``, ``>``, ``>=``, ``ad``), or numbers read from an unambiguous ``valueString``
  (``"15.2 mIU/L"``, ``"<25"``). ``unit`` is kept as written; thresholds convert it through
  UCUM (:mod:`plugin.normalize.units`). Every numeric test honours ``comparator``: ``<25`` is
  never ``> 20``.
* ``abnormal`` — ``high`` | ``low`` | ``abnormal`` | ``normal`` | None (unknown);
  ``abnormal_from`` — ``interpretation`` | ``reference_range`` | ``comparator`` | ``coded`` |
  ``string``.
* ``positive`` — True | False | None (unknown or indeterminate); ``positive_from`` —
  ``interpretation`` | ``coded`` | ``string``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from enum import StrEnum


class Kind(StrEnum):
    """What an event is. Which FHIR resource types yield which kinds is a column of the table
    in ``plugin/fhir/resource_types.py`` (a new kind is added here and named in that table)."""

    ENCOUNTER = "encounter"
    CONDITION = "condition"
    OBSERVATION = "observation"
    PROCEDURE = "procedure"
    REPORT = "report"  # DiagnosticReport
    ORDER = "order"  # ServiceRequest
    MEDICATION = "medication"  # MedicationRequest
    DEATH = "death"  # Patient.deceasedDateTime
    TRANSFER = "transfer"  # one Encounter.location entry: system "location", code icu|ward|ed|other


class Setting(StrEnum):
    """Normalised care setting of an encounter (from Encounter.class and local variants)."""

    ED = "ED"  # EMER, "ED", MIMIC "EU OBSERVATION" (MIMIC "EW EMER." is an admission: IP)
    IP = "IP"  # IMP, ACUTE, MIMIC "EW EMER.", "URGENT", "DIRECT EMER.", ...
    OBS = "OBS"  # OBSENC, "OBSERVATION ADMIT", ...
    AMB = "AMB"  # ambulatory / outpatient / primary care
    ICU = "ICU"  # an ICU stay (MIMIC EncounterICU, or an ICU location)
    VIRTUAL = "VR"
    HOME = "HH"
    OTHER = "OTHER"


@dataclass(frozen=True, slots=True)
class Code:
    """One normalised coding. ``system`` short name, ``code`` normalised."""

    system: str
    code: str

    def __str__(self) -> str:
        return f"{self.system}:{self.code}"


@dataclass(frozen=True, slots=True, kw_only=True)
class LocationStay:
    """One entry of Encounter.location: where the patient was, and when."""

    name: str  # display or reference of the location
    start: datetime | None
    end: datetime | None
    icu: bool  # the location is an intensive-care unit (by type code or name)


@dataclass(frozen=True, slots=True, kw_only=True)
class EncounterDetail:
    """Encounter-only fields, kept off :class:`Event` so other events stay small."""

    setting: Setting
    class_code: str  # the original class code (e.g. "EMER", "EW EMER.")
    # Which link of the setting chain decided (plugin/normalize/README.md): class.code,
    # class.display, type.snomed, serviceType.snomed, location.kind, admitSource,
    # icu_encounter; "unknown" when none did (setting OTHER, reported, never guessed).
    setting_from: str = "class.code"
    admit_source: str | None = None  # normalised lower-case code, e.g. "emd", "elective"
    disposition: str | None = None  # normalised group: home|admitted|transfer|snf|hospice|
    #                                 rehab|psych|expired|ama|other (see build.py)
    diagnoses: tuple[Code, ...] = ()  # Encounter.diagnosis + reasonCode + linked Conditions
    # The principal diagnosis's codes (also in ``diagnoses``); empty when the record does not
    # say which diagnosis is principal (see plugin.fhir.encounter).
    principal: tuple[Code, ...] = ()
    # (Condition source, code) for every code of a Condition behind ``diagnoses``: those
    # Encounter.diagnosis / reasonReference point to (plugin.fhir.encounter) and those that
    # name this encounter (Event.encounter, merged by plugin.timeline.build). Timeline.until
    # uses it to take back the codes of Conditions not yet known.
    linked: tuple[tuple[str, Code], ...] = ()
    locations: tuple[LocationStay, ...] = ()
    part_of: str | None = None  # "Encounter/<id>" of the parent stay
    planned: bool = False  # admitSource/priority/type says elective or planned
    released: bool = False  # ED/AMB visit not followed by an admission within 24 h


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One dated fact in a patient's record."""

    patient: str
    t: datetime  # UTC, aware
    kind: Kind
    system: str  # short system name of the primary code ("" when uncoded)
    code: str  # normalised primary code ("" when uncoded)
    source: str  # "ResourceType/id"
    value: float | None = None  # numeric value (Observation.valueQuantity)
    unit: str | None = None  # UCUM unit as given
    end: datetime | None = None  # end of the period (encounters, procedures)
    alt: tuple[Code, ...] = ()  # other codings of the same concept
    encounter: str | None = None  # "Encounter/<id>" this event belongs to
    status: str | None = None
    interpretation: tuple[str, ...] = ()  # upper-case v3 codes: H, L, HH, LL, A, AA, POS, NEG, ...
    ref_low: float | None = None
    ref_high: float | None = None
    text: str | None = None  # display text of the primary code
    # Free text of a report (DiagnosticReport.conclusion + presentedForm text), read by the
    # report-text matcher (plugin.text); None for other kinds or when the report has none.
    narrative: str | None = None
    # UTC offset of the source's own time in minutes (-240 for "-04:00"); None when the value
    # had none. Kept so that reviewers see the chart's local time, not UTC (issue 11).
    offset_min: int | None = None
    date_only: bool = False
    recorded: datetime | None = None  # when it entered the record, if known (leakage checks)
    detail: EncounterDetail | None = None  # set for kind == ENCOUNTER only
    # Result semantics (observations; see the module docstring).
    comparator: str | None = None  # valueQuantity.comparator: < <= > >= ad
    abnormal: str | None = None  # high | low | abnormal | normal; None = unknown
    abnormal_from: str | None = None  # interpretation|reference_range|comparator|coded|string
    positive: bool | None = None  # None = unknown / indeterminate
    positive_from: str | None = None  # interpretation | coded | string

    @property
    def local_t(self) -> datetime:
        """``t`` in the source's own UTC offset (UTC when the source gave none)."""
        return to_local(self.t, self.offset_min)

    @property
    def codes(self) -> tuple[Code, ...]:
        """The event's own codes (for encounters: setting, type and serviceType, not diagnoses)."""
        return ((Code(self.system, self.code),) if self.code else ()) + self.alt

    @property
    def diagnoses(self) -> tuple[Code, ...]:
        """Encounter diagnoses (empty for other kinds)."""
        return self.detail.diagnoses if self.detail is not None else ()

    @property
    def stop(self) -> datetime:
        """End of the event if it has one, otherwise its time."""
        return self.end if self.end is not None else self.t


def to_local(moment: datetime, offset_min: int | None) -> datetime:
    """``moment`` shown in a UTC offset of ``offset_min`` minutes (as is when None)."""
    if offset_min is None:
        return moment
    return moment.astimezone(timezone(timedelta(minutes=offset_min)))


@dataclass(frozen=True, slots=True, kw_only=True)
class PatientInfo:
    id: str
    birth_date: date | None = None
    sex: str | None = None  # FHIR administrative gender
    deceased: datetime | None = None

    def age_at(self, when: datetime) -> float | None:
        if self.birth_date is None:
            return None
        d = when.date()
        years = d.year - self.birth_date.year
        if (d.month, d.day) < (self.birth_date.month, self.birth_date.day):
            years -= 1
        return float(years)


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeline:
    """One patient's events, sorted by (t, kind, source)."""

    patient: PatientInfo
    events: tuple[Event, ...] = ()

    def until(self, moment: datetime) -> Timeline:
        """The timeline as it was known at ``moment`` (leakage-free: nothing recorded later).

        Keeps events that happened by ``moment``; an encounter still open at ``moment`` is
        kept. Events with a ``recorded`` time after ``moment`` are dropped even if they are
        dated earlier. A kept encounter loses the diagnoses that only dropped Conditions gave
        it (``EncounterDetail.linked``): a code a dropped Condition carries is removed unless
        a kept Condition also gives it, even when the encounter lists it itself, because
        ``Encounter.diagnosis`` usually points at that same, later Condition.
        """
        kept = [
            e for e in self.events if e.t <= moment and (e.recorded is None or e.recorded <= moment)
        ]
        known = {e.source for e in kept if e.kind is Kind.CONDITION}
        events = tuple(_known_diagnoses(e, known) for e in kept)
        deceased = self.patient.deceased
        patient = self.patient
        if deceased is not None and deceased > moment:
            patient = PatientInfo(
                id=patient.id, birth_date=patient.birth_date, sex=patient.sex, deceased=None
            )
        return Timeline(patient=patient, events=events)


def _known_diagnoses(e: Event, known_conditions: set[str]) -> Event:
    """``e`` without the linked diagnosis codes that only unknown Conditions gave it."""
    detail = e.detail
    if detail is None or not detail.linked:
        return e
    still = {code for source, code in detail.linked if source in known_conditions}
    gone = {code for source, code in detail.linked if source not in known_conditions} - still
    if not gone:
        return e
    linked = tuple((s, c) for s, c in detail.linked if s in known_conditions)
    diagnoses = tuple(c for c in detail.diagnoses if c not in gone)
    principal = tuple(c for c in detail.principal if c not in gone)  # stays within diagnoses
    return replace(
        e, detail=replace(detail, diagnoses=diagnoses, principal=principal, linked=linked)
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One rule hit: (patient, rule, index event). ``key`` is stable across runs."""

    key: str  # sha1 of patient|rule_id|index source|index time
    patient_id: str
    rule_id: str
    rule_title: str
    level: str
    index_ref: str
    index_start: datetime
    index_end: datetime | None
    window_end: datetime
    outcome_ref: str | None = None  # sequence rules: the outcome event
    evidence: tuple[str, ...] = ()  # source references that made the rule fire
    summary: str = ""  # one line for humans: "ED visit ... then IP encounter ... after 12 d"
    score: float | None = None  # ranker P(MOD), when a model is used
    missed_dx: tuple[tuple[str, float], ...] = ()  # (diagnosis, probability), best first
    reasons: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)


def local_index_time(finding: Finding, timeline: Timeline) -> datetime:
    """A finding's index time in the chart's local offset: the offset of its index event,
    else the offset most of the patient's events carry, else UTC."""
    offsets = [e.offset_min for e in timeline.events if e.offset_min is not None]
    index = next(
        (e for e in timeline.events
         if e.source == finding.index_ref and e.t == finding.index_start),
        None,
    )  # fmt: skip
    offset = index.offset_min if index is not None else None
    if offset is None and offsets:
        offset = max(set(offsets), key=offsets.count)
    return to_local(finding.index_start, offset)


def with_local_times(findings: list[Finding], timeline: Timeline) -> list[Finding]:
    """``findings`` with ``extra["index_local"]`` (ISO 8601 with the chart's offset), for
    scan output and the worklist (the engine's findings carry UTC times only)."""
    return [
        replace(f, extra={**f.extra, "index_local": local_index_time(f, timeline).isoformat()})
        for f in findings
    ]
