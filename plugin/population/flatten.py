"""FHIR files → flat timeline tables, built by DuckDB itself (no Python per resource).

Three tables hold everything the rules read, with the same normalisation as the Python
timeline (:mod:`plugin.fhir.convert`, :mod:`plugin.fhir.encounter`,
:mod:`plugin.timeline.build`):

``events``   one row per timeline event: ``pid, eid, seq, kind, t, te, source, system, code,
             enc, status, value, unit, setting, disposition, admit_source, planned, released,
             icu, has_pr, label, ty, tmd``. Times ``t``/``te`` are epoch microseconds UTC
             (exact window arithmetic in every engine); ``seq`` is the event's position in its
             patient's timeline order ``(t, kind, source, system, code)``; ``ty``/``tmd`` are
             the UTC year and month*100+day of ``t`` (ages without date functions).
``codes``    ``eid, role, system, code``: role ``own`` (the event's codes: primary + alt),
             ``dx`` (encounter diagnoses, including Conditions naming the encounter), ``pr``
             (principal diagnosis), ``interp`` (interpretation codes).
``patients`` ``pid, by, bmd, sex, deceased``: birth year and month*100+day, sex, death time.

A new timeline field is one column in the ``ev`` projection of the type that carries it and
one name in :data:`EVENT_COLUMNS` (the Python-timeline loader in :mod:`plugin.population.
timelines` fills the same list), so the differential test sees it at once.

Reading: ``*.ndjson`` (a line may hold a Bundle) and ``*.json`` (a Bundle or one resource),
``.gz`` too, through ``read_json_objects``; each resource is typed once with ``from_json``
against :data:`SCHEMA`. An NDJSON file with a field of another JSON shape (a string where
an object or a list belongs) is refused by the typed reader and decided by the Python
reader (:func:`typed_split`). Differences from the Python reader, on malformed input only:
a scalar of another JSON type (``"12"`` for a number, ``12`` for a string), and in Bundles
and ``.json`` files any field of another type, is converted or read as absent (Python skips
the resource); Bundle ``fullUrl``/``id`` aliases are not rewritten; conditional references
other than to the Patient and to Locations are kept as written.
"""

# ruff: noqa: S608 - this module builds SQL; every literal goes through lit()/_q()

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb

from plugin.errors import EmptySource, FhirParseError
from plugin.fhir.convert import _INTERPRETATION_SYSTEMS, _PREFER, _UCUM
from plugin.fhir.read import ReadReport, list_input_files
from plugin.fhir.resource_types import R4_TYPES, shared_types, timeline_types
from plugin.fhir.values import NO_OFFSET
from plugin.population import vocab
from plugin.population.steps import step
from plugin.population.vocab import in_list, lit, vlist

EVENT_COLUMNS = (
    "pid", "eid", "seq", "kind", "t", "te", "source", "system", "code", "enc", "status",
    "value", "unit", "comparator", "positive", "abnormal", "off", "setting", "disposition",
    "admit_source", "planned", "released", "icu", "has_pr", "label", "ty", "tmd",
)  # fmt: skip

_CODING = {"system": "VARCHAR", "code": "VARCHAR", "display": "VARCHAR"}
_CC = {"coding": [_CODING], "text": "VARCHAR"}
_REF = {"reference": "VARCHAR", "display": "VARCHAR"}
_PERIOD = {"start": "VARCHAR", "end": "VARCHAR"}
_VALUE = {
    "valueQuantity": {
        "value": "DOUBLE",
        "unit": "VARCHAR",
        "system": "VARCHAR",
        "code": "VARCHAR",
        "comparator": "VARCHAR",
    },
    "valueInteger": "DOUBLE",
    "valueCodeableConcept": _CC,
    "valueString": "VARCHAR",
    "interpretation": [_CC],
    "referenceRange": [{"low": {"value": "DOUBLE"}, "high": {"value": "DOUBLE"}}],
}
SCHEMA: dict[str, object] = {
    "resourceType": "VARCHAR",
    "id": "VARCHAR",
    "status": "VARCHAR",
    "subject": _REF,
    "patient": _REF,
    "beneficiary": _REF,
    "encounter": _REF,
    "context": _REF,
    "identifier": [{"system": "VARCHAR", "value": "VARCHAR"}],
    "meta": {"profile": ["VARCHAR"], "lastUpdated": "VARCHAR"},
    "verificationStatus": _CC,
    "clinicalStatus": _CC,
    "code": _CC,
    "onsetDateTime": "VARCHAR",
    "onsetPeriod": _PERIOD,
    "recordedDate": "VARCHAR",
    "effectiveDateTime": "VARCHAR",
    "effectiveInstant": "VARCHAR",
    "effectivePeriod": _PERIOD,
    "issued": "VARCHAR",
    **_VALUE,
    "component": [{"code": _CC, **_VALUE}],
    "performedDateTime": "VARCHAR",
    "performedPeriod": _PERIOD,
    "conclusionCode": [_CC],
    "conclusion": "VARCHAR",
    "presentedForm": [{"contentType": "VARCHAR", "data": "VARCHAR", "url": "VARCHAR"}],
    "authoredOn": "VARCHAR",
    "occurrenceDateTime": "VARCHAR",
    "occurrencePeriod": _PERIOD,
    "medicationCodeableConcept": _CC,
    "medicationReference": _REF,
    "contained": [{"resourceType": "VARCHAR", "id": "VARCHAR", "code": _CC}],
    "birthDate": "VARCHAR",
    "gender": "VARCHAR",
    "deceasedDateTime": "VARCHAR",
    "class": {"system": "VARCHAR", "code": "VARCHAR", "display": "VARCHAR"},
    "classHistory": [{"class": {"code": "VARCHAR"}}],
    "type": [_CC],
    "serviceType": _CC,
    "priority": _CC,
    "period": _PERIOD,
    "hospitalization": {"admitSource": _CC, "dischargeDisposition": _CC},
    "location": [{"location": _REF, "period": _PERIOD}],
    "diagnosis": [{"condition": _REF, "use": _CC, "rank": "DOUBLE"}],
    "reasonCode": [_CC],
    "reasonReference": [_REF],
    "partOf": _REF,
    "name": "VARCHAR",
    "physicalType": _CC,
}


_PATIENT_REF = ("resourceType", "id", "subject", "patient", "beneficiary", "meta", "status")
# the fields the flattening reads of each type (a fast file is read with these alone: a
# struct of every field, carried through the reader, costs more than the rest of the step)
FIELDS: dict[str, tuple[str, ...]] = {
    "Patient": (*_PATIENT_REF, "identifier", "birthDate", "deceasedDateTime", "gender"),
    "Condition": (*_PATIENT_REF, "clinicalStatus", "verificationStatus", "code",
                  "onsetDateTime", "onsetPeriod", "recordedDate", "encounter", "context"),
    "Observation": (*_PATIENT_REF, "code", "valueQuantity", "valueInteger",
                    "valueCodeableConcept", "valueString", "interpretation", "referenceRange",
                    "component", "effectiveDateTime", "effectiveInstant", "effectivePeriod",
                    "issued", "encounter"),
    "Procedure": (*_PATIENT_REF, "code", "performedDateTime", "performedPeriod", "encounter",
                  "context"),
    "DiagnosticReport": (*_PATIENT_REF, "code", "conclusionCode", "conclusion",
                         "presentedForm", "effectiveDateTime", "effectivePeriod", "issued",
                         "encounter"),
    "ServiceRequest": (*_PATIENT_REF, "code", "authoredOn", "occurrenceDateTime",
                       "occurrencePeriod", "encounter"),
    "MedicationRequest": (*_PATIENT_REF, "medicationCodeableConcept", "medicationReference",
                          "contained", "authoredOn", "encounter"),
    "Encounter": (*_PATIENT_REF, "identifier", "period", "class", "classHistory", "type",
                  "serviceType", "priority", "hospitalization", "location", "diagnosis",
                  "reasonCode", "reasonReference", "partOf"),
    "Location": (*_PATIENT_REF, "identifier", "name", "type", "physicalType"),
    "Medication": (*_PATIENT_REF, "code"),
}  # fmt: skip
# the type of res.r: Bundles keep their entries until they are expanded (read_resources)
_RES_SCHEMA: dict[str, object] = {**SCHEMA, "entry": "JSON[]"}
# what the survey of every resource reads (read_resources): its type, id and patient, and
# the times the damaged-file checks and the no-offset warnings read
SURVEY: dict[str, object] = {k: SCHEMA[k] for k in (
    "resourceType", "id", "subject", "patient", "beneficiary", "onsetDateTime", "onsetPeriod",
    "recordedDate", "effectiveDateTime", "effectiveInstant", "effectivePeriod", "issued",
    "performedDateTime", "performedPeriod", "authoredOn", "occurrenceDateTime",
    "occurrencePeriod", "birthDate", "deceasedDateTime", "period", "location")}  # fmt: skip


def _macros() -> list[str]:
    interp_sys = in_list(_INTERPRETATION_SYSTEMS)
    return [
        *vocab.macros(),
        # Reference → "Type/id" as plugin.fhir.refs.ReferenceIndex.canonical reads it
        "CREATE OR REPLACE MACRO canon_p(p, ref) AS CASE "
        "WHEN len(p) >= 4 AND p[-2] = '_history' THEN p[-4] || '/' || p[-3] "
        "WHEN len(p) >= 2 THEN p[-2] || '/' || p[-1] ELSE ref END",
        "CREATE OR REPLACE MACRO canon(ref, rt) AS CASE WHEN ref IS NULL OR ref = '' THEN NULL "
        "WHEN starts_with(ref, 'urn:uuid:') THEN rt || '/' || substr(ref, 10) "
        "WHEN strpos(ref, '?') > 0 OR starts_with(ref, '#') THEN ref "
        "ELSE canon_p(string_split(ref, '/'), ref) END",
        # "?identifier=system|value" (after the type) -> the identifier key "system|value"
        "CREATE OR REPLACE MACRO qkey0(v) AS CASE WHEN v IS NULL OR v = '' THEN NULL "
        "WHEN strpos(v, '|') > 0 THEN v ELSE '|' || v END",
        "CREATE OR REPLACE MACRO qkey(ref) AS CASE WHEN strpos(ref, '?') > 0 THEN qkey0("
        "regexp_extract(substr(ref, strpos(ref, '?')), '[?&]identifier=([^&]+)', 1)) END",
        "CREATE OR REPLACE MACRO patient_p(p) AS CASE "
        "WHEN len(p) >= 4 AND p[-2] = '_history' THEN "
        "(CASE WHEN len(p) >= 4 AND p[-4] = 'Patient' THEN p[-3] END) "
        "WHEN len(p) >= 2 AND p[-2] = 'Patient' THEN p[-1] END",
        "CREATE OR REPLACE MACRO patient_of(ref) AS CASE WHEN ref IS NULL THEN NULL "
        "WHEN starts_with(ref, 'Patient/') AND length(ref) - length(replace(ref, '/', '')) = 1 "
        "THEN substr(ref, 9) WHEN starts_with(ref, 'urn:uuid:') THEN substr(ref, 10) "
        "WHEN starts_with(ref, 'Patient?') THEN substr(ref, 8) "
        "ELSE patient_p(string_split(ref, '/')) END",
        # index of the primary coding: the first of the preferred systems present, else 1
        # index of the primary coding: the first of the preferred systems present, else 1
        # (the lowest preference rank, its first occurrence; unranked systems rank last, so
        # with none preferred the first coding). One coding, the common case, skips the lists.
        "CREATE OR REPLACE MACRO pref_rank(l, prefs) AS list_transform(l, "
        "lambda x: coalesce(list_position(prefs, x.s), 1000000))",
        "CREATE OR REPLACE MACRO best_ix(l, prefs) AS CASE WHEN len(l) <= 1 THEN 1 ELSE "
        "list_position(pref_rank(l, prefs), list_min(pref_rank(l, prefs))) END",
        "CREATE OR REPLACE MACRO alt_of(l, b) AS list_filter(l, lambda x, i: i <> b AND "
        "NOT (x.s = l[b].s AND x.c = l[b].c))",
        "CREATE OR REPLACE MACRO own_of(l, b) AS CASE WHEN len(l) <= 1 THEN l "
        "ELSE list_concat([l[b]], alt_of(l, b)) END",
        f"CREATE OR REPLACE MACRO interp_of(p) AS CASE WHEN p.interpretation IS NULL "
        f"THEN []::VARCHAR[] ELSE list_distinct(list_transform(list_filter("
        f"flatten(list_transform(coalesce(p.interpretation, []), "
        f"lambda cc: coalesce(cc.coding, []))), lambda x: x.code IS NOT NULL AND x.code <> '' "
        f"AND (x.system IN {interp_sys} OR (x.system IS NULL AND length(x.code) <= 4))), "
        f"lambda x: upper(x.code))) END",
        # interp_of keeps first occurrences in order? list_distinct does not: order is not
        # read by any rule (interpretation is a set test).
        # POS/NEG implied by a qualitative answer (plugin.fhir.convert._implied): the first
        # coded answer, then text, the qualitative table knows
        "CREATE OR REPLACE MACRO answer_sys(s) AS CASE WHEN ends_with(s, 'v2-0078') "
        "OR ends_with(s, 'v3-ObservationInterpretation') THEN 'v2-0078' ELSE s END",
        "CREATE OR REPLACE MACRO meaning_of(p) AS first_placed(list_concat("
        "list_transform(codings(p.valueCodeableConcept), "
        "lambda x: qual_coded(answer_sys(x.s), x.c)), "
        "list_transform(list_filter([p.valueCodeableConcept.text, p.valueString], "
        "lambda t: t IS NOT NULL AND t <> ''), lambda t: qual_text(t))))",
        # a MAP probe names meaning_of(p) once (a CASE over it would evaluate it per WHEN)
        "CREATE OR REPLACE MACRO implied_of(p) AS CASE "
        "WHEN p.valueQuantity IS NOT NULL OR p.valueInteger IS NOT NULL THEN []::VARCHAR[] "
        "ELSE coalesce(MAP {'positive': ['POS'], 'negative': ['NEG']}[meaning_of(p)], "
        "[]::VARCHAR[]) END",
        # results.judge: positive from interpretation, else the coded answer, else the text
        # (an indeterminate coded answer stops the search); abnormal from interpretation,
        # else the reference range, else from positive
        "CREATE OR REPLACE MACRO answered(p) AS "
        "(p.valueQuantity IS NULL AND p.valueInteger IS NULL)",
        "CREATE OR REPLACE MACRO coded_meaning(p) AS CASE WHEN answered(p) THEN first_placed("
        "list_transform(codings(p.valueCodeableConcept), "
        "lambda x: qual_coded(answer_sys(x.s), x.c))) END",
        "CREATE OR REPLACE MACRO text_meaning(p) AS CASE WHEN answered(p) THEN first_placed("
        "list_transform(list_filter([p.valueCodeableConcept.text, p.valueString], "
        "lambda t: t IS NOT NULL AND t <> ''), lambda t: qual_text(t))) END",
        "CREATE OR REPLACE MACRO range_of(p) AS CASE WHEN p.referenceRange IS NOT NULL THEN "
        "list_filter(p.referenceRange, "
        "lambda r: r.low.value IS NOT NULL OR r.high.value IS NOT NULL)[1] END",
        # the UTC offset written in the time value (plugin.fhir.convert.offset_of): the first
        # path holding a date-time; none for a date only (a value without an offset would
        # take the --assume-tz zone's, not supported here: None, as without the option)
        "CREATE OR REPLACE MACRO ts_m(s) AS coalesce(regexp_matches(trim(s), "
        "'T\\d\\d:\\d\\d(:\\d\\d(\\.\\d+)?)?(Z|[+-]\\d\\d:\\d\\d)?$'), FALSE)",
        # the offset of a value ts_m accepts (so its suffix is Z, +hh:mm, -hh:mm or none)
        # a time the reader rejects (unparseable) or reads as unknown (placeholder year)
        "CREATE OR REPLACE MACRO tbad(s) AS (s IS NOT NULL AND s <> '' AND fdt(s) IS NULL)",
        "CREATE OR REPLACE MACRO ts_off_m(s) AS CASE WHEN s IS NULL THEN NULL "
        "WHEN right(s, 1) = 'Z' THEN 0 WHEN substr(s, -6, 1) IN ('+', '-') THEN "
        "(CASE WHEN substr(s, -6, 1) = '-' THEN -1 ELSE 1 END) * "
        "(CAST(substr(s, -5, 2) AS INTEGER) * 60 + CAST(substr(s, -2, 2) AS INTEGER)) END",
        # off_of<n>(v1..vn): the offset of the first value holding a valid time, NULL for a
        # date only; CASE chains, not lambdas over a list (this runs per event)
        *(_off_of_macro(n) for n in range(1, 5)),
        "CREATE OR REPLACE MACRO value_of(p) AS CASE WHEN p.valueQuantity IS NOT NULL "
        "THEN p.valueQuantity.value ELSE p.valueInteger END",
        f"CREATE OR REPLACE MACRO unit_of(p) AS CASE WHEN p.valueQuantity IS NOT NULL THEN "
        f"coalesce(CASE WHEN p.valueQuantity.system = {lit(_UCUM)} "
        f"THEN nullif(p.valueQuantity.code, '') END, nullif(p.valueQuantity.unit, ''), "
        f"p.valueQuantity.code) END",
    ]


def _off_of_macro(n: int) -> str:
    # A macro argument is re-evaluated wherever the body names it, so the two chains are
    # bound once as a struct and read inside a one-element lambda (a "let"): 4x faster
    # than naming them in a nested CASE.
    args = [f"v{i}" for i in range(1, n + 1)]
    valid = " ".join(f"WHEN fdt({a}) IS NOT NULL THEN {a}" for a in args)
    timed = " ".join(f"WHEN ts_m({a}) THEN {a}" for a in args)
    return (
        f"CREATE OR REPLACE MACRO off_of{n}({', '.join(args)}) AS list_transform("
        f"[{{'fv': CASE {valid} END, 'tv': trim(CASE {timed} END)}}], "
        f"lambda g: CASE WHEN length(g.fv) <= 10 THEN NULL ELSE ts_off_m(g.tv) END)[1]"
    )


def _ordered_prefs(rtype: str) -> str:
    prefs = _PREFER.get(rtype, ())
    return vlist(prefs) if prefs else "[]::VARCHAR[]"


def connect(
    memory_limit: str | None = None, temp_dir: str | Path | None = None
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection set up for flattening: UTC, bounded memory, spilling to disk."""
    # An in-memory database spills its tables to temp_dir past the memory limit; a database
    # file would write every table to disk, needed or not (1 s of a 20,000-patient scan)
    if temp_dir is not None:
        Path(temp_dir).mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    # library code never prints: DuckDB draws a progress bar on stdout for a long query,
    # into the findings table or CSV a scan writes there
    con.execute("SET enable_progress_bar = false")
    if memory_limit:
        con.execute(f"SET memory_limit = {lit(memory_limit)}")
    if temp_dir is not None:
        con.execute(f"SET temp_directory = {lit(str(temp_dir))}")
    con.execute("SET preserve_insertion_order = false")
    for stmt in _macros():
        con.execute(stmt)
    return con


def files_of(sources: Sequence[str | Path]) -> tuple[list[str], list[str]]:
    nd: list[str] = []
    js: list[str] = []
    for src in sources:
        for f in list_input_files(Path(src)):
            name = f.name.lower()
            if name in ("log.ndjson", "log.ndjson.gz"):
                continue
            (nd if name.endswith((".ndjson", ".ndjson.gz")) else js).append(str(f))
    return nd, js


def _read_sql(nd: list[str], js: list[str]) -> str:
    """One row per JSON value of the input (``j``), in file order (``ord``)."""
    parts = []
    if nd:
        parts.append(
            f"SELECT filename AS fname, json AS j FROM read_json_objects({_vlist_keep(nd)}, "
            "format = 'newline_delimited', ignore_errors = true, "
            "maximum_object_size = 67108864, filename = true)"
        )
    if js:
        parts.append(
            f"SELECT filename AS fname, json AS j FROM read_json_objects({_vlist_keep(js)}, "
            "format = 'unstructured', ignore_errors = true, "
            "maximum_object_size = 536870912, filename = true)"
        )
    return " UNION ALL ".join(parts)


def _vlist_keep(values: list[str]) -> str:
    return "[" + ", ".join(lit(v) for v in values) + "]"


def flatten(
    con: duckdb.DuckDBPyConnection,
    sources: Sequence[str | Path],
    report: ReadReport | None = None,
) -> dict[str, Any]:
    """Read ``sources`` (files or folders) into the ``events``, ``codes`` and ``patients``
    tables of ``con``. Returns counts (``resources`` read, ``events``, ``patients``) and the
    ``damaged`` files. ``report`` receives the problems the Python reader finds in those
    files (see :func:`check_damaged`)."""
    with step("read"):
        types = read_resources(con, sources)
    if types is None:
        _empty_tables(con)
        return {"resources": 0, "types": {}, "damaged": [], "events": 0, "patients": 0}
    with step("damaged"):
        damaged = damaged_files(con)
        read_in_full(con, damaged)
        skipped = check_damaged(con, damaged, report)
        if report is not None:
            no_offset_warnings(con, damaged, report)
    counts = flatten_resources(con)
    counts.pop("next_eid")
    return {"resources": sum(types.values()), "types": types, "damaged": damaged,
            "dropped": skipped, **counts}  # fmt: skip


def check_damaged(
    con: duckdb.DuckDBPyConnection, damaged: list[str], report: ReadReport | None
) -> int:
    """Read the damaged files with the Python engine's own reader and validator: its
    file:line errors and warnings go to ``report``, and the resources it skips (a wrong JSON
    type, an unparseable date) are dropped from ``res`` too, so both engines read the same
    resources. Only damaged files pay for it. Returns how many were dropped."""
    if not damaged:
        return 0
    from plugin.fhir.stage import iter_timelines

    sub = ReadReport(max_errors=1_000_000)
    try:
        for _ in iter_timelines(damaged, report=sub):
            pass
    except EmptySource:  # nothing readable in them: the read errors are the report
        pass
    dropped = sorted({(e.resource_type, e.resource_id) for e in sub.errors
                      if e.resource_type and e.resource_id})  # fmt: skip
    if dropped:
        con.execute("CREATE OR REPLACE TEMP TABLE res_drop (rt VARCHAR, id VARCHAR)")
        con.executemany("INSERT INTO res_drop VALUES (?, ?)", dropped)
        con.execute(
            f"DELETE FROM res WHERE fname IN {in_list(damaged)} AND (rt, id) IN "
            "(SELECT (rt, id) FROM res_drop)"
        )
    if report is not None:
        report.skipped += sub.skipped
        report.duplicates += sub.duplicates
        report.skipped_by_reason.update(sub.skipped_by_reason)
        report.errors += sub.errors[: max(0, report.max_errors - len(report.errors))]
        for reason, n in sub.warned_by_reason.items():
            report.warned += n
            report.warned_by_reason[reason] += n
        report.warnings += sub.warnings[: max(0, report.max_errors - len(report.warnings))]
    return sum(1 for e in sub.errors if e.resource_type in R4_TYPES)


def read_resources(
    con: duckdb.DuckDBPyConnection, sources: Sequence[str | Path], *, stream: bool = True
) -> dict[str, int] | None:
    """Read ``sources`` (files or folders). Returns the count per resource type read, or
    None when there are no files.

    NDJSON files of one resource type (a Bulk export's files; the type is taken from the
    first line and checked on every line) are read by DuckDB's typed JSON reader into one
    table per type, ``res_<Type>(fname, rt, id, pref, p0, r)``, ``r`` holding only the
    fields the flattening reads of that type (:data:`FIELDS`): half the memory, and the
    time, of one struct of every field. They are listed in ``fast(f, rt)``. Every other file
    (Bundles, ``.json``, mixed types, a first value the reader cannot use), and every file
    with ``stream=False``, is read into ``res(fname, rt, id, r, pref)`` typed by
    :data:`SCHEMA`. The view ``rs`` shows both with the fields the checks read
    (:data:`SURVEY`)."""
    nd, js = files_of(sources)
    if not nd and not js:
        return None
    by_type: dict[str, list[str]] = {}
    slow: list[str] = []
    for f in nd:
        rt = first_type(f) if stream else None
        if rt in R4_TYPES and rt not in ("Bundle", "OperationOutcome"):
            by_type.setdefault(str(rt), []).append(f)
        else:
            slow.append(f)
    con.execute("CREATE OR REPLACE TEMP TABLE fast (f VARCHAR, rt VARCHAR)")
    con.execute("CREATE OR REPLACE TEMP TABLE refused (f VARCHAR)")
    for rt, all_files in sorted(by_type.items()):
        schema = fields_of(rt)

        def typed(fs: list[str], rt: str = rt, schema: dict[str, object] = schema) -> None:
            con.execute(f"""
                CREATE OR REPLACE TEMP TABLE res_{rt} AS
                SELECT filename AS fname, r.resourceType AS rt, r.id AS id, {PREF} AS pref,
                       {p0_of(rt)} AS p0, r
                FROM {typed_files(fs, schema)}
            """)

        refused = typed_split(con, all_files, schema, typed)
        slow += refused
        files = by_type[rt] = [f for f in all_files if f not in set(refused)]
        if not files:
            continue
        # a file holding another type, or a value the reader cannot use, is read in full
        # (it is damaged: damaged_files)
        mixed = [str(f) for (f,) in con.execute(
            f"SELECT DISTINCT fname FROM res_{rt} WHERE rt IS DISTINCT FROM {lit(rt)}"
        ).fetchall()]  # fmt: skip
        if mixed:
            con.execute(f"DELETE FROM res_{rt} WHERE fname IN {in_list(mixed)}")
            slow += mixed
        kept = [(f, rt) for f in files if f not in set(mixed)]
        if kept:
            con.executemany("INSERT INTO fast VALUES (?, ?)", kept)
    by_type = {rt: files for rt, files in by_type.items() if files}
    read_full(con, slow, js)
    survey_view(con, {rt: f"res_{rt}" for rt in by_type})
    con.execute(
        "CREATE OR REPLACE TEMP TABLE res_files AS SELECT fname AS f, rt, count(*) AS n "
        "FROM rs GROUP BY ALL"
    )
    keep = timeline_types()
    con.execute(f"DELETE FROM res WHERE rt IS NULL OR rt NOT IN {in_list(keep)}")
    for rt in by_type:
        if rt not in keep:
            con.execute(f"DROP TABLE res_{rt}")
    con.execute(f"DELETE FROM fast WHERE rt NOT IN {in_list(keep)}")
    survey_view(con, {rt: f"res_{rt}" for rt in by_type if rt in keep})
    types: dict[str, int] = {}
    for _f, rt, n in con.execute("SELECT * FROM res_files").fetchall():
        if rt in R4_TYPES and rt not in ("Bundle", "OperationOutcome"):
            types[rt] = types.get(rt, 0) + int(n)
    return types


def p0_of(rt: str) -> str:
    """:func:`p0_sql` for the resources of a fast file of type ``rt``, from its ``r``."""
    if rt in shared_types():
        return "NULL::VARCHAR"
    return "r.id" if rt == "Patient" else f"patient_of({PREF})"


def first_type(path: str) -> str | None:
    """The resourceType of the first value of an NDJSON file (None: unreadable)."""
    opener: Any = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    value = json.loads(line)
                    rt = value.get("resourceType") if isinstance(value, dict) else None
                    return rt if isinstance(rt, str) else None
    except (OSError, ValueError, EOFError):
        return None
    return None


def survey_view(con: duckdb.DuckDBPyConnection, rels: dict[str, str]) -> None:
    """``rs(fname, rt, id, pref, p0, r)``: every resource read, ``r`` the :data:`SURVEY`
    fields: the rows of ``res`` and of ``rels`` (a relation per type, with the fields of
    :func:`fields_of`; NULL where a type does not hold a field)."""
    parts = [f"SELECT fname, rt, id, pref, NULL::VARCHAR AS p0, {_pick('r', tuple(SURVEY))} "
             "AS r FROM res"]  # fmt: skip
    for rt, rel in sorted(rels.items()):
        have = set(FIELDS.get(rt, _PATIENT_REF))
        fields = ", ".join(f"'{k}': r.{k}" if k in have else f"'{k}': NULL::{ddl(v)}"
                           for k, v in SURVEY.items())  # fmt: skip
        parts.append(f"SELECT fname, rt, id, pref, p0, {{{fields}}} AS r FROM {rel}")
    con.execute(f"CREATE OR REPLACE TEMP VIEW rs AS {' UNION ALL '.join(parts)}")


def fields_of(rt: str) -> dict[str, object]:
    """The :data:`SCHEMA` of the fields the flattening reads of type ``rt``."""
    return {k: SCHEMA[k] for k in FIELDS.get(rt, _PATIENT_REF)}


PREF = "coalesce(r.subject.reference, r.patient.reference, r.beneficiary.reference)"


def read_full(
    con: duckdb.DuckDBPyConnection, nd: list[str], js: list[str], *, append: bool = False
) -> None:
    """``nd`` and ``js`` → ``res`` (created, or with ``append`` added to), typed by
    :data:`SCHEMA`, Bundles expanded to entries."""
    bundle_schema = json.dumps(_RES_SCHEMA)
    read = _read_sql(nd, js) if nd or js else "SELECT NULL::VARCHAR AS fname, '{}' AS j LIMIT 0"
    # Each JSON value is parsed once: typed by ``from_json`` straight from the file reader
    # (a view read twice would read the files twice). ``entry`` is typed only to expand
    # Bundles, in place, afterwards. A value the reader cannot use (invalid JSON, not an
    # object, no or an unknown resourceType) stays a row until it is counted per file
    # (res_files), so the files to re-read for a file:line report are known without a
    # second pass (damaged_files).
    into = ("INSERT INTO res BY NAME" if append else "CREATE OR REPLACE TEMP TABLE res AS")
    con.execute(f"""
        {into}
        SELECT fname, r.resourceType AS rt, r.id AS id, r, {PREF} AS pref
        FROM (SELECT fname, from_json(j, '{bundle_schema}') AS r FROM ({read}))
    """)
    # a .json file holding several values is NDJSON under the wrong name (reported)
    if not append:
        con.execute("CREATE OR REPLACE TEMP TABLE res_top (f VARCHAR, n BIGINT)")
    if js:
        con.execute(f"INSERT INTO res_top SELECT fname, count(*) FROM res WHERE fname IN "
                    f"{in_list(js)} GROUP BY fname HAVING count(*) > 1")  # fmt: skip
    # Bundles (in .json files or on an NDJSON line) are expanded to their entries; an entry
    # without an id takes the uuid of its fullUrl (plugin.fhir.read).
    con.execute(f"""
        INSERT INTO res
        SELECT fname, r.resourceType AS rt, r.id AS id, r, {PREF} AS pref
        FROM (SELECT fname, from_json(CASE WHEN json_extract(e, '$.resource.id') IS NULL
                         AND starts_with(json_extract_string(e, '$.fullUrl'), 'urn:uuid:')
                    THEN json_merge_patch(json_extract(e, '$.resource'), json_object(
                         'id', substr(json_extract_string(e, '$.fullUrl'), 10)))
                    ELSE json_extract(e, '$.resource') END, '{bundle_schema}') AS r
              FROM (SELECT fname, unnest(r.entry) AS e FROM res WHERE rt = 'Bundle')
              WHERE json_extract(e, '$.resource') IS NOT NULL)
    """)
    con.execute("DELETE FROM res WHERE rt = 'Bundle'")
    if not append:
        con.execute("ALTER TABLE res DROP COLUMN IF EXISTS p0")


def read_in_full(con: duckdb.DuckDBPyConnection, files: list[str]) -> None:
    """Move fast ``files`` to ``res`` (the damaged ones: the Python reader's report and the
    resources it skips are applied to ``res``)."""
    moved = con.execute(f"SELECT f, rt FROM fast WHERE f IN {in_list(files)}").fetchall() \
        if files else []  # fmt: skip
    if not moved:
        return
    names = [str(f) for f, _rt in moved]
    con.execute(f"""
        INSERT INTO res BY NAME
        SELECT fname, r.resourceType AS rt, r.id AS id, r, {PREF} AS pref
        FROM (SELECT fname, from_json(j, '{json.dumps(_RES_SCHEMA)}') AS r
              FROM ({_read_sql(names, [])}))
        WHERE r.resourceType IN {in_list(timeline_types())}
    """)
    for rt in sorted({str(rt) for _f, rt in moved}):
        con.execute(f"DELETE FROM res_{rt} WHERE fname IN {in_list(names)}")
    con.execute(f"DELETE FROM fast WHERE f IN {in_list(names)}")


def ddl(schema: object) -> str:
    """A :data:`SCHEMA`-style type as DuckDB DDL."""
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return ddl(schema[0]) + "[]"
    if not isinstance(schema, dict):
        raise TypeError(f"not a schema: {schema!r}")
    return "STRUCT(" + ", ".join(f'"{k}" {ddl(v)}' for k, v in schema.items()) + ")"


def typed_files(files: Sequence[str], schema: dict[str, object]) -> str:
    """NDJSON ``files`` as rows ``(filename, r)``, ``r`` typed by ``schema`` by DuckDB's
    JSON reader itself. Strict: a line that is not a JSON object, a field of another JSON
    shape (a string where an object or a list belongs, or the reverse) or a number it cannot
    read makes the read fail (see :func:`typed_split`); a scalar of another JSON type is
    converted (``12`` for a string field, ``"12"`` for a number). Read as whole records (a
    single struct column would read such a field as absent, silently)."""
    cols = "{" + ", ".join(f"{lit(k)}: {lit(ddl(v))}" for k, v in schema.items()) + "}"
    pack = "{" + ", ".join(f"{lit(k)}: {_ident(k)}" for k in schema) + "}"
    return (f"(SELECT filename, {pack} AS r FROM read_json({_vlist_keep(list(files))}, "
            "format = 'newline_delimited', records = true, ignore_errors = false, "
            f"maximum_object_size = 67108864, filename = true, columns = {cols}))")  # fmt: skip


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# what DuckDB raises when its typed reader refuses a value (typed_files)
_REFUSED = (duckdb.InvalidInputException, duckdb.ConversionException)


def typed_split(
    con: duckdb.DuckDBPyConnection,
    files: list[str],
    schema: dict[str, object],
    run: Callable[[list[str]], object],
) -> list[str]:
    """Run ``run(files)``, a statement over :func:`typed_files` of ``files``. When the typed
    reader refuses a value, the files it refuses (each read alone; a clean export pays
    nothing for it) are left out, ``run`` runs on the rest, and they are recorded in the
    reader's ``refused`` table (:func:`damaged_files` lists them) and returned: the caller
    reads them in full and has the Python reader decide."""
    try:
        run(files)
        return []
    except _REFUSED:
        refused = [f for f in files if not _typed_ok(con, f, schema)]
        if not refused:
            raise
    con.executemany("INSERT INTO refused VALUES (?)", [(f,) for f in refused])
    rest = [f for f in files if f not in set(refused)]
    if rest:
        run(rest)
    return refused


def _typed_ok(con: duckdb.DuckDBPyConnection, file: str, schema: dict[str, object]) -> bool:
    # every field typed: a count, even of r, is answered without typing (r is never NULL)
    try:
        con.execute("SELECT max(hash(r)) FROM "
                    f"{typed_files([file], schema)}").fetchone()  # fmt: skip
    except _REFUSED:
        return False
    return True


def no_offset_warnings(
    con: duckdb.DuckDBPyConnection, damaged: list[str], report: ReadReport
) -> None:
    """One warning per distinct date-time without a UTC offset in each resource (read as
    UTC), as the Python reader gives (:data:`plugin.fhir.values.NO_OFFSET`), counted in SQL
    rather than by re-reading: a whole export written without offsets is common. Damaged
    files were counted by :func:`check_damaged`. The examples name the file, not the line."""
    fields = ("list_concat([" + ", ".join(_TIME_FIELDS) + "], list_transform(coalesce("
              "r.location, []), lambda e: e.period.start), list_transform(coalesce("
              'r.location, []), lambda e: e.period."end"))')  # fmt: skip
    skip = f"AND fname NOT IN {in_list(damaged)}" if damaged else ""
    rows = con.execute(f"""
        WITH v AS (
            SELECT DISTINCT fname, rt, id, s FROM (
                SELECT fname, rt, id, unnest({fields}) AS s FROM rs WHERE true {skip})
            WHERE length(s) BETWEEN 16 AND 32 AND NOT ends_with(s, 'Z') AND strpos(s, '+') = 0
              AND substr(s, -6, 1) <> '-'
              AND regexp_full_match(s, '\\d{{4}}-\\d\\d-\\d\\dT\\d\\d:\\d\\d(:\\d\\d(\\.\\d+)?)?')
              AND fdt(s) IS NOT NULL)
        SELECT (SELECT count(*) FROM v), * FROM (SELECT * FROM v LIMIT {report.max_errors})
    """).fetchall()
    if not rows:
        return
    report.warned += int(rows[0][0])
    report.warned_by_reason[NO_OFFSET] += int(rows[0][0])
    room = max(0, report.max_errors - len(report.warnings))
    report.warnings += [FhirParseError(str(f), f"{NO_OFFSET}: {s!r} read as UTC (set "
                                       "--assume-tz)", rt, rid)
                        for _n, f, rt, rid, s in rows[:room]]  # fmt: skip


def damaged_files(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The files :func:`read_resources` found holding a value the reader skips (invalid
    JSON, not an object, no or an unknown resourceType), for the caller to re-read with the
    Python reader for the file:line report: a clean export pays nothing for it."""
    rows = con.execute("SELECT f, rt FROM res_files").fetchall()
    bad = {str(f) for f, rt in rows if rt is None or rt not in R4_TYPES}
    bad |= {str(f) for (f,) in con.execute("SELECT f FROM res_top").fetchall()}
    # a field of another JSON shape (typed_split): the Python reader says which resource
    bad |= {str(f) for (f,) in con.execute("SELECT f FROM refused").fetchall()}
    # the same Type/id more than once: the Python reader says which copy it kept and why
    bad |= {str(f) for (f,) in con.execute(
        "SELECT DISTINCT fname FROM rs WHERE (rt, id) IN (SELECT (rt, id) FROM rs "
        "WHERE id IS NOT NULL GROUP BY rt, id HAVING count(*) > 1)").fetchall()}
    # times the reader rejects or warns about: unparseable, a placeholder year, an end
    # before its start (the flattening drops or reads them as unknown, as the Python
    # reader does; its report names them)
    times = " OR ".join(f"tbad({f})" for f in _TIME_FIELDS)
    periods = " OR ".join(f'fdt({p}."end") < fdt({p}.start)' for p in _PERIODS)
    bad |= {str(f) for (f,) in con.execute(
        f"SELECT DISTINCT fname FROM rs WHERE {times} OR {periods} OR list_bool_or("
        "list_transform(coalesce(r.location, []), lambda e: tbad(e.period.start) OR "
        'tbad(e.period."end") OR fdt(e.period."end") < fdt(e.period.start)))').fetchall()}
    return sorted(bad)


_PERIODS = ("r.onsetPeriod", "r.effectivePeriod", "r.performedPeriod", "r.occurrencePeriod",
            "r.period")  # fmt: skip
_TIME_FIELDS = (
    "r.onsetDateTime", "r.recordedDate", "r.effectiveDateTime", "r.effectiveInstant",
    "r.issued", "r.performedDateTime", "r.authoredOn", "r.occurrenceDateTime", "r.birthDate",
    "r.deceasedDateTime", *(f"{p}.start" for p in _PERIODS), *(f'{p}."end"' for p in _PERIODS),
)  # fmt: skip


def flatten_resources(con: duckdb.DuckDBPyConnection, first_eid: int = 1) -> dict[str, int]:
    """The temp table ``res`` (see :func:`read_resources`; consumed) → ``events``, ``codes``,
    ``patients``, ``text_concepts``, event ids from ``first_eid`` on. Returns the ``events``
    and ``patients`` counts, and ``next_eid``."""
    shared = in_list(shared_types())
    with step("patients"):
        _patients_of(con, shared)
        _shared(con, shared)
    with step("events"):
        _events(con)
    with step("derive"):
        _derive(con, first_eid)
    with step("text_concepts"):
        _text_concepts(con)
    counts = con.execute(
        "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM patients), "
        f"(SELECT coalesce(max(eid) + 1, {int(first_eid)}) FROM events)"
    ).fetchone()
    counts = counts or (0, 0, first_eid)
    return {"events": int(counts[0]), "patients": int(counts[1]), "next_eid": int(counts[2])}


def p0_sql(shared: str) -> str:
    """A resource's patient as written (a conditional reference stays ``?query``; NULL for
    the shared types), from the columns of ``res``."""
    return (f"CASE WHEN rt IN {shared} THEN NULL WHEN rt = 'Patient' THEN id "
            "ELSE patient_of(pref) END")  # fmt: skip


def pident_sql(name: str, src: str) -> str:
    """Table ``name(k, pid)``: each identifier key (``system|value`` and ``|value``) of the
    Patients in ``src(id, ident)``, to the first Patient id holding it."""
    return f"""
        CREATE OR REPLACE TEMP TABLE {name} AS
        SELECT k, min(pid) AS pid FROM (
            SELECT id AS pid,
                   unnest([coalesce(i.system, '') || '|' || i.value, '|' || i.value]) AS k
            FROM (SELECT id, unnest(ident) AS i FROM ({src}))
            WHERE i.value IS NOT NULL)
        GROUP BY k
    """


def _patients_of(con: duckdb.DuckDBPyConnection, shared: str) -> None:
    """Per type T the views ``typ_T(rt, id, p0, r)``, every resource of the type with its
    patient, and ``pres_T(pid, rt, id, src, r)``, each patient's resources, one copy per
    Type/id (plugin.fhir.stage); ``pids``, every patient with a resource."""
    fast = _fast_types(con)
    # conditional Patient?identifier= references: resolved against the Patients' identifiers
    patients = ["SELECT id, r.identifier AS ident FROM res WHERE rt = 'Patient'"]
    if "Patient" in fast:
        patients.append("SELECT id, r.identifier FROM res_Patient")
    con.execute(pident_sql("pident", " UNION ALL ".join(patients)))
    # Each resource's patient, resolved in place: a copy of the wide rows costs as much as
    # reading them. p0 may already be there (an incremental scan stages it).
    if "p0" not in {c[0] for c in con.execute("DESCRIBE res").fetchall()}:
        con.execute("ALTER TABLE res ADD COLUMN p0 VARCHAR")
        con.execute(f"UPDATE res SET p0 = {p0_sql(shared)}")
    for table in ("res", *(f"res_{rt}" for rt in fast)):
        con.execute(f"""
            UPDATE {table} SET p0 = pident.pid FROM pident
            WHERE starts_with({table}.p0, '?') AND pident.k = qkey({table}.p0)
        """)
        con.execute(f"UPDATE {table} SET p0 = NULL WHERE starts_with(p0, '?')")  # no Patient
    valid = _valid(shared)
    # one copy per Type/id: the latest meta.lastUpdated, then a content hash (only the
    # duplicated keys pay for the ordering; a duplicated key is never in a fast file: its
    # files are damaged, read in full)
    con.execute(f"""
        DELETE FROM res WHERE rowid IN (
            SELECT rowid FROM (
                SELECT rowid, row_number() OVER (
                    PARTITION BY p0, rt, id ORDER BY fdt_raw(r.meta.lastUpdated) DESC NULLS LAST,
                    md5(CAST(r AS VARCHAR)) DESC) AS n
                FROM res WHERE {valid} AND id IS NOT NULL AND (p0, rt, id) IN (
                    SELECT (p0, rt, id) FROM res WHERE {valid} AND id IS NOT NULL
                    GROUP BY p0, rt, id HAVING count(*) > 1))
            WHERE n > 1)
    """)
    union = " UNION ".join(f"SELECT DISTINCT p0 AS pid FROM {t} WHERE {valid}"
                           for t in ("res", *(f"res_{rt}" for rt in fast)))  # fmt: skip
    con.execute(f"CREATE OR REPLACE TEMP TABLE pids AS {union}")
    for rt in sorted(timeline_types()):
        parts = [f"SELECT rt, id, p0, {_pick('r', FIELDS[rt])} AS r FROM res WHERE rt = {lit(rt)}"]
        if rt in fast:
            parts.append(f"SELECT rt, id, p0, r FROM res_{rt}")
        con.execute(f"CREATE OR REPLACE TEMP VIEW typ_{rt} AS {' UNION ALL '.join(parts)}")
        con.execute(f"""
            CREATE OR REPLACE TEMP VIEW pres_{rt} AS
            SELECT p0 AS pid, rt, id, rt || '/' || coalesce(id, '?') AS src, r
            FROM typ_{rt} WHERE {valid}
        """)


def _valid(shared: str) -> str:
    """A resource with a usable patient (``p0``), of a patient's type."""
    return ("p0 IS NOT NULL AND p0 <> '' AND strpos(p0, chr(9)) = 0 AND strpos(p0, chr(10)) = 0"
            f" AND rt NOT IN {shared}")  # fmt: skip


def _fast_types(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The types read into tables of their own (:func:`read_resources`)."""
    names = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if "fast" not in names:
        return []
    return [str(rt) for (rt,) in con.execute("SELECT DISTINCT rt FROM fast ORDER BY rt")
            .fetchall() if f"res_{rt}" in names]  # fmt: skip


def _shared(con: duckdb.DuckDBPyConnection, shared: str) -> None:
    """Locations (name, type codes, by reference key and identifier) and Medication codes."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE loc AS
        SELECT 'Location/' || id AS k, id, r.name AS name,
               list_concat(flatten(list_transform(coalesce(r.type, []),
                                                  lambda cc: list_transform(codings(cc),
                                                                            lambda x: x.c))),
                           list_transform(codings(r.physicalType), lambda x: x.c)) AS types,
               r.identifier AS ident
        FROM typ_Location WHERE id IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY id ORDER BY fdt_raw(r.meta.lastUpdated) DESC
                                   NULLS LAST, md5(CAST(r AS VARCHAR)) DESC) = 1
    """)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE loc_ident AS
        SELECT k, min(lk) AS lk FROM (
            SELECT lk, unnest([coalesce(i.system, '') || '|' || i.value, '|' || i.value]) AS k
            FROM (SELECT k AS lk, unnest(ident) AS i FROM loc) WHERE i.value IS NOT NULL)
        GROUP BY k
    """)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE med AS
        SELECT 'Medication/' || id AS k, r.code AS code FROM typ_Medication
        WHERE id IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY id) = 1
    """)


def _ev(kind: str, t: str, codes_list: str, **cols: str) -> str:
    """One projection onto the common event columns (missing columns are NULL)."""
    defaults = {
        "te": "NULL::BIGINT", "enc": "NULL::VARCHAR", "status": "r.status",
        "value": "NULL::DOUBLE", "unit": "NULL::VARCHAR", "comparator": "NULL::VARCHAR",
        "positive": "NULL::BOOLEAN", "abnormal": "NULL::VARCHAR",
        "setting": "NULL::VARCHAR",
        "disposition": "NULL::VARCHAR", "admit_source": "NULL::VARCHAR",
        "planned": "NULL::BOOLEAN", "icu": "false", "part_of": "NULL::VARCHAR",
        "label": "NULL::VARCHAR", "interp": "[]::VARCHAR[]", "source": "src",
        "off": "NULL::INTEGER",
        "primary_s": "NULL::VARCHAR", "primary_c": "NULL::VARCHAR",
    }  # fmt: skip
    defaults.update(cols)
    sel = ", ".join(f"{v} AS {k}" for k, v in defaults.items())
    return f"SELECT pid, {lit(kind)} AS kind, {t} AS t, {codes_list} AS own, {sel}"


def _events(con: duckdb.DuckDBPyConnection) -> None:
    # Encounter start per (pid, "Encounter/id"), for Conditions/Procedures without a time;
    # Condition -> Encounter listing it in Encounter.diagnosis (plugin.fhir.parse._diagnosis_of).
    con.execute("""
        CREATE OR REPLACE TEMP TABLE enc_start AS
        SELECT pid, src, coalesce(fdt(r.period.start), pend(r.period)) AS st,
               off_of2(r.period.start, r.period."end") AS soff
        FROM pres_Encounter WHERE true
    """)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE dx_of AS
        SELECT pid, ck, min(src) AS enc FROM (
            SELECT pid, src, canon(unnest(r.diagnosis).condition.reference, 'Condition') AS ck
            FROM pres_Encounter WHERE true)
        WHERE ck IS NOT NULL GROUP BY pid, ck
    """)
    cond = _ev(
        "condition",
        "coalesce(fdt(r.onsetDateTime), fdt(r.onsetPeriod.start), fdt(r.recordedDate), es.st)",
        "own_of(l, b)",
        enc="ek",
        status="first_code(r.clinicalStatus)",
        # an event timed by its encounter takes the offset that time was written with
        # (plugin.fhir.parse._with_offsets)
        off="coalesce(off_of3(r.onsetDateTime, r.onsetPeriod.start, r.recordedDate), "
        "CASE WHEN coalesce(fdt(r.onsetDateTime), fdt(r.onsetPeriod.start), "
        "fdt(r.recordedDate)) IS NULL THEN soff END)",
        label="coalesce(l[b].d, r.code.text)",
    )
    # the primary code is added as the rows are written: a later copy of the wide event
    # rows to add it cost as much as building them
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ev0 AS {_WITH_PRIMARY} (
        WITH c0 AS (
            SELECT p.pid, p.src, {_pick("p.r", _COND_FIELDS)} AS r, codings(p.r.code) AS l,
                   canon(coalesce(p.r.encounter.reference, p.r.context.reference, d.enc),
                         'Encounter') AS ek
            FROM pres_Condition p LEFT JOIN dx_of d ON d.pid = p.pid AND d.ck = p.src
            WHERE true
              AND coalesce(p.r.status, '') <> 'entered-in-error'
              AND coalesce(first_code(p.r.verificationStatus), '')
                  NOT IN ('entered-in-error', 'refuted')
              AND NOT (fbad(p.r.onsetDateTime) OR fbad(p.r.onsetPeriod.start)
                       OR fbad(p.r.onsetPeriod."end") OR fbad(p.r.recordedDate))
        ), c1 AS (
            SELECT c0.*, best_ix(l, {_ordered_prefs("Condition")}) AS b, es.st, es.soff
            FROM c0 LEFT JOIN enc_start es ON es.pid = c0.pid AND es.src = c0.ek
        )
        {cond.replace("es.st", "st")} FROM c1 es

        UNION ALL
        -- Observation: the resource and each coded component
        SELECT * FROM (
            WITH parts AS (
                -- the resource, then each component; o0 is written out twice rather than
                -- shared, since a CTE read twice is materialised (wide rows and all) and
                -- only resources with components take the second scan's work
                SELECT pid, src, ost, t0, ek, ooff, {_part("r")} AS part, true AS main
                FROM ({_OBS0})
                UNION ALL
                -- a component counts only with a code (filtered before the unnest)
                SELECT pid, src, ost, t0, ek, ooff, unnest(list_filter(r.component,
                           lambda c: list_bool_or(list_transform(coalesce(c.code.coding, []),
                               lambda x: x.code IS NOT NULL AND x.code <> '')))) AS part,
                       false AS main
                FROM ({_OBS0} AND r.component IS NOT NULL)
            ), p1 AS (
                SELECT *, codings(part.code) AS l, interp_of(part) AS ip0 FROM parts
            ), p2 AS (
                SELECT *, best_ix(l, {_ordered_prefs("Observation")}) AS b,
                       CASE WHEN len(ip0) > 0 THEN ip0 ELSE implied_of(part) END AS ip
                FROM p1
            ), p3 AS (
                SELECT *, CASE WHEN len(ip) > 0 THEN first_placed(list_transform(ip,
                           lambda c: interp_pos(c))) END AS ipos,
                       CASE WHEN len(ip) > 0 THEN first_placed(list_transform(ip,
                           lambda c: interp_flag(c))) END AS iflag,
                       coded_meaning(part) AS cm, text_meaning(part) AS tm, range_of(part) AS rr,
                       value_of(part) AS val
                FROM p2
            ), p4 AS (
                SELECT *, CASE WHEN ipos IS NOT NULL THEN ipos = 'true'
                               WHEN cm IS NOT NULL THEN meaning_bool(cm)
                               ELSE meaning_bool(tm) END AS pos
                FROM p3
            )
            {
        _ev(
            "observation",
            "t0",
            "own_of(l, b)",
            enc="ek",
            value="val",
            unit="unit_of(part)",
            comparator="part.valueQuantity.comparator",
            interp="ip",
            positive="pos",
            abnormal="coalesce(iflag, by_range(val, part.valueQuantity.comparator, "
            "rr.low.value, rr.high.value), CASE WHEN pos THEN 'abnormal' "
            "WHEN NOT pos THEN 'normal' END)",
            off="ooff",
            status="ost",
            label="coalesce(l[b].d, part.code.text)",
        )
    } FROM p4
        )

        UNION ALL
        SELECT * FROM (
            WITH x0 AS (
                SELECT p.pid, p.src, {_pick("p.r", _PROC_FIELDS)} AS r, codings(p.r.code) AS l,
                       canon(coalesce(p.r.encounter.reference, p.r.context.reference),
                             'Encounter') AS ek
                FROM pres_Procedure p WHERE true
                  AND coalesce(p.r.status, '') NOT IN ('entered-in-error', 'not-done')
                  AND NOT (fbad(p.r.performedPeriod.start) OR fbad(p.r.performedPeriod."end")
                           OR fbad(p.r.performedDateTime))
            ), x1 AS (
                SELECT x0.*, best_ix(l, {_ordered_prefs("Procedure")}) AS b, es.st, es.soff
                FROM x0 LEFT JOIN enc_start es ON es.pid = x0.pid AND es.src = x0.ek
            )
            {
        _ev(
            "procedure",
            _PROC_T,
            "own_of(l, b)",
            enc="ek",
            te="pend(r.performedPeriod)",
            off=_PROC_OFF,
            label="coalesce(l[b].d, r.code.text)",
        )
    } FROM x1
        )

        UNION ALL
        SELECT * FROM (
            WITH x0 AS (
                SELECT pid, src, r, codings(r.code) AS l,
                       flatten(list_transform(coalesce(r.conclusionCode, []),
                                              lambda cc: codings(cc))) AS concl
                FROM pres_DiagnosticReport WHERE true
                  AND coalesce(r.status, '') NOT IN ('entered-in-error', 'cancelled')
                  AND NOT (fbad(r.effectivePeriod.start) OR fbad(r.effectivePeriod."end")
                           OR fbad(r.issued) OR fbad(r.effectiveDateTime))
            ), x1 AS (SELECT *, best_ix(l, {_ordered_prefs("DiagnosticReport")}) AS b FROM x0)
            {
        _ev(
            "report",
            "coalesce(fdt(r.effectiveDateTime), fdt(r.effectivePeriod.start), fdt(r.issued))",
            "list_concat(own_of(l, b), concl)",
            off="off_of3(r.effectiveDateTime, r.effectivePeriod.start, r.issued)",
            enc="canon(r.encounter.reference, 'Encounter')",
            label="coalesce(l[b].d, r.code.text)",
        )
    } FROM x1
        )

        UNION ALL
        SELECT * FROM (
            WITH x0 AS (
                SELECT pid, src, r, codings(r.code) AS l
                FROM pres_ServiceRequest WHERE true
                  AND coalesce(r.status, '') <> 'entered-in-error'
                  AND NOT (fbad(r.occurrencePeriod.start) OR fbad(r.occurrencePeriod."end")
                           OR fbad(r.authoredOn) OR fbad(r.occurrenceDateTime))
            ), x1 AS (SELECT *, best_ix(l, {_ordered_prefs("ServiceRequest")}) AS b FROM x0)
            {
        _ev(
            "order",
            "coalesce(fdt(r.authoredOn), fdt(r.occurrenceDateTime), fdt(r.occurrencePeriod.start))",
            "own_of(l, b)",
            enc="canon(r.encounter.reference, 'Encounter')",
            off="off_of3(r.authoredOn, r.occurrenceDateTime, r.occurrencePeriod.start)",
            label="coalesce(l[b].d, r.code.text)",
        )
    } FROM x1
        )

        UNION ALL
        SELECT * FROM (
            WITH x0 AS (
                SELECT p.pid, p.src, {_pick("p.r", _MED_FIELDS)} AS r,
                       coalesce(p.r.medicationCodeableConcept,
                                CASE WHEN starts_with(p.r.medicationReference.reference, '#')
                                     THEN list_filter(coalesce(p.r.contained, []), lambda c:
                                          c.id = substr(p.r.medicationReference.reference, 2)
                                     )[1].code
                                END,
                                m.code) AS cc
                FROM pres_MedicationRequest p LEFT JOIN med m
                  ON m.k = canon(p.r.medicationReference.reference, 'Medication')
                WHERE true
                  AND coalesce(p.r.status, '') <> 'entered-in-error' AND NOT fbad(p.r.authoredOn)
            ), x1 AS (SELECT *, codings(cc) AS l FROM x0),
            x2 AS (SELECT *, best_ix(l, {_ordered_prefs("MedicationRequest")}) AS b FROM x1)
            {
        _ev(
            "medication",
            "fdt(r.authoredOn)",
            "own_of(l, b)",
            off="off_of1(r.authoredOn)",
            enc="canon(r.encounter.reference, 'Encounter')",
            label="coalesce(l[b].d, cc.text)",
        )
    } FROM x2
        )

        UNION ALL
        SELECT * FROM (
            {_ev("death", "fdt(r.deceasedDateTime)", _NO_CODES, off="off_of1(r.deceasedDateTime)")}
            FROM pres_Patient WHERE true AND NOT fbad(r.birthDate)
              AND NOT fbad(r.deceasedDateTime)
        ))
    """)
    _encounters(con)
    con.execute("DROP TABLE enc_start")
    con.execute("DROP TABLE dx_of")
    # the typed resources are done with but for the Patients and reports read later: their
    # memory goes to the steps below rather than to spilling
    _drop_types(con, keep=("Patient", "DiagnosticReport"))


def _drop_types(con: duckdb.DuckDBPyConnection, keep: tuple[str, ...] = ()) -> None:
    fast = set(_fast_types(con))
    for rt in sorted(timeline_types() - set(keep)):
        con.execute(f"DROP VIEW IF EXISTS pres_{rt}")
        con.execute(f"DROP VIEW IF EXISTS typ_{rt}")
        if rt in fast:
            con.execute(f"DROP TABLE res_{rt}")


def _pick(alias: str, fields: tuple[str, ...]) -> str:
    """The fields of ``alias`` a step reads, as a struct of that name: carrying the whole
    typed resource through a join or a CTE costs several times the step's own work."""
    return "{" + ", ".join(f"'{f}': {alias}.{f}" for f in fields) + "}"


_COND_FIELDS = ("status", "clinicalStatus", "code", "onsetDateTime", "onsetPeriod",
                "recordedDate")  # fmt: skip
_PROC_FIELDS = ("status", "code", "performedDateTime", "performedPeriod")
_MED_FIELDS = ("status", "authoredOn", "encounter")
_ENC_FIELDS = ("status", "period", "class", "classHistory", "type", "serviceType", "priority",
               "hospitalization", "location", "diagnosis", "reasonCode", "reasonReference",
               "partOf")  # fmt: skip


# each event row with its primary code (system0, code0)
_WITH_PRIMARY = "SELECT *, own[1].s AS system0, own[1].c AS code0 FROM"
_OBS_FIELDS = ("code", "valueQuantity", "valueInteger", "valueCodeableConcept", "valueString",
               "interpretation", "referenceRange", "component")  # fmt: skip
# the Observations that are read, with their time, encounter and UTC offset
_OBS0 = f"""
    SELECT pid, src, {_pick("r", _OBS_FIELDS)} AS r, r.status AS ost,
           coalesce(fdt(r.effectiveDateTime), fdt(r.effectiveInstant),
                    fdt(r.effectivePeriod.start), fdt(r.issued)) AS t0,
           canon(r.encounter.reference, 'Encounter') AS ek,
           off_of4(r.effectiveDateTime, r.effectiveInstant, r.effectivePeriod.start,
                   r.issued) AS ooff
    FROM pres_Observation WHERE true
      AND coalesce(r.status, '') NOT IN ('entered-in-error', 'cancelled')
      AND NOT (fbad(r.effectivePeriod.start) OR fbad(r.effectivePeriod."end")
               OR fbad(r.issued) OR fbad(r.effectiveDateTime) OR fbad(r.effectiveInstant))"""
_NO_CODES = "[]::STRUCT(s VARCHAR, c VARCHAR, d VARCHAR)[]"
_PROC_OFF = (
    'coalesce(off_of3(r.performedDateTime, r.performedPeriod.start, r.performedPeriod."end"), '
    "CASE WHEN coalesce(fdt(r.performedDateTime), fdt(r.performedPeriod.start), "
    "pend(r.performedPeriod)) IS NULL THEN soff END)"
)
_PROC_T = (
    "coalesce(fdt(r.performedDateTime), fdt(r.performedPeriod.start), pend(r.performedPeriod), st)"
)


def _part(alias: str) -> str:
    """The resource itself as an Observation part (the shape of a component)."""
    fields = ["code", "valueQuantity", "valueInteger", "valueCodeableConcept", "valueString",
              "interpretation", "referenceRange"]  # fmt: skip
    return "{" + ", ".join(f"'{f}': {alias}.{f}" for f in fields) + "}"


def _encounters(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE enc0 AS
        SELECT pid, src, {_pick("r", _ENC_FIELDS)} AS r,
               coalesce(fdt(r.period.start), pend(r.period)) AS t0,
               coalesce(r.class.code, '') AS class_code,
               (upper(coalesce(r.class.code, '')) = 'ICU' OR (r.partOf IS NOT NULL AND coalesce(
                   list_bool_or(list_transform(list_concat(coalesce(r.meta.profile, []),
                       list_transform(coalesce(r.identifier, []),
                                      lambda i: coalesce(i.system, ''))),
                       lambda m: strpos(lower(m), 'icu') > 0)), false))) AS is_icu
        FROM pres_Encounter WHERE true AND coalesce(r.status, '') <> 'entered-in-error'
          AND NOT (fbad(r.period.start) OR fbad(r.period."end")
                   OR coalesce(list_bool_or(list_transform(coalesce(r.location, []), lambda e:
                        fbad(e.period.start) OR fbad(e.period."end"))), false))
    """)
    # the Locations of ICU encounters are ICU locations (plugin.fhir.parse._icu_locations)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE enc_loc AS
        WITH e AS (
            SELECT pid, src, is_icu, t0, unnest(coalesce(r.location, [])) AS x,
                   generate_subscripts(coalesce(r.location, []), 1) AS i
            FROM enc0
        ), k AS (
            SELECT e.*, x.location.reference AS ref,
                   coalesce(l1.k, li.lk) AS lk0
            FROM e LEFT JOIN loc l1 ON l1.k = canon(x.location.reference, 'Location')
            LEFT JOIN loc_ident li ON li.k = qkey(x.location.reference)
        )
        SELECT k.pid, k.src, k.i, k.is_icu, k.ref,
               coalesce(k.lk0, canon(k.ref, 'Location')) AS lkey,
               coalesce(nullif(k.x.location.display, ''), nullif(loc.name, ''),
                        nullif(k.ref, ''), '?') AS name,
               coalesce(loc.types, []) AS types,
               coalesce(fdt(k.x.period.start), k.t0) AS st, pend(k.x.period) AS en,
               k.x.period.start AS pst
        FROM k LEFT JOIN loc ON loc.k = k.lk0
    """)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE enc_loc2 AS
        SELECT l.*, CASE WHEN icu.lkey IS NOT NULL THEN 'icu'
                         ELSE loc_kind(types, name, CASE WHEN l.ref IS NOT NULL THEN l.lkey END)
                    END AS lkind
        FROM enc_loc l LEFT JOIN (SELECT DISTINCT pid, lkey FROM enc_loc WHERE is_icu) icu
          ON icu.pid = l.pid AND icu.lkey = l.lkey
    """)
    con.execute("INSERT INTO ev0 BY NAME " + _WITH_PRIMARY + """ (
        WITH e0 AS (
            SELECT e.*,
                   coalesce(admit_code(first_code(r.hospitalization.admitSource)),
                            CASE WHEN sf_class_code(coalesce(r.classHistory[1].class.code, ''))
                                      = 'ED' THEN 'emd' END) AS admit,
                   dispo(first_code(r.hospitalization.dischargeDisposition)) AS dispo,
                   flatten(list_transform(coalesce(r.type, []), lambda cc: codings(cc))) AS tcodes,
                   coalesce((SELECT list(lkind ORDER BY i) FROM enc_loc2 l
                             WHERE l.pid = e.pid AND l.src = e.src), []) AS lkinds
            FROM enc0 e
        ), e1 AS (
            SELECT e0.*,
                   CASE WHEN is_icu THEN 'ICU' ELSE setting_chain(class_code, r.class.display,
                       list_transform(list_filter(list_concat(tcodes, codings(r.serviceType)),
                                                  lambda x: x.s = 'snomed'), lambda x: x.c),
                       lkinds, coalesce(admit, '')) END AS setting
            FROM e0
        )
        SELECT pid, 'encounter' AS kind, t0 AS t,
               list_concat([{'s': 'setting', 'c': setting, 'd': NULL::VARCHAR}],
                           list_distinct(list_concat(tcodes, codings(r.serviceType)))) AS own,
               pend(r.period) AS te, NULL::VARCHAR AS enc, r.status AS status,
               NULL::DOUBLE AS value, NULL::VARCHAR AS unit, setting,
               dispo AS disposition, admit AS admit_source,
               is_planned(upper(coalesce(first_code(r.priority), '')), class_code,
                          coalesce(admit, ''),
                          list_filter(list_concat(
                              [r.priority.text],
                              list_transform(codings(r.priority), lambda x: x.d),
                              list_transform(tcodes, lambda x: x.d),
                              list_transform(coalesce(r.type, []), lambda cc: cc.text)),
                          lambda x: x IS NOT NULL AND x <> '')
               ) AS planned,
               (setting = 'ICU' OR list_contains(lkinds, 'icu')) AS icu,
               CASE WHEN canon(r.partOf.reference, 'Encounter') <> src
                    THEN canon(r.partOf.reference, 'Encounter') END AS part_of,
               coalesce(list_filter(tcodes, lambda x: x.d IS NOT NULL AND x.d <> '')[1].d,
                        nullif(class_code, '')) AS label,
               []::VARCHAR[] AS interp, src AS source,
               NULL::VARCHAR AS primary_s, NULL::VARCHAR AS primary_c,
               off_of2(r.period.start, r.period."end") AS off
        FROM e1)
    """)
    con.execute("INSERT INTO ev0 BY NAME " + _WITH_PRIMARY + """ (
        SELECT l.pid, 'transfer' AS kind, st AS t,
               [{'s': 'location', 'c': lkind, 'd': NULL::VARCHAR}] AS own, en AS te,
               l.src AS enc, NULL::VARCHAR AS status, name AS label, l.src AS source,
               false AS icu, []::VARCHAR[] AS interp,
               coalesce(CASE WHEN l.pst IS NOT NULL THEN off_of1(l.pst) END, e.off) AS off
        FROM enc_loc2 l LEFT JOIN ev0 e ON e.pid = l.pid AND e.source = l.src
                                      AND e.kind = 'encounter'
        WHERE st IS NOT NULL)
    """)
    # encounter diagnoses from the resources (Encounter.diagnosis, reasonReference resolved
    # to Conditions of the patient, and reasonCode) and the principal diagnosis
    con.execute("""
        CREATE OR REPLACE TEMP TABLE enc_dx AS
        WITH refs AS (
            SELECT pid, src, canon(unnest(list_concat(
                       list_transform(coalesce(r.diagnosis, []), lambda d: d.condition.reference),
                       list_transform(coalesce(r.reasonReference, []), lambda x: x.reference))),
                   'Condition') AS ck
            FROM enc0
        ), conds AS (
            SELECT pid, src, codings(r.code) AS l FROM pres_Condition WHERE true
        )
        SELECT refs.pid, refs.src, 'dx' AS role, unnest(conds.l) AS x
        FROM refs JOIN conds ON conds.pid = refs.pid AND conds.src = refs.ck
        UNION ALL
        SELECT pid, src, 'dx', unnest(flatten(list_transform(coalesce(r.reasonCode, []),
                                                          lambda cc: codings(cc))))
        FROM enc0
        UNION ALL
        SELECT ch.pid, ch.src, 'pr', unnest(conds.l) FROM (
            SELECT pid, src, canon(CASE WHEN len(rk) > 0 THEN coalesce(
                       list_filter(rk, lambda d: list_contains(list_transform(
                           coalesce(d.use.coding, []), lambda c: c.code), 'billing'))[1],
                       list_filter(rk, lambda d: list_contains(list_transform(
                           coalesce(d.use.coding, []), lambda c: c.code), 'DD'))[1], rk[1])
                   ELSE coalesce(
                       list_filter(dg, lambda d: list_contains(list_transform(
                           coalesce(d.use.coding, []), lambda c: c.code), 'billing'))[1],
                       list_filter(dg, lambda d: list_contains(list_transform(
                           coalesce(d.use.coding, []), lambda c: c.code), 'DD'))[1])
                   END.condition.reference, 'Condition') AS ck
            FROM (SELECT pid, src, coalesce(r.diagnosis, []) AS dg,
                         list_filter(coalesce(r.diagnosis, []), lambda d: d.rank = 1) AS rk
                  FROM enc0)
        ) ch JOIN conds ON conds.pid = ch.pid AND conds.src = ch.ck
    """)
    for t in ("enc0", "enc_loc", "enc_loc2", "loc", "loc_ident", "med"):
        con.execute(f"DROP TABLE IF EXISTS {t}")


def _derive(con: duckdb.DuckDBPyConnection, first_eid: int) -> None:
    """Event ids and timeline order, codes, linked diagnoses, ``released``, patients."""
    # One copy of the event rows (primary code added), the timeline order ranked on
    # the narrow sort keys alone and joined in when ``events`` is written: each copy of the
    # wide rows, and a window over them (it sorts every column), costs as much as the rest
    con.execute("DELETE FROM ev0 WHERE t IS NULL")
    # event ids: the row's place in ev0 (unique, and free: a sequence serialises the
    # parallel inserts, 0.7 s of 20,000 patients)
    con.execute(f"CREATE OR REPLACE TEMP VIEW ev2 AS SELECT *, rowid + {int(first_eid)} AS eid "
                "FROM ev0")  # fmt: skip
    con.execute("""
        CREATE OR REPLACE TEMP TABLE ev_seq AS
        SELECT eid, row_number() OVER (PARTITION BY pid ORDER BY t, kind, source,
                                       coalesce(system0, ''), coalesce(code0, '')) AS seq
        FROM ev2
    """)
    con.execute("""
        CREATE OR REPLACE TABLE codes AS
        SELECT eid, 'own' AS role, x.s AS system, x.c AS code
        FROM (SELECT eid, unnest(own) AS x FROM ev2)
        UNION ALL
        SELECT eid, 'interp', 'interp', unnest(interp) FROM ev2
        UNION ALL
        -- an encounter's diagnoses are a set: a Condition both listed in Encounter.diagnosis
        -- and naming the encounter counts once (as in plugin.timeline.build)
        SELECT DISTINCT * FROM (
            SELECT e.eid, d.role, d.x.s, d.x.c FROM enc_dx d
            JOIN ev2 e ON e.pid = d.pid AND e.source = d.src AND e.kind = 'encounter'
            UNION ALL
            -- Conditions naming an encounter give it their codes (plugin.timeline.build)
            SELECT e.eid, 'dx', x.s, x.c FROM (
                SELECT pid, enc, unnest(own) AS x FROM ev2
                WHERE kind = 'condition' AND enc IS NOT NULL
            ) c JOIN ev2 e ON e.pid = c.pid AND e.source = c.enc AND e.kind = 'encounter')
    """)
    con.execute("DROP TABLE enc_dx")
    # released: an ED/AMB visit with no admission (IP/OBS/ICU) overlapping [start, stop+24h],
    # not admitted/expired/transferred, and not the parent of an admission
    con.execute("""
        CREATE OR REPLACE TABLE events AS
        WITH adm AS (
            SELECT pid, source, t, coalesce(te, t) AS stop, part_of FROM ev2
            WHERE kind = 'encounter' AND setting IN ('IP', 'OBS', 'ICU')
        ), blocked AS (
            SELECT DISTINCT e.eid FROM ev2 e JOIN adm a ON a.pid = e.pid
            WHERE e.kind = 'encounter' AND e.setting IN ('ED', 'AMB')
              AND ((a.source <> e.source AND a.t <= coalesce(e.te, e.t) + 86400000000
                    AND a.stop >= e.t) OR a.part_of = e.source)
        )
        SELECT e.pid, e.eid, o.seq, e.kind, e.t, e.te, e.source,
               coalesce(e.system0, '') AS system, coalesce(e.code0, '') AS code, e.enc, e.status,
               e.value, e.unit, e.comparator, e.positive, e.abnormal, e.off, e.setting,
               e.disposition, e.admit_source, e.planned,
               CASE WHEN e.kind <> 'encounter' THEN NULL
                    ELSE e.setting IN ('ED', 'AMB')
                         AND coalesce(e.disposition, '') NOT IN ('admitted', 'expired', 'transfer')
                         AND b.eid IS NULL END AS released,
               coalesce(e.icu, false) AS icu,
               CASE WHEN e.kind = 'encounter' THEN coalesce(
                   (SELECT true FROM codes c WHERE c.eid = e.eid AND c.role = 'pr' LIMIT 1),
                   false) END AS has_pr,
               e.label,
               year(make_timestamp(e.t)) AS ty,
               month(make_timestamp(e.t)) * 100 + day(make_timestamp(e.t)) AS tmd
        FROM ev2 e JOIN ev_seq o ON o.eid = e.eid LEFT JOIN blocked b ON b.eid = e.eid
    """)
    con.execute("DROP VIEW ev2")
    con.execute("DROP TABLE ev0")
    con.execute("DROP TABLE ev_seq")
    con.execute("""
        CREATE OR REPLACE TABLE patients AS
        WITH p AS (
            SELECT pid, CASE WHEN fbad(r.birthDate) OR fbad(r.deceasedDateTime) THEN NULL
                             ELSE {'birthDate': r.birthDate, 'deceasedDateTime': r.deceasedDateTime,
                                   'gender': r.gender} END AS r
            FROM pres_Patient WHERE true
            QUALIFY row_number() OVER (PARTITION BY pid) = 1
        ), ids AS (SELECT pid FROM pids)
        SELECT ids.pid,
               year(make_timestamp(fdt(p.r.birthDate))) AS "by",
               month(make_timestamp(fdt(p.r.birthDate))) * 100
                 + day(make_timestamp(fdt(p.r.birthDate))) AS bmd,
               p.r.gender AS sex, fdt(p.r.deceasedDateTime) AS deceased
        FROM ids LEFT JOIN p ON p.pid = ids.pid
    """)


def _text_concepts(con: duckdb.DuckDBPyConnection) -> None:
    """``text_concepts(eid, concept)``: the concepts affirmed in each report's narrative.

    The one step that runs Python per row, and only per DiagnosticReport with free text:
    the narrative (:func:`plugin.text.narrative.report_narrative`) and the ConText matcher
    (:func:`plugin.text.affirmed_concepts`) are the Python engine's own, so ``text:``
    selectors mean the same in every engine (cached by text: template reports cost once)."""
    from plugin.text import affirmed_concepts
    from plugin.text.narrative import report_narrative

    rows = con.execute(
        "SELECT e.eid, to_json(r.conclusion), to_json(r.conclusionCode), "
        "to_json(r.presentedForm) FROM pres_DiagnosticReport p JOIN events e ON e.pid = p.pid "
        "AND e.source = p.src AND e.kind = 'report' WHERE true AND "
        "(r.conclusion IS NOT NULL OR r.conclusionCode IS NOT NULL OR r.presentedForm IS NOT NULL)"
    ).fetchall()
    hits: list[tuple[int, str]] = []
    for eid, conclusion, codes, forms in rows:
        resource = {"resourceType": "DiagnosticReport"}
        for key, raw in (("conclusion", conclusion), ("conclusionCode", codes),
                         ("presentedForm", forms)):  # fmt: skip
            value = json.loads(raw) if raw is not None else None
            if value is not None:
                resource[key] = _drop_nulls(value)
        text = report_narrative(resource)
        if text:
            hits += [(int(eid), c) for c in sorted(affirmed_concepts(text))]
    con.execute("CREATE OR REPLACE TABLE text_concepts (eid BIGINT, concept VARCHAR)")
    if hits:
        con.executemany("INSERT INTO text_concepts VALUES (?, ?)", hits)
    _drop_types(con)
    con.execute("DROP VIEW IF EXISTS rs")
    for table in ("res", "pids", "fast"):
        con.execute(f"DROP TABLE IF EXISTS {table}")


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _empty_tables(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "CREATE OR REPLACE TABLE events (pid VARCHAR, eid BIGINT, seq BIGINT, kind VARCHAR, "
        "t BIGINT, te BIGINT, source VARCHAR, system VARCHAR, code VARCHAR, enc VARCHAR, "
        "status VARCHAR, value DOUBLE, unit VARCHAR, comparator VARCHAR, positive BOOLEAN, "
        "abnormal VARCHAR, off INTEGER, setting VARCHAR, disposition VARCHAR, "
        "admit_source VARCHAR, planned BOOLEAN, released BOOLEAN, icu BOOLEAN, has_pr BOOLEAN, "
        "label VARCHAR, ty BIGINT, tmd BIGINT)"
    )
    con.execute(
        "CREATE OR REPLACE TABLE codes (eid BIGINT, role VARCHAR, system VARCHAR, code VARCHAR)"
    )
    con.execute(
        'CREATE OR REPLACE TABLE patients (pid VARCHAR, "by" BIGINT, bmd BIGINT, sex VARCHAR, '
        "deceased BIGINT)"
    )
    con.execute("CREATE OR REPLACE TABLE text_concepts (eid BIGINT, concept VARCHAR)")
