"""A Bulk file shorter than its manifest's count is a failed fetch, never a quiet partial scan
(issue 11, item 6): ``IncompleteExport`` and a non-zero exit, unless ``--allow-partial``.

The first tests script the EHR with ``responses`` (fault injection); the last one scans a live
SEKMET server through the loopback fault proxy, which cuts the Encounter file in half.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import responses

from plugin.cli import main
from plugin.errors import ExitCode, FatalError, FatalFhirError, IncompleteExport
from plugin.fhir.auth import BearerAuth
from plugin.fhir.bulk import BulkExporter
from plugin.fhir.client import FhirClient
from plugin.fhir.http import FhirHttp
from plugin.fhir.remote import cli_error
from tests.fhir.faults import Fault, FaultProxy

BASE = "https://ehr.test/fhir"
STATUS = "https://ehr.test/fhir/bulkstatus/job-1"
KICKOFF = f"{BASE}/$export"
FILE = "https://files.ehr.test/o.ndjson"
OBS = "".join(
    json.dumps({"resourceType": "Observation", "id": f"o{i}", "subject": {"reference": "P/1"}})
    + "\n"
    for i in range(40)
).encode()
SHORT = b"".join(OBS.splitlines(keepends=True)[:13])


def manifest(count: int) -> dict:
    return {
        "transactionTime": "2026-11-27T10:00:00Z",
        "request": KICKOFF,
        "requiresAccessToken": False,
        "output": [{"type": "Observation", "url": FILE, "count": count}],
        "error": [],
    }


@pytest.fixture
def ehr() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(KICKOFF, status=202, headers={"Content-Location": STATUS})
        mock.delete(STATUS, status=202)
        yield mock


def exporter(allow_partial: bool = False) -> BulkExporter:
    http = FhirHttp(auth=BearerAuth("s3cret"), sleep=lambda s: None)
    return BulkExporter(FhirClient(BASE, http=http), allow_partial=allow_partial)


def test_short_file_fails_the_export_and_is_not_left_as_data(ehr, tmp_path):
    ehr.get(STATUS, json=manifest(40))
    ehr.get(FILE, body=SHORT)  # a proxy cut the body
    with pytest.raises(IncompleteExport) as exc:
        exporter().export(tmp_path)
    assert "the manifest says 40 resources, the file has 13" in str(exc.value)
    assert "--allow-partial" in str(exc.value)
    assert not list(tmp_path.glob("*.ndjson"))  # a later scan of the directory cannot see it
    assert [p.name for p in tmp_path.glob("*.incomplete")] == ["Observation.ndjson.incomplete"]
    assert isinstance(exc.value, FatalFhirError)
    assert cli_error(exc.value).exit_code == ExitCode.FHIR_FATAL


def test_allow_partial_keeps_the_short_file_and_says_so(ehr, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    ehr.get(STATUS, json=manifest(40))
    ehr.get(FILE, body=SHORT)
    result = exporter(allow_partial=True).export(tmp_path)
    assert result.partial == ("Observation.ndjson: 13 of 40 resources",)
    assert result.counts == {"Observation": 13}
    assert "the manifest says 40 resources, the file has 13" in caplog.text


def test_complete_file_is_not_partial(ehr, tmp_path):
    ehr.get(STATUS, json=manifest(40))
    ehr.get(FILE, body=OBS)
    result = exporter().export(tmp_path)
    assert result.partial == () and result.counts == {"Observation": 40}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_scan_of_a_truncated_live_export_exits_non_zero(sekmet, tmp_path, capsys):
    token = tmp_path / "token"
    token.write_text(sekmet.token)
    types = ["--type", "Patient", "--type", "Encounter", "--type", "Condition"]
    with FaultProxy(sekmet.base_url) as proxy:
        proxy.add(Fault("truncate", match="bulk-files*Encounter.ndjson"))
        args = ["scan", proxy.base_url, "--token-file", str(token), "--as-of", "2026-11-01"]
        with pytest.raises(FatalError) as exc:
            main([*args, *types, "--out", str(tmp_path / "f.json")])
        assert exc.value.exit_code == ExitCode.FHIR_FATAL
        assert "Encounter.ndjson: the manifest says" in exc.value.message
        assert not (tmp_path / "f.json").exists()
        proxy.add(Fault("truncate", match="bulk-files*Encounter.ndjson"))
        out = tmp_path / "partial.json"
        assert main([*args, *types, "--allow-partial", "--out", str(out)]) == 0
        assert out.exists()
