"""A scan over the live server gives the same findings as a scan over the files.

The server holds the 20 Synthea bundles (loaded by ``conftest.sekmet``); the files are
the same bundles on disk. Both ways of reading the server are checked: per patient
(``--patient`` for every id) and a Bulk export (the population).
"""

from __future__ import annotations

import argparse
import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from plugin.fhir.remote import add_remote_arguments, download
from tests.fhir.sekmet_live import SYNTHEA_DIR, LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)

scan = pytest.importorskip("plugin.scan", reason="plugin.scan (the lead's scan) not present")
rules = pytest.importorskip("plugin.rules", reason="plugin.rules (the rules engine) not present")


def remote_args(extra: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_remote_arguments(parser)
    return parser.parse_args(extra)


def findings_of(path: Path, ruleset) -> list[dict]:
    result = scan.scan_population([path], ruleset, as_of=AS_OF)
    return sorted((dataclasses.asdict(f) for f in result.findings), key=lambda f: f["key"])


@pytest.fixture(scope="module")
def ruleset():
    return rules.load_rules(Path(__file__).resolve().parents[2] / "rules")


@pytest.fixture(scope="module")
def from_files(ruleset) -> list[dict]:
    found = findings_of(SYNTHEA_DIR, ruleset)
    assert len(found) >= 5, "the Synthea files give too few findings to compare"
    return found


@pytest.fixture
def token_file(sekmet: LiveServer, tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(sekmet.token)
    return path


def test_per_patient_fetch_gives_the_same_findings(
    sekmet, ruleset, from_files, token_file, tmp_path
):
    ids = [arg for pid in sekmet.loaded for arg in ("--patient", pid)]
    args = remote_args([*ids, "--auth", "bearer", "--token-file", str(token_file)])
    out = download(sekmet.base_url, args, tmp_path / "per-patient")
    assert findings_of(out, ruleset) == from_files


def test_bulk_export_gives_the_same_findings(sekmet, ruleset, from_files, token_file, tmp_path):
    args = remote_args(["--token-file", str(token_file)])  # auth inferred: bearer
    out = download(sekmet.base_url, args, tmp_path / "bulk")
    assert sorted(p.name for p in out.glob("*.ndjson")) == sorted(
        f"{t}.ndjson"
        for t in (
            "Patient",
            "Encounter",
            "Condition",
            "Observation",
            "Procedure",
            "DiagnosticReport",
            "MedicationRequest",
        )
    )  # Synthea has no ServiceRequest
    assert findings_of(out, ruleset) == from_files


def test_dxsafety_scan_url(sekmet, from_files, token_file, tmp_path):
    """The lead's ``dxsafety scan http(s)://...`` goes through :func:`download`."""
    import json

    from plugin.cli import main

    out = tmp_path / "findings.json"
    code = main(
        [
            "scan",
            sekmet.base_url,
            "--token-file",
            str(token_file),
            "--as-of",
            AS_OF.isoformat(),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert sorted(f["key"] for f in json.loads(out.read_text())) == [f["key"] for f in from_files]
