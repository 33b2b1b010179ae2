"""plugin.fhir.stage: a population grouped by patient, checked against in-memory grouping; the
one pipeline (iter_timelines) against timeline_from_resources per patient; the fhir_fixtures
scenarios scanned with the real rules."""

import json
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

import tests.paths as shared_paths
from plugin.fhir.parse import timeline_from_resources
from plugin.fhir.read import ReadReport, iter_resources
from plugin.fhir.refs import ReferenceIndex
from plugin.fhir.stage import (
    BUCKET_BYTES,
    MAX_BUCKETS,
    choose_buckets,
    iter_patients,
    iter_timelines,
    patient_of,
)

DATA = shared_paths.DATA
REPO = Path(__file__).parents[2]
FIXTURES = REPO / "fhir_fixtures"
MIXED = FIXTURES / "bad" / "mixed.ndjson"  # bad lines; the damaged cases beside it have their own
# Every fixture but the case whose point is two differing copies of one Type/id, which staging
# resolves and an in-memory list of resources does not.
NO_DUPLICATES = sorted(
    p
    for p in [*FIXTURES.iterdir(), *(FIXTURES / "bad").iterdir()]
    if p.name not in ("bad", "expected", "duplicate_ids", "README.md")
)
needs_data = pytest.mark.skipif(not DATA.exists(), reason="shared data not present")


def ids(resources):
    return sorted(f"{r['resourceType']}/{r['id']}" for r in resources)


def naive(path, types):
    groups = defaultdict(list)
    for item in iter_resources(path):
        r = item.resource
        if r is not None and r["resourceType"] in types:
            groups[patient_of(r)].append(r)
    return {pid: ids(rs) for pid, rs in groups.items()}


@needs_data
@pytest.mark.parametrize("buckets", [1, 5])
def test_staging_groups_every_resource_of_a_patient(buckets, tmp_path):
    path = DATA / "bulk-ndjson-10-patients"
    report = ReadReport()
    staged = {
        pid: [r for r in rs if r["resourceType"] != "Location"]
        for pid, rs in iter_patients([path], report=report, buckets=buckets, tmp_dir=tmp_path)
    }
    expected = naive(path, {"Patient", "Encounter", "Condition", "Procedure", "MedicationRequest"})
    assert {pid: ids(rs) for pid, rs in staged.items()} == expected
    assert report.skipped == 0
    # types the timeline does not read are counted, not staged; patient-less ones too
    assert report.not_used["Immunization"] > 0 and report.not_used["Organization"] > 0
    assert list(tmp_path.iterdir()) == []  # the staging directory is removed


@needs_data
def test_locations_are_attached_and_conditional_references_resolve():
    checked = 0
    for _pid, resources in iter_patients([DATA / "bulk-ndjson-10-patients"], buckets=3):
        index = ReferenceIndex(resources)
        for enc in (r for r in resources if r["resourceType"] == "Encounter"):
            for entry in enc["location"]:
                ref = entry["location"]["reference"]
                assert ref.startswith("Location?identifier=")
                location = index.resolve(ref)
                assert location is not None and location["resourceType"] == "Location"
                checked += 1
    assert checked == 1215


@needs_data
def test_patients_come_out_in_a_deterministic_order():
    paths = [DATA / "synthea-r4", DATA / "mimic-iv-demo-fhir"]
    first = [pid for pid, _ in iter_patients(paths, buckets=4)]
    second = [pid for pid, _ in iter_patients(paths, buckets=4)]
    assert first == second
    assert len(first) == len(set(first)) == 120


@needs_data
def test_bundles_and_types_none_keep_everything():
    path = DATA / "synthea-r4" / "Alberto_Atencio_fc712d1f-5a2e-4407-9c55-a2a2bad623c2.json"
    ((pid, resources),) = list(iter_patients([path], types=None))
    bundle = [i.resource for i in iter_resources(path)]
    with_patient = [r for r in bundle if patient_of(r) == pid]
    assert ids(resources) == ids(with_patient)


@needs_data
def test_resources_of_no_patient_are_counted():
    report = ReadReport()
    list(iter_patients([DATA / "hl7-r4-examples"], report=report))
    assert report.no_patient["Observation"] > 0  # e.g. subject Group/herd1


@pytest.mark.parametrize("buckets", [1, 2])
def test_conditional_patient_references(tmp_path, buckets):
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [{"system": "urn:mrn", "value": "123"}],
    }
    cond = {
        "resourceType": "Condition",
        "id": "c1",
        "onsetDateTime": "2025-01-02",
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "R42"}]},
        "subject": {"reference": "Patient?identifier=urn:mrn|123"},
    }
    lost = {**cond, "id": "c2", "subject": {"reference": "Patient?identifier=urn:mrn|999"}}
    (tmp_path / "Condition.ndjson").write_text(json.dumps(cond) + "\n" + json.dumps(lost) + "\n")
    (tmp_path / "Patient.ndjson").write_text(json.dumps(patient) + "\n")
    report = ReadReport()
    result = {pid: ids(rs) for pid, rs in iter_patients([tmp_path], report=report, buckets=buckets)}
    assert result == {"p1": ["Condition/c1", "Patient/p1"]}
    (err,) = report.errors
    assert err.where.endswith("Condition.ndjson:2")
    assert "Patient?identifier=urn:mrn|999" in err.what


@pytest.mark.parametrize("mode", ["fast", "full"])
def test_bad_input_is_reported_by_line_and_the_rest_is_kept(mode):
    report = ReadReport()
    result = {
        pid: ids(rs) for pid, rs in iter_patients([MIXED], validate=mode, report=report)
    }
    assert result == {"bad-p1": ["Condition/bad-c2", "Patient/bad-p1"]}
    expected = json.loads((FIXTURES / "bad" / "expected" / "skipped.json").read_text())
    got = sorted(Path(e.where).name for e in report.errors)
    assert got == sorted(e["where"] for e in expected if mode in e["modes"])
    assert report.skipped == len(got)


def test_choose_buckets_scales_with_input_size(tmp_path):
    assert choose_buckets([FIXTURES]) == 1
    big = tmp_path / "Condition.ndjson"
    with big.open("wb") as fh:
        fh.truncate(3 * BUCKET_BYTES + 1)  # sparse file: size without the bytes
    assert choose_buckets([tmp_path]) == 4
    with big.open("wb") as fh:
        fh.truncate(MAX_BUCKETS * BUCKET_BYTES * 2)
    assert choose_buckets([tmp_path]) == MAX_BUCKETS  # then buckets grow instead


@pytest.mark.parametrize("mode", ["fast", "full"])
def test_fixture_scenarios_give_exactly_the_expected_findings(mode):
    rules = pytest.importorskip("plugin.rules")
    ruleset = rules.load_rules(REPO / "rules")
    short = {rule.id: rule.trigger or rule.id for rule in ruleset.rules}
    as_of = datetime(2026, 6, 1, tzinfo=UTC)  # every 2025 window has closed
    scenarios = sorted(p for p in FIXTURES.iterdir() if p.is_dir())
    assert len(scenarios) >= 15
    for scenario in scenarios:
        got = []
        for timeline in iter_timelines(scenario, validate=mode, report=ReadReport()):
            got += [
                (f.patient_id, short[f.rule_id], f.rule_id, f.index_ref)
                for f in rules.evaluate(ruleset, timeline, as_of=as_of)
            ]
        expected = json.loads((scenario / "expected" / "findings.json").read_text())
        want = [(e["patient_id"], e["rule"], e["rule_id"], e["index_ref"]) for e in expected]
        assert sorted(got) == sorted(want), scenario.name


def in_memory_timelines(path, validate):
    """Each patient's timeline from :func:`timeline_from_resources` on resources grouped in
    memory (no staging), with every Location and Medication of the input beside them."""
    groups = defaultdict(list)
    shared = []
    paths = path if isinstance(path, list) else [path]
    for item in (item for p in paths for item in iter_resources(p)):
        r = item.resource
        if r is None:
            continue
        if r["resourceType"] in ("Location", "Medication"):
            shared.append(r)
        elif patient_of(r) is not None:
            groups[patient_of(r)].append(r)
    return {
        pid: timeline_from_resources(rs + shared, validate=validate, patient_id=pid)
        for pid, rs in groups.items()
    }


@pytest.mark.parametrize(
    ("source", "mode"),
    [
        (NO_DUPLICATES, "fast"),
        (NO_DUPLICATES, "full"),
        (NO_DUPLICATES, "none"),
        (DATA / "mimic-iv-demo-fhir", "fast"),
        (DATA / "mimic-iv-demo-fhir", "none"),
    ],
    ids=lambda v: v if isinstance(v, str) else "fhir_fixtures" if isinstance(v, list) else v.name,
)
def test_iter_timelines_builds_what_timeline_from_resources_builds(source, mode):
    if not isinstance(source, list) and not source.exists():
        pytest.skip(f"{source} not present")
    report = ReadReport()
    staged = list(iter_timelines(source, validate=mode, report=report, buckets=3))
    by_patient = {tl.patient.id: tl for tl in staged}
    assert len(by_patient) == len(staged)  # each patient once
    expected = in_memory_timelines(source, mode)
    assert by_patient.keys() == expected.keys()
    for pid, timeline in by_patient.items():
        assert timeline == expected[pid], pid
    assert sum(len(tl.events) for tl in staged) > 0


def test_iter_timelines_takes_a_path_a_string_or_several():
    scenario = FIXTURES / "sp1_stroke_day31"
    one = list(iter_timelines(scenario, report=ReadReport()))
    assert one == list(iter_timelines(str(scenario), report=ReadReport()))
    two = list(iter_timelines([scenario, FIXTURES / "tr1_age80"], report=ReadReport()))
    assert len(one) == 1 and len(two) == 2 and one[0] in two


def test_iter_timelines_needs_a_report():
    with pytest.raises(TypeError):
        iter_timelines(FIXTURES / "sp1_stroke_day31")  # type: ignore[call-arg]


@pytest.mark.parametrize("mode", ["fast", "full"])
def test_iter_timelines_reports_what_it_skips_by_file_and_line(mode):
    report = ReadReport()
    (timeline,) = iter_timelines(MIXED, validate=mode, report=report)
    assert timeline.patient.id == "bad-p1"
    expected = json.loads((FIXTURES / "bad" / "expected" / "skipped.json").read_text())
    want = sorted(e["where"] for e in expected if mode in e["modes"])
    assert sorted(Path(e.where).name for e in report.errors) == want
    lines = report.summary_lines()
    assert (
        f"{report.read} resources read in {report.files} files, {len(want)} skipped (" in lines[0]
    )
    for error in report.errors:
        assert f"  skipped: {error}" in lines
        assert any(f"{error.where}: " in line for line in lines)


def test_the_summary_counts_by_reason_and_shows_the_first_examples():
    report = ReadReport()
    list(iter_timelines(MIXED, validate="full", report=report))
    head, *examples = report.summary_lines(examples=2)
    for reason, n in report.skipped_by_reason.items():
        assert f"{n} {reason}" in head
    assert examples[:2] == [f"  skipped: {e}" for e in report.errors[:2]]
    assert examples[2] == f"  ... and {report.skipped - 2} more skipped"


def test_a_resource_read_twice_is_kept_once(tmp_path):
    scenario = FIXTURES / "sp1_stroke_day31"
    for name in ("a", "b"):  # the same export twice
        (tmp_path / name).mkdir()
        for f in scenario.glob("*.ndjson"):
            (tmp_path / name / f.name).write_bytes(f.read_bytes())
    report = ReadReport()
    ((pid, resources),) = list(iter_patients([tmp_path], report=report, buckets=2))
    assert pid == "sp1-p3"
    assert len(resources) == 5 and report.duplicates == 5
