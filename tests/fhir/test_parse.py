"""plugin.fhir.parse: FHIR resources → timeline, on the HL7 examples, MIMIC, Synthea and Bulk."""

import json
from collections import defaultdict
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tests.paths as shared_paths
from plugin.fhir.parse import timeline_from_resources
from plugin.fhir.read import iter_resources
from plugin.fhir.validate import check_full
from plugin.timeline.model import Code, Kind, Setting

DATA = shared_paths.DATA
HL7 = DATA / "hl7-r4-examples"
needs_data = pytest.mark.skipif(not DATA.exists(), reason="shared data not present")


def load(*names):
    return [orjson.loads((HL7 / n).read_bytes()) for n in names]


def naive_groups(path):
    """Every patient's resources grouped in memory (what the stager is checked against)."""
    groups = defaultdict(list)
    for item in iter_resources(path):
        r = item.resource
        if r is None:
            continue
        if r["resourceType"] == "Patient":
            groups[r["id"]].append(r)
            continue
        ref = (r.get("subject") or r.get("patient") or {}).get("reference", "")
        if ref:
            groups[ref.rsplit("/", 1)[-1].removeprefix("urn:uuid:")].append(r)
    return groups


def ev(timeline, kind, **match):
    return [
        e
        for e in timeline.events
        if e.kind is kind and all(getattr(e, k) == v for k, v in match.items())
    ]


def obs(**fields):
    base = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
        "subject": {"reference": "Patient/p"},
    }
    return {**base, **fields}


# --- times ----------------------------------------------------------------------------------
def test_offset_time_lands_at_the_right_utc_instant():
    tl = timeline_from_resources([obs(effectiveDateTime="2025-03-05T10:00:00+04:00")])
    (e,) = tl.events
    assert e.t == datetime(2025, 3, 5, 6, 0, tzinfo=UTC)
    assert e.t.tzinfo is UTC
    assert not e.date_only


def test_negative_offset_crosses_midnight():
    tl = timeline_from_resources([obs(effectiveDateTime="2025-12-31T22:30:00-05:00")])
    assert tl.events[0].t == datetime(2026, 1, 1, 3, 30, tzinfo=UTC)


def test_time_without_offset_is_taken_as_utc():
    tl = timeline_from_resources([obs(effectiveDateTime="2025-03-05T10:00:00")])
    assert tl.events[0].t == datetime(2025, 3, 5, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2025-03-05", datetime(2025, 3, 5, tzinfo=UTC)),
        ("2025-03", datetime(2025, 3, 1, tzinfo=UTC)),
        ("2025", datetime(2025, 1, 1, tzinfo=UTC)),
    ],
)
def test_date_only_and_partial_dates_are_midnight_utc(value, expected):
    (e,) = timeline_from_resources([obs(effectiveDateTime=value)]).events
    assert (e.t, e.date_only) == (expected, True)


def test_bad_date_and_wrong_types_are_reported_not_fatal():
    errors = []
    tl = timeline_from_resources(
        [
            obs(id="a", effectiveDateTime="2025-02-30"),
            obs(id="b", effectiveDateTime="2025-02-03", valueQuantity={"value": "7"}),
            obs(id="c", effectiveDateTime="2025-02-03", code="718-7"),
            obs(
                id="d", effectiveDateTime="2025-02-03", valueQuantity={"value": 7.5, "unit": "g/dL"}
            ),
        ],
        errors=errors,
    )
    assert [e.source for e in tl.events] == ["Observation/d"]
    assert [(e.where, e.what) for e in errors] == [
        ("Observation/a", "unparseable date '2025-02-30'"),
        ("Observation/b", "malformed: value: expected a number, got str"),
        ("Observation/c", "malformed: code: expected an object, got str"),
    ]


# --- HL7 examples, one resource type at a time ----------------------------------------------
@needs_data
def test_encounter_location_history_becomes_transfers():
    tl = timeline_from_resources(load("Encounter-emerg.json"))
    (enc,) = ev(tl, Kind.ENCOUNTER)
    assert enc.detail.setting is Setting.IP
    assert enc.detail.admit_source == "emd"
    assert enc.t == datetime(2017, 1, 31, 21, 15, tzinfo=UTC)  # 07:15+10:00
    transfers = ev(tl, Kind.TRANSFER)
    assert [(e.code, e.text) for e in transfers] == [
        ("ed", "Emergency Waiting Room"),
        ("ed", "Emergency"),
        ("ward", "Ward 1, Room 42, Bed 1"),
        ("ward", "Ward 1, Room 42, Bed 1"),
        ("ward", "Ward 1, Room 42, Bed 1"),
    ]
    assert all(
        e.source == e.encounter == "Encounter/emerg" and e.system == "location" for e in transfers
    )
    assert len(enc.detail.locations) == 5


@needs_data
def test_encounter_partof_itself_is_ignored_and_diagnosis_resolved():
    tl = timeline_from_resources(
        load("Encounter-f203.json", "Condition-stroke.json", "Condition-f201.json")
    )
    (enc,) = ev(tl, Kind.ENCOUNTER)
    assert enc.detail.part_of is None
    assert Code("snomed", "422504002") in enc.detail.diagnoses  # via Encounter.diagnosis
    assert Code("snomed", "386661006") in enc.detail.diagnoses


@needs_data
def test_observation_components_value_unit_interpretation_range():
    tl = timeline_from_resources(load("Observation-blood-pressure.json", "Observation-f001.json"))
    bp = ev(tl, Kind.OBSERVATION, source="Observation/blood-pressure")
    assert [(e.code, e.value, e.unit, e.interpretation) for e in bp] == [
        ("8462-4", 60.0, "mm[Hg]", ("L",)),  # same time and source: ordered by code
        ("8480-6", 107.0, "mm[Hg]", ("N",)),
        ("85354-9", None, None, ("L",)),
    ]
    assert all(e.date_only for e in bp)
    (glucose,) = ev(tl, Kind.OBSERVATION, source="Observation/f001")
    assert (glucose.system, glucose.code, glucose.value, glucose.unit) == (
        "loinc",
        "15074-8",
        6.3,
        "mmol/L",
    )
    assert (glucose.ref_low, glucose.ref_high, glucose.interpretation) == (3.1, 6.2, ("H",))
    assert glucose.recorded == datetime(2013, 4, 3, 14, 30, 10, tzinfo=UTC)


@needs_data
def test_entered_in_error_is_dropped_and_coded_positive_becomes_pos():
    tl = timeline_from_resources(load("Observation-f202.json", "Observation-f206.json"))
    assert [e.source for e in tl.events] == ["Observation/f206"]
    assert tl.events[0].interpretation == ("POS",)


@needs_data
def test_condition_prefers_onset_and_links_its_encounter():
    tl = timeline_from_resources(load("Condition-f201.json", "Encounter-f201.json"))
    (cond,) = ev(tl, Kind.CONDITION)
    assert (cond.t, cond.date_only) == (datetime(2013, 4, 2, tzinfo=UTC), True)
    assert cond.recorded == datetime(2013, 4, 4, tzinfo=UTC)
    assert cond.encounter == "Encounter/f201"
    assert cond.status == "resolved"  # clinicalStatus


@needs_data
def test_diagnostic_report_conclusion_codes_are_alt_codes():
    (rep,) = timeline_from_resources(load("DiagnosticReport-f201.json")).events
    assert rep.kind is Kind.REPORT
    assert (rep.system, rep.code) == ("snomed", "429858000")
    assert Code("snomed", "188340000") in rep.alt
    assert rep.t == datetime(2012, 12, 1, 11, 0, tzinfo=UTC)


@needs_data
def test_patient_deceased_is_a_death_event():
    tl = timeline_from_resources(load("Patient-pat3.json"))
    assert tl.patient.id == "pat3"
    assert tl.patient.birth_date == date(1982, 1, 23)
    assert tl.patient.deceased == datetime(2015, 2, 14, 3, 42, tzinfo=UTC)
    (death,) = tl.events
    assert (death.kind, death.t, death.source) == (Kind.DEATH, tl.patient.deceased, "Patient/pat3")


@needs_data
def test_untimed_resources_are_reported():
    errors = []
    tl = timeline_from_resources(load("Encounter-example.json"), errors=errors)
    assert tl.events == ()
    assert [(e.where, e.what) for e in errors] == [("Encounter/example", "no usable date")]


def test_service_request_and_medication_request():
    sr = {
        "resourceType": "ServiceRequest",
        "id": "s1",
        "status": "active",
        "intent": "order",
        "code": {
            "coding": [
                {"system": "http://snomed.info/sct", "code": "73761001"},
                {"system": "http://www.ama-assn.org/go/cpt", "code": "45378"},
            ]
        },
        "subject": {"reference": "Patient/p"},
        "authoredOn": "2025-01-02T08:00:00Z",
    }
    mr = {
        "resourceType": "MedicationRequest",
        "id": "m1",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p"},
        "authoredOn": "2025-01-03",
        "medicationReference": {"reference": "#med"},
        "contained": [
            {
                "resourceType": "Medication",
                "id": "med",
                "code": {
                    "coding": [
                        {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "10582"}
                    ]
                },
            }
        ],
    }
    order, med = timeline_from_resources([sr, mr]).events
    assert (order.kind, order.system, order.code, order.alt) == (
        Kind.ORDER,
        "cpt",
        "45378",
        (Code("snomed", "73761001"),),
    )
    assert (med.kind, med.system, med.code) == (Kind.MEDICATION, "rxnorm", "10582")


# --- MIMIC, Synthea, Bulk -------------------------------------------------------------------
@pytest.fixture(scope="module")
def mimic():
    return {
        pid: timeline_from_resources(rs)
        for pid, rs in naive_groups(DATA / "mimic-iv-demo-fhir").items()
    }


@needs_data
def test_mimic_encounter_classes_icu_and_dispositions(mimic):
    encounters = [e for tl in mimic.values() for e in tl.events if e.kind is Kind.ENCOUNTER]
    by_class = defaultdict(set)
    for e in encounters:
        by_class[e.detail.class_code].add(e.detail.setting)
    assert by_class["EW EMER."] == {Setting.IP}  # admissions, never ED visits
    assert by_class["URGENT"] == {Setting.IP}
    # an observation stay in the emergency unit, not an admission (plugin/normalize/tables/
    # settings.csv, issue 11: it was counted as an IP-2 readmission)
    assert by_class["EU OBSERVATION"] == {Setting.ED}
    assert by_class["ACUTE"] == {Setting.ICU}  # EncounterICU
    icu = [e for e in encounters if e.detail.setting is Setting.ICU]
    assert len(icu) == 138 and all(e.detail.part_of for e in icu)
    assert {e.detail.planned for e in encounters if e.detail.class_code == "ELECTIVE"} == {True}
    assert {e.detail.disposition for e in encounters} >= {"home", "snf", "expired", "rehab", "ama"}
    # admissions are never treat-and-release; an emergency-unit observation stay may be
    assert not any(e.detail.released for e in encounters if e.detail.setting is not Setting.ED)


@needs_data
def test_mimic_icu_locations_and_dotless_diagnoses(mimic):
    tl = mimic["24450f28-a039-57d8-95c9-d7ba5508ecd4"]
    hosp = next(
        e
        for e in tl.events
        if e.source == "Encounter/0071a339-74cd-596a-9083-771d41d6d118" and e.kind is Kind.ENCOUNTER
    )
    assert hosp.t == datetime(2147, 12, 30, 13, 40, tzinfo=UTC)
    assert hosp.detail.admit_source == "emd" and hosp.detail.disposition == "rehab"
    conditions = [e for e in tl.events if e.kind is Kind.CONDITION and e.encounter == hosp.source]
    assert conditions and all(e.t == hosp.t for e in conditions)  # no onset: encounter start
    assert {Code(e.system, e.code) for e in conditions} <= set(hosp.detail.diagnoses)
    assert all("." not in e.code and e.system in ("icd10", "icd9") for e in conditions)
    # MIMIC ships no Location resources: a location an ICU stay used is an ICU location, so the
    # parent hospital stay's transfer into it is marked icu
    parents = {
        e.detail.part_of
        for t in mimic.values()
        for e in t.events
        if e.kind is Kind.ENCOUNTER and e.detail.setting is Setting.ICU
    }
    icu_in_parent = {
        e.source
        for t in mimic.values()
        for e in t.events
        if e.kind is Kind.TRANSFER and e.code == "icu" and e.source in parents
    }
    assert len(icu_in_parent) > 0.9 * len(parents)


@needs_data
def test_synthea_urn_uuid_references_resolve():
    path = DATA / "synthea-r4" / "Alberto_Atencio_fc712d1f-5a2e-4407-9c55-a2a2bad623c2.json"
    resources = [i.resource for i in iter_resources(path)]
    tl = timeline_from_resources(resources)
    (patient,) = [r for r in resources if r["resourceType"] == "Patient"]
    assert tl.patient.id == patient["id"]
    encounters = {e.source for e in tl.events if e.kind is Kind.ENCOUNTER}
    linked = [e for e in tl.events if e.encounter]
    assert linked and all(e.encounter in encounters for e in linked)
    assert all(e.patient == tl.patient.id for e in tl.events)
    # Synthea Conditions are dated; each appears among its encounter's diagnoses
    by_source = {e.source: e for e in tl.events if e.kind is Kind.ENCOUNTER}
    for c in (e for e in tl.events if e.kind is Kind.CONDITION):
        assert Code(c.system, c.code) in by_source[c.encounter].detail.diagnoses


@needs_data
def test_timeline_is_sorted_by_time_kind_source():
    for tl in (timeline_from_resources(rs) for rs in naive_groups(DATA / "synthea-r4").values()):
        keys = [(e.t, e.kind.value, e.source) for e in tl.events]
        assert keys == sorted(keys)


@needs_data
@pytest.mark.parametrize(
    "dataset", ["hl7-r4-examples", "mimic-iv-demo-fhir", "synthea-r4", "bulk-ndjson-10-patients"]
)
def test_fast_and_full_validation_give_the_same_timeline(dataset):
    groups = naive_groups(DATA / dataset)
    compared = 0
    for resources in groups.values():
        accepted = [r for r in resources if check_full(r) is None]
        fast_errors, full_errors = [], []
        fast = timeline_from_resources(accepted, validate="fast", errors=fast_errors)
        full = timeline_from_resources(accepted, validate="full", errors=full_errors)
        assert fast == full
        assert fast_errors == full_errors
        compared += len(accepted)
    assert compared > 0.95 * sum(len(g) for g in groups.values())


@needs_data
def test_bulk_procedure_period_and_medication_request():
    resources = naive_groups(DATA / "bulk-ndjson-10-patients")[
        "79a66c97-6131-3213-f3c9-4606946ab056"
    ]
    tl = timeline_from_resources(resources)
    procs = [e for e in tl.events if e.kind is Kind.PROCEDURE]
    meds = [e for e in tl.events if e.kind is Kind.MEDICATION]
    assert procs and meds
    assert all(p.end is not None and p.end >= p.t and p.system == "snomed" for p in procs)
    assert all(m.system == "rxnorm" and m.encounter for m in meds)
    depression = next(
        p for p in procs if p.source == "Procedure/0029b986-11ef-caa1-3b3e-a0e120d4acd9"
    )
    assert depression.t == datetime(1984, 12, 16, 4, 55, 44, tzinfo=UTC)  # 23:55:44-05:00


@pytest.mark.parametrize(
    ("code", "group"),
    [
        ("home", "home"),
        ("hosp", "hospice"),
        ("exp", "expired"),
        ("aadvice", "ama"),
        ("01", "home"),
        ("1", "home"),
        ("20", "expired"),
        ("62", "rehab"),
        ("306689006", "home"),
        ("HOME HEALTH CARE", "home"),
        ("SKILLED NURSING FACILITY", "snf"),
        ("DIED", "expired"),
        ("AGAINST ADVICE", "ama"),
        ("CHRONIC/LONG TERM ACUTE CARE", "transfer"),
        ("Admitted to ward", "admitted"),
        ("something new", "other"),
    ],
)
def test_disposition_groups(code, group):
    from plugin.fhir.vocab import disposition_group

    assert disposition_group(code) == group


@pytest.mark.parametrize(
    ("types", "name", "kind"),
    [
        (("ICU",), "Unit 4", "icu"),
        ((), "Medical Intensive Care Unit (MICU)", "icu"),
        ((), "Emergency Waiting Room", "ed"),
        ((), "Ward 1, Room 42, Bed 1", "ward"),
        ((), "LYON CO HLTH DEPT AND COMMUNITY CENTER", "other"),
        (("ER",), "Triage", "ed"),
    ],
)
def test_location_kinds(types, name, kind):
    from plugin.fhir.vocab import location_kind

    assert location_kind(types, name) == kind


def test_planned_from_priority_admit_source_or_class():
    base = {
        "resourceType": "Encounter",
        "status": "finished",
        "subject": {"reference": "Patient/p"},
        "period": {"start": "2025-01-01T00:00:00Z"},
    }
    imp = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"}
    cases = [
        ({"class": imp, "priority": {"coding": [{"code": "EL"}]}}, True),
        ({"class": imp, "hospitalization": {"admitSource": {"coding": [{"code": "EL"}]}}}, True),
        ({"class": {"code": "SURGICAL SAME DAY ADMISSION"}}, True),
        ({"class": imp, "priority": {"coding": [{"code": "EM"}]}}, False),
        ({"class": {"code": "EW EMER."}}, False),
    ]
    for i, (fields, planned) in enumerate(cases):
        tl = timeline_from_resources([{**base, "id": f"e{i}", **fields}])
        assert tl.events[0].detail.planned is planned, fields


# --- robustness: a damaged resource is skipped, never fatal ------------------------------------
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def _replace(node, path, value):
    if not path:
        return value
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[path[0]] = _replace(node[path[0]], path[1:], value)
    return copy


_SAMPLES = [
    json.loads(line)
    for scenario in (
        "sp1_dizziness_stroke_day12",
        "tr1_fit_no_colonoscopy",
        "tr1_colonoscopy_day59",
    )
    for f in sorted((Path(__file__).parents[2] / "fhir_fixtures" / scenario).glob("*.ndjson"))
    for line in f.read_text().splitlines()
]


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_any_damaged_field_is_skipped_or_read_never_fatal(data):
    target = data.draw(st.integers(0, len(_SAMPLES) - 1))
    paths = [p for p in _paths(_SAMPLES[target]) if p and p[0] != "resourceType"]
    path = data.draw(st.sampled_from(paths))
    damaged = _replace(_SAMPLES[target], path, data.draw(_JSON_VALUES))
    resources = [*_SAMPLES[:target], damaged, *_SAMPLES[target + 1 :]]
    errors = []
    tl = timeline_from_resources(resources, errors=errors)
    assert all(e.resource_type for e in errors)
    assert all(ev.t.tzinfo is not None for ev in tl.events)


def test_class_history_through_the_ed_means_admitted_from_the_ed():
    enc = {
        "resourceType": "Encounter",
        "id": "e",
        "status": "finished",
        "subject": {"reference": "Patient/p"},
        "period": {"start": "2025-01-01T00:00:00Z"},
        "class": {"code": "IMP"},
        "classHistory": [
            {"class": {"code": "EMER"}, "period": {"start": "2025-01-01T00:00:00Z"}},
            {"class": {"code": "IMP"}, "period": {"start": "2025-01-01T04:00:00Z"}},
        ],
    }
    (e,) = timeline_from_resources([enc]).events
    assert (e.detail.setting, e.detail.admit_source) == (Setting.IP, "emd")
