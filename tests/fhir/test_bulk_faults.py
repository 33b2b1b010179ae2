"""Bulk export behaviour SEKMET does not exercise: gzip files, Range resume, file hosts that
need no token, Retry-After on the status URL, the export budget. Answers come from
``responses`` (a scripted EHR); sleeping is recorded, not done."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator

import pytest
import responses

from plugin.errors import FatalFhirError, FhirDeadlineError
from plugin.fhir.auth import BearerAuth
from plugin.fhir.bulk import ERRORS_FILE, JOB_FILE, BulkExporter, ExportProgress
from plugin.fhir.client import FhirClient
from plugin.fhir.http import FhirHttp

BASE = "https://ehr.test/fhir"
STATUS = "https://ehr.test/fhir/bulkstatus/job-1"
KICKOFF = f"{BASE}/$export"
OBS = [
    {
        "resourceType": "Observation",
        "id": f"o{i}",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
    }
    for i in range(40)
]
OBS_NDJSON = "".join(json.dumps(o) + "\n" for o in OBS).encode()
PATIENT_NDJSON = json.dumps({"resourceType": "Patient", "id": "p1"}).encode() + b"\n"


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s

    def clock(self) -> float:
        return self.now


def manifest(**extra):
    return {
        "transactionTime": "2026-11-27T10:00:00Z",
        "request": KICKOFF,
        "requiresAccessToken": False,
        "output": [
            {"type": "Patient", "url": "https://files.ehr.test/p.ndjson", "count": 1},
            {"type": "Observation", "url": "https://files.ehr.test/o.ndjson.gz", "count": 40},
        ],
        "error": [],
        **extra,
    }


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def ehr(fake_time) -> Iterator[tuple[responses.RequestsMock, BulkExporter, list[ExportProgress]]]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        http = FhirHttp(auth=BearerAuth("s3cret"), sleep=fake_time.sleep, clock=fake_time.clock)
        client = FhirClient(BASE, http=http)
        seen: list[ExportProgress] = []
        yield mock, BulkExporter(client, progress=seen.append), seen


def test_poll_honours_retry_after_then_downloads_gzip_without_token(ehr, fake_time, tmp_path):
    mock, bulk, seen = ehr
    mock.get(KICKOFF, status=202, headers={"Content-Location": STATUS})
    mock.get(STATUS, status=202, headers={"Retry-After": "3", "X-Progress": "collecting 10%"})
    mock.get(STATUS, status=202, headers={"Retry-After": "3", "X-Progress": "writing 80%"})
    mock.get(STATUS, json=manifest())
    mock.get("https://files.ehr.test/p.ndjson", body=PATIENT_NDJSON)
    mock.get(
        "https://files.ehr.test/o.ndjson.gz",
        body=gzip.compress(OBS_NDJSON),
        headers={"Content-Type": "application/gzip"},
    )
    mock.delete(STATUS, status=202)
    result = bulk.export(tmp_path, types=["Patient", "Observation"])
    assert fake_time.sleeps == [3.0, 3.0]
    assert [p.message for p in seen if p.phase == "waiting"] == ["collecting 10%", "writing 80%"]
    assert result.counts == {"Patient": 1, "Observation": 40}
    assert sorted(p.name for p in result.files) == ["Observation.ndjson.gz", "Patient.ndjson"]
    assert gzip.decompress((tmp_path / "Observation.ndjson.gz").read_bytes()) == OBS_NDJSON
    kick = next(c for c in mock.calls if c.request.url.startswith(KICKOFF))
    assert kick.request.headers["Prefer"] == "respond-async"
    assert "_type=Patient%2CObservation" in kick.request.url
    files = [c for c in mock.calls if "files.ehr.test" in c.request.url]
    assert files and all("Authorization" not in c.request.headers for c in files)
    status_calls = [c for c in mock.calls if c.request.url == STATUS]
    assert all(c.request.headers["Authorization"] == "Bearer s3cret" for c in status_calls)
    assert any(c.request.method == "DELETE" for c in status_calls)
    # the edge's reader takes the output directory as it is
    from plugin.fhir.read import iter_resources

    assert sum(1 for item in iter_resources(tmp_path) if item.resource) == 41


def test_token_sent_with_downloads_when_required(ehr, tmp_path):
    mock, bulk, _ = ehr
    mock.get(KICKOFF, status=202, headers={"Content-Location": STATUS})
    mock.get(STATUS, json=manifest(requiresAccessToken=True, output=manifest()["output"][:1]))
    mock.get("https://files.ehr.test/p.ndjson", body=PATIENT_NDJSON)
    mock.delete(STATUS, status=202)
    bulk.export(tmp_path)
    call = next(c for c in mock.calls if "files.ehr.test" in c.request.url)
    assert call.request.headers["Authorization"] == "Bearer s3cret"


def test_partial_file_resumes_with_range(ehr, tmp_path):
    mock, bulk, _ = ehr
    url = "https://files.ehr.test/o.ndjson"
    out = {"type": "Observation", "url": url, "count": 40}
    # a previous run got the manifest and half of the file, then died
    request = bulk._kickoff_url("system", None, (), None)
    job = {"request": request, "status": STATUS, "done": {}, "manifest": manifest(output=[out])}
    (tmp_path / JOB_FILE).write_text(json.dumps(job))
    half = len(OBS_NDJSON) // 2 + 7  # mid-line on purpose
    (tmp_path / ".Observation.part").write_bytes(OBS_NDJSON[:half])

    def serve(request):
        start = int(request.headers["Range"].removeprefix("bytes=").rstrip("-"))
        return (
            206,
            {"Content-Range": f"bytes {start}-{len(OBS_NDJSON) - 1}/{len(OBS_NDJSON)}"},
            OBS_NDJSON[start:],
        )

    mock.add_callback(responses.GET, url, callback=serve)
    mock.delete(STATUS, status=202)
    result = bulk.export(tmp_path)
    assert result.resumed
    assert (tmp_path / "Observation.ndjson").read_bytes() == OBS_NDJSON
    assert result.counts == {"Observation": 40}
    ranges = [c.request.headers.get("Range") for c in mock.calls if c.request.url == url]
    assert ranges == [f"bytes={half}-"]
    assert not any(c.request.url.startswith(KICKOFF) for c in mock.calls)  # same job, no new one


def test_export_errors_are_kept_apart_from_the_data(ehr, tmp_path):
    mock, bulk, _ = ehr
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "diagnostics": "x"}],
    }
    mock.get(KICKOFF, status=202, headers={"Content-Location": STATUS})
    mock.get(
        STATUS,
        json=manifest(
            output=manifest()["output"][:1],
            error=[{"type": "OperationOutcome", "url": "https://files.ehr.test/err.ndjson"}],
        ),
    )
    mock.get("https://files.ehr.test/p.ndjson", body=PATIENT_NDJSON)
    mock.get("https://files.ehr.test/err.ndjson", body=json.dumps(outcome) + "\n")
    mock.delete(STATUS, status=202)
    result = bulk.export(tmp_path)
    assert result.error_count == 1
    assert json.loads((tmp_path / ERRORS_FILE).read_text()) == outcome
    assert [p.name for p in result.files] == ["Patient.ndjson"]


def test_export_not_ready_within_budget_keeps_the_job(ehr, fake_time, tmp_path):
    mock, bulk, _ = ehr
    bulk.budget_s = 60
    mock.get(KICKOFF, status=202, headers={"Content-Location": STATUS})
    mock.get(STATUS, status=202, headers={"Retry-After": "25"})
    with pytest.raises(FhirDeadlineError, match="run again"):
        bulk.export(tmp_path)
    assert fake_time.sleeps == [25.0, 25.0]
    assert json.loads((tmp_path / JOB_FILE).read_text())["status"] == STATUS


def test_kickoff_without_content_location_is_fatal(ehr, tmp_path):
    mock, bulk, _ = ehr
    mock.get(KICKOFF, status=200, json={"resourceType": "Bundle"})
    with pytest.raises(FatalFhirError, match="202 Accepted"):
        bulk.export(tmp_path)


def test_failed_export_is_fatal(ehr, tmp_path):
    mock, bulk, _ = ehr
    mock.get(KICKOFF, status=202, headers={"Content-Location": STATUS})
    mock.get(
        STATUS,
        status=400,
        json={"resourceType": "OperationOutcome", "issue": [{"diagnostics": "bad _type"}]},
    )
    with pytest.raises(FatalFhirError, match="bad _type"):
        bulk.export(tmp_path)


def test_resumed_job_whose_files_expired_starts_a_new_export(ehr, tmp_path):
    mock, bulk, _ = ehr
    old_url = "https://files.ehr.test/old/p.ndjson"
    request = bulk._kickoff_url("system", None, (), None)
    old = manifest(output=[{"type": "Patient", "url": old_url}])
    job = {"request": request, "status": f"{STATUS}-old", "done": {}, "manifest": old}
    (tmp_path / JOB_FILE).write_text(json.dumps(job))
    mock.get(old_url, status=404, json={"resourceType": "OperationOutcome"})
    mock.get(KICKOFF, status=202, headers={"Content-Location": STATUS})
    mock.get(STATUS, json=manifest(output=manifest()["output"][:1]))
    mock.get("https://files.ehr.test/p.ndjson", body=PATIENT_NDJSON)
    mock.delete(STATUS, status=202)
    result = bulk.export(tmp_path)
    assert not result.resumed and result.counts == {"Patient": 1}


def test_status_200_without_manifest_is_fatal(ehr, tmp_path):
    mock, bulk, _ = ehr
    mock.get(KICKOFF, status=202, headers={"Content-Location": STATUS})
    mock.get(STATUS, json={"resourceType": "OperationOutcome"})
    with pytest.raises(FatalFhirError, match="without an export manifest"):
        bulk.export(tmp_path)
