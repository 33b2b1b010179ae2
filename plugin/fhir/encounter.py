"""Encounter → one ``encounter`` event plus one ``transfer`` event per location entry.

* **Setting** by the chain of the ``settings`` table (:func:`plugin.fhir.vocab.infer_setting`):
  ``class.code`` → ``class.display`` → ``type``/``serviceType`` SNOMED CT → the kinds of its
  locations → ``admitSource``; the link that decided is ``EncounterDetail.setting_from``, and an
  encounter none of them places is ``OTHER`` with ``setting_from="unknown"`` and a read-report
  warning (never guessed). An ICU stay recorded as its own Encounter (MIMIC ``EncounterICU``:
  ``partOf`` a hospital stay, with an ICU profile or identifier system) is
  :attr:`Setting.ICU`.
* ``hospitalization.admitSource`` / ``dischargeDisposition`` normalised by :mod:`plugin.fhir.vocab`
  (no admit source but a ``classHistory`` that starts in the ED: ``emd``);
  ``planned`` from an elective admit source, an elective/routine/pre-op ``priority``, an elective
  class (MIMIC ``ELECTIVE``, ``SURGICAL SAME DAY ADMISSION``) or "elective/planned/scheduled" in the
  priority or type text.
* **Diagnoses**: the Conditions ``Encounter.diagnosis`` and ``reasonReference`` point to, and
  ``reasonCode`` (Conditions naming the encounter are added by :mod:`plugin.timeline.build`).
* **Principal diagnosis** (:func:`principal_codes`): the codes of the Condition of the one
  ``Encounter.diagnosis`` entry with ``rank`` 1 (rank counts within a role, so among several
  rank-1 entries the one whose ``use`` is ``billing``, else ``DD``, else the first); with no
  rank 1, the first entry whose ``use`` is ``billing``, else ``DD`` (discharge diagnosis) — the
  roles of http://terminology.hl7.org/CodeSystem/diagnosis-role that name the diagnosis the stay
  is coded under. ``AD`` (admission), ``CC`` (chief complaint), ``CM`` (comorbidity) and the
  pre-/post-op roles never make a diagnosis principal, nor does ``reasonCode``. Otherwise the
  principal is unknown (empty): Synthea writes no ``Encounter.diagnosis``, and the MIMIC-IV
  demo codes each diagnosis as a Condition naming the stay, its ``seq_num`` only inside a
  local identifier (``<hadm_id>-<seq_num>-<icd>``), which FHIR gives no meaning to.
* **Locations**: each ``Encounter.location`` entry becomes a :class:`LocationStay` and a
  ``transfer`` event (system ``location``, code ``icu|ward|ed|procedural|observation|other``
  from the Location's type, id or name through the ``locations`` table; a Location an ICU
  encounter used counts as ICU). ``type`` and ``serviceType`` codes are
  the encounter event's ``alt`` codes; its primary code is ``setting:<Setting>``.
"""

from __future__ import annotations

from plugin.fhir import vocab
from plugin.fhir.convert import (
    JSON,
    Context,
    When,
    first_of,
    make_event,
    offset_of,
    source_of,
    status_of,
)
from plugin.fhir.values import (
    Malformed,
    codeable_text,
    codings,
    first_code,
    lst,
    obj,
    objs,
    period,
    reference,
    text,
    warn,
)
from plugin.timeline.model import Code, EncounterDetail, Event, Kind, LocationStay, Setting


def is_icu_encounter(r: JSON) -> bool:
    """An ICU stay recorded as its own Encounter (MIMIC ``EncounterICU``: partOf a hospital stay,
    ICU profile or identifier system), or an Encounter whose class says ICU."""
    cls = obj(r, "class")
    if cls is not None and (text(cls, "code") or "").upper() == "ICU":
        return True
    if r.get("partOf") is None:
        return False
    meta = obj(r, "meta")
    marks = [p for p in lst(meta, "profile") if isinstance(p, str)] if meta else []
    marks += [text(i, "system") or "" for i in objs(r, "identifier")]
    return any("icu" in m.lower() for m in marks)


def _locations(
    r: JSON, ctx: Context, default: When
) -> tuple[list[LocationStay], list[tuple[str, bool, int | None]]]:
    """The location stays, and for each its kind, whether its start is a date only and the
    UTC offset written in its start."""
    stays, kinds = [], []
    for entry in objs(r, "location"):
        ref_obj = obj(entry, "location")
        ref = text(ref_obj, "reference") if ref_obj else None
        loc = ctx.index.resolve(ref, "Location", container=r)
        name = (
            (text(ref_obj, "display") if ref_obj else None)
            or (text(loc, "name") if loc else None)
            or ref
            or "?"
        )
        types = []
        if loc is not None:
            for cc in [*objs(loc, "type"), obj(loc, "physicalType")]:
                types += [c.code for c, _ in codings(cc)]
        canonical = ctx.index.canonical(ref, "Location") if ref else None
        kind = (
            "icu"
            if canonical in ctx.icu_locations
            else vocab.location_kind(tuple(types), name, canonical)
        )
        start, end = period(entry, "period")
        start = start or default
        stays.append(
            LocationStay(
                name=name,
                start=start[0] if start else None,
                end=end[0] if end else None,
                icu=kind == "icu",
            )
        )
        kinds.append((kind, start[1] if start else False, offset_of(entry, start, "period.start")))
    return stays, kinds


def _diagnoses(
    r: JSON, ctx: Context
) -> tuple[tuple[Code, ...], tuple[tuple[str, Code], ...]]:
    """The encounter's diagnosis codes, and (Condition source, code) for those that come from
    a referenced Condition: ``Timeline.until`` takes them back while that Condition is not
    yet recorded (a discharge diagnosis entered days later must not show at the visit)."""
    found: list[Code] = []
    links: list[tuple[str, Code]] = []
    refs = [reference(d, "condition") for d in objs(r, "diagnosis")]
    refs += [text(x, "reference") for x in objs(r, "reasonReference")]
    for ref in refs:
        cond = ctx.index.resolve(ref, "Condition")
        if cond is not None:
            try:
                codes = [c for c, _ in codings(obj(cond, "code"))]
            except Malformed:  # the Condition itself is reported when it is converted
                continue
            found += codes
            links += [(source_of(cond), c) for c in codes]
    found += [c for cc in objs(r, "reasonCode") for c, _ in codings(cc)]
    return tuple(dict.fromkeys(found)), tuple(dict.fromkeys(links))


_PRINCIPAL_USES = ("billing", "DD")  # diagnosis-role codes, in order of preference


def _uses(entry: JSON) -> set[str]:
    use = obj(entry, "use")
    return {c for coding in objs(use, "coding") if (c := text(coding, "code"))} if use else set()


def _by_use(entries: list[JSON]) -> JSON | None:
    for use in _PRINCIPAL_USES:
        hit = next((e for e in entries if use in _uses(e)), None)
        if hit is not None:
            return hit
    return None


def principal_codes(r: JSON, ctx: Context) -> tuple[Code, ...]:
    """The codes of an Encounter's principal diagnosis (see the module docstring), or ``()``
    when the record does not say which diagnosis is principal."""
    entries = objs(r, "diagnosis")
    ranked = [e for e in entries if e.get("rank") == 1 and e.get("rank") is not True]
    chosen = (_by_use(ranked) or ranked[0]) if ranked else _by_use(entries)
    if chosen is None:
        return ()
    cond = ctx.index.resolve(reference(chosen, "condition"), "Condition")
    if cond is None:
        return ()
    try:
        return tuple(dict.fromkeys(c for c, _ in codings(obj(cond, "code"))))
    except Malformed:  # the Condition itself is reported when it is converted
        return ()


def _came_through_ed(r: JSON) -> bool:
    """``classHistory`` starts in the ED: one encounter for the ED visit and the admission."""
    history = objs(r, "classHistory")
    first = obj(history[0], "class") if history else None
    return first is not None and vocab.setting_of(text(first, "code") or "") is Setting.ED


def _class_display(cls: JSON | None) -> str:
    if cls is None:
        return ""
    shown = text(cls, "display") or codeable_text(cls)
    return shown or next((d for _, d in codings(cls) if d), None) or ""


def _setting(
    r: JSON,
    cls: JSON | None,
    class_code: str,
    codes: list[tuple[Code, str | None]],
    kinds: list[tuple[str, bool, int | None]],
    admit: str | None,
) -> tuple[Setting, str]:
    if is_icu_encounter(r):
        return Setting.ICU, "icu_encounter"
    snomed = tuple(c.code for c, _ in codes if c.system == "snomed")
    setting, link = vocab.infer_setting(
        class_code=class_code,
        class_display=_class_display(cls),
        type_snomed=snomed,
        service_snomed=snomed,
        location_kinds=tuple(kind for kind, _, _ in kinds),
        admit_source=admit or "",
    )
    if link == "unknown":
        rid = r.get("id")
        warn("encounter setting unknown", "no class, type, location or admit source maps",
             rid if isinstance(rid, str) else "")  # fmt: skip
    return setting, link


def encounter(r: JSON, ctx: Context) -> list[Event]:
    if status_of(r) == "entered-in-error":
        return []
    start, end = period(r, "period")
    at = first_of(start, end)
    cls = obj(r, "class")
    # a Coding (R4) or, as some exports write it, a CodeableConcept
    class_code = ((text(cls, "code") or first_code(cls)) if cls else None) or ""
    source = source_of(r)
    part_of = ctx.index.canonical(reference(r, "partOf"), "Encounter")
    hosp = obj(r, "hospitalization") or {}
    admit_raw = first_code(obj(hosp, "admitSource"))
    admit = vocab.admit_source_code(admit_raw) if admit_raw else None
    if admit is None and _came_through_ed(r):
        admit = "emd"
    dispo_raw = first_code(obj(hosp, "dischargeDisposition"))
    priority = obj(r, "priority")
    prio_code = (first_code(priority) or "").upper()
    type_codes = [c for cc in objs(r, "type") for c in codings(cc)]
    service = codings(obj(r, "serviceType"))
    planned_texts = [codeable_text(priority) or "", *(d or "" for _, d in codings(priority))]
    planned_texts += [d or "" for _, d in type_codes] + [
        codeable_text(cc) or "" for cc in objs(r, "type")
    ]
    planned = vocab.is_planned(
        priority=prio_code,
        class_code=class_code,
        admit_source=admit or "",
        texts=tuple(t for t in planned_texts if t),
    )
    stays, kinds = _locations(r, ctx, at)
    setting, setting_from = _setting(r, cls, class_code, type_codes + service, kinds, admit)
    diagnoses, linked = _diagnoses(r, ctx)
    detail = EncounterDetail(
        setting=setting,
        setting_from=setting_from,
        class_code=class_code,
        admit_source=admit,
        disposition=vocab.disposition_group(dispo_raw) if dispo_raw else None,
        diagnoses=diagnoses,
        principal=principal_codes(r, ctx),
        linked=linked,
        locations=tuple(stays),
        part_of=part_of if part_of != source else None,
        planned=planned,
    )
    alt = tuple(dict.fromkeys(c for c, _ in type_codes + service))
    label = next((d for _, d in type_codes if d), None) or class_code or None
    ev = make_event(
        r,
        ctx,
        Kind.ENCOUNTER,
        at,
        Code("setting", setting.value),
        alt=alt,
        text=label,
        end=end[0] if end else None,
        detail=detail,
        offset_min=offset_of(r, at, "period.start", "period.end"),
    )
    events = [ev]
    for stay, (kind, date_only, offset) in zip(stays, kinds, strict=True):
        if stay.start is None:
            continue
        events.append(
            Event(
                patient=ctx.patient,
                t=stay.start,
                kind=Kind.TRANSFER,
                system="location",
                code=kind,
                source=source,
                end=stay.end,
                encounter=source,
                text=stay.name,
                date_only=date_only,
                offset_min=offset if offset is not None else ev.offset_min,
            )
        )
    return events
