"""plugin.fhir.read: every input layout, and bad input reported with file:line, never fatal."""

import gzip
import json
import shutil
from pathlib import Path

import orjson
import pytest

import tests.paths as shared_paths
from plugin.fhir.read import ReadReport, iter_resources, list_input_files

DATA = shared_paths.DATA
REPO = Path(__file__).parents[2]
BAD = REPO / "fhir_fixtures" / "bad"

needs_data = pytest.mark.skipif(not DATA.exists(), reason="shared data not present")


def read_all(path):
    report = ReadReport()
    items = list(iter_resources(path, report=report))
    return items, report


@needs_data
def test_mimic_ndjson_counts_by_type():
    items, report = read_all(DATA / "mimic-iv-demo-fhir")
    assert all(i.error is None for i in items)
    assert report.resources == {"Condition": 4181, "Encounter": 401, "Patient": 100}
    assert report.skipped == 0
    assert items[0].where.endswith("Condition.ndjson:1")  # sorted files, 1-based lines


@needs_data
def test_bulk_export_log_is_ignored_not_an_error():
    _, report = read_all(DATA / "bulk-ndjson-10-patients")
    assert report.skipped == 0
    assert [Path(f).name for f in report.ignored_files] == ["log.ndjson"]
    assert report.resources["Patient"] == 13
    assert report.by_type is report.resources


@needs_data
def test_synthea_transaction_bundle_entries():
    path = DATA / "synthea-r4" / "Alberto_Atencio_fc712d1f-5a2e-4407-9c55-a2a2bad623c2.json"
    items, report = read_all(path)
    assert report.skipped == 0
    assert items[0].where == f"{path}:entry[0]"
    bundle = orjson.loads(path.read_bytes())
    assert len(items) == len(bundle["entry"])
    for item, entry in zip(items, bundle["entry"], strict=True):
        assert entry["fullUrl"] == f"urn:uuid:{item.resource['id']}"


def test_bundle_entry_without_id_takes_the_fullurl_uuid():
    items, _ = read_all(REPO / "fhir_fixtures" / "sp1_headache_stroke_bundle")
    ids = [i.resource["id"] for i in items]
    assert ids[0] == "5c3e1a52-8d0b-4b8e-9a53-1f2d8e0c7a11"
    assert all(ids)


def test_fullurl_that_differs_from_id_is_rewritten(tmp_path):
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:aaaa", "resource": {"resourceType": "Patient", "id": "p1"}},
            {
                "fullUrl": "urn:uuid:bbbb",
                "resource": {
                    "resourceType": "Condition",
                    "subject": {"reference": "urn:uuid:aaaa"},
                },
            },
        ],
    }
    (tmp_path / "b.json").write_text(json.dumps(bundle))
    items, _ = read_all(tmp_path)
    cond = items[1].resource
    assert cond["id"] == "bbbb"
    assert cond["subject"]["reference"] == "Patient/p1"


@needs_data
def test_single_resource_files():
    items, report = read_all(DATA / "hl7-r4-examples" / "Patient-pat3.json")
    assert [i.resource["id"] for i in items] == ["pat3"]
    assert report.files == 1


def test_bad_lines_are_reported_with_file_line_and_skipped():
    items, report = read_all(BAD / "mixed.ndjson")  # the cases beside it: test_bad_input.py
    errors = {Path(e.where).name: e for e in report.errors}
    assert sorted(errors) == [
        "mixed.ndjson:2",
        "mixed.ndjson:3",
        "mixed.ndjson:4",
        "mixed.ndjson:5",
    ]
    truncated = errors["mixed.ndjson:2"]
    assert truncated.what.startswith("invalid JSON")
    # type and id recovered from the broken text, for the report
    assert (truncated.resource_type, truncated.resource_id) == ("Condition", "bad-c1")
    assert errors["mixed.ndjson:3"].what.startswith("invalid JSON")
    assert errors["mixed.ndjson:4"].what == "unknown resourceType 'Frobnicator'"
    assert errors["mixed.ndjson:4"].resource_id == "bad-x1"
    assert errors["mixed.ndjson:5"].what == "not a JSON object: list"
    good = [i.resource["id"] for i in items if i.resource is not None]
    assert good == ["bad-p1", "bad-c2", "bad-o1", "bad-e1"]  # reading went on after each
    assert report.skipped == 4
    assert str(truncated).startswith(f"{BAD / 'mixed.ndjson'}:2: Condition/bad-c1 invalid JSON")


def test_gzip_ndjson_and_a_truncated_gzip(tmp_path):
    lines = (REPO / "fhir_fixtures" / "sp1_stroke_day31" / "Encounter.ndjson").read_bytes()
    (tmp_path / "Encounter.ndjson.gz").write_bytes(gzip.compress(lines))
    items, report = read_all(tmp_path)
    assert [i.resource["id"] for i in items] == ["sp1-p3-ed", "sp1-p3-ip"]
    blob = gzip.compress(lines * 50)
    (tmp_path / "Encounter.ndjson.gz").write_bytes(blob[: len(blob) // 2])
    items, report = read_all(tmp_path)
    assert items[-1].error is not None
    assert "unreadable" in items[-1].error.what
    assert report.skipped == 1


def test_operation_outcomes_are_counted_not_yielded(tmp_path):
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": "Patient/9 gone"}],
    }
    (tmp_path / "OperationOutcome.ndjson").write_text(json.dumps(outcome) + "\n")
    items, report = read_all(tmp_path)
    assert items == []
    assert report.outcomes == 1
    assert report.outcome_messages[0].endswith("Patient/9 gone")


def test_expected_and_hidden_folders_are_not_input(tmp_path):
    shutil.copytree(REPO / "fhir_fixtures" / "tr1_age80", tmp_path / "s")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "x.json").write_text("{}")
    names = [p.relative_to(tmp_path).as_posix() for p in list_input_files(tmp_path)]
    assert names == ["s/Observation.ndjson", "s/Patient.ndjson"]


def test_empty_lines_are_skipped_silently(tmp_path):
    (tmp_path / "Patient.ndjson").write_text('\n{"resourceType":"Patient","id":"a"}\n\n')
    items, report = read_all(tmp_path)
    assert [i.where for i in items] == [f"{tmp_path / 'Patient.ndjson'}:2"]
    assert report.skipped == 0
