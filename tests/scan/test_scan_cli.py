"""``dxsafety scan`` end to end on the fixtures and on data written by others."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import tests.paths as shared_paths
from plugin.cli import main
from plugin.errors import ExitCode, FatalError

ROOT = Path(__file__).parents[2]
SHARED = shared_paths.DATA
FIXTURES = ROOT / "fhir_fixtures"
AS_OF = "2026-11-27"


def expected_findings() -> set[tuple[str, str, str]]:
    out = set()
    for file in FIXTURES.glob("*/expected/findings.json"):
        for f in json.loads(file.read_text()):
            out.add((f["patient_id"], f["rule_id"], f["index_ref"]))
    return out


def test_scan_fixtures_finds_exactly_the_planted_positives(tmp_path, capsys):
    out = tmp_path / "findings.json"
    assert (
        main(
            [
                "scan",
                str(FIXTURES),
                "--rules",
                str(ROOT / "rules"),
                "--as-of",
                AS_OF,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    got = {(f["patient_id"], f["rule_id"], f["index_ref"]) for f in json.loads(out.read_text())}
    want = expected_findings()
    assert len(want) >= 5
    assert got == want
    err = capsys.readouterr().err
    assert "6 skipped" in err
    assert "fhir_fixtures/bad/mixed.ndjson:4: Frobnicator/bad-x1 unknown resourceType" in err


def test_fast_and_full_validation_give_the_same_findings(tmp_path):
    for mode in ("fast", "full"):
        main(
            [
                "scan",
                str(FIXTURES),
                "--as-of",
                AS_OF,
                "--validate",
                mode,
                "--out",
                str(tmp_path / f"{mode}.csv"),
                "--rules",
                str(ROOT / "rules"),
            ]
        )
    fast = (tmp_path / "fast.csv").read_text()
    assert fast == (tmp_path / "full.csv").read_text()
    assert len(fast.splitlines()) > 1


@pytest.mark.parametrize("name", ["mimic-iv-demo-fhir", "synthea-r4", "bulk-ndjson-10-patients"])
def test_scan_shared_data_completes_with_summary(name, tmp_path, capsys):
    source = SHARED / name
    if not source.exists():
        pytest.skip(f"{source} not present")
    out = tmp_path / "f.csv"
    assert (
        main(
            [
                "scan",
                str(source),
                "--as-of",
                "2300-01-01",
                "--out",
                str(out),
                "--rules",
                str(ROOT / "rules"),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "patients" in err and "resources read" in err and "findings" in err
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows, "the published triggers fire on every one of these cohorts"
    assert {
        "patient_id",
        "index_ref",
        "index_start",
        "rule_id",
        "rule_title",
        "level",
        "evidence",
    } <= set(rows[0])
    assert all(r["evidence"] for r in rows)


def test_scan_missing_source_is_a_clear_error():
    with pytest.raises(FatalError) as info:
        main(["scan", "/nonexistent/folder"])
    assert info.value.exit_code == ExitCode.INPUT_NOT_FOUND


def test_bad_rules_stop_the_scan(tmp_path):
    with pytest.raises(FatalError) as info:
        main(["scan", str(FIXTURES), "--rules", str(ROOT / "tests/rules/bad/three_errors")])
    assert info.value.exit_code == ExitCode.RULES_INVALID


def test_scan_refuses_a_model_directory_that_is_not_a_model(tmp_path):
    (tmp_path / "model.json").write_text('{"feature_version": "0.0"}')
    with pytest.raises(FatalError) as info:
        main(["scan", str(FIXTURES), "--model", str(tmp_path), "--as-of", AS_OF])
    assert info.value.exit_code == ExitCode.MODEL_INVALID


def test_scan_of_an_unreachable_server_is_a_clear_temporary_error(monkeypatch):
    import socket

    slept: list[float] = []
    from plugin.fhir.http import FhirHttp

    defaults = FhirHttp.__init__.__kwdefaults__
    monkeypatch.setitem(defaults, "sleep", slept.append)  # retries cost no time

    with socket.socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FatalError) as info:
        main(["scan", f"http://127.0.0.1:{port}/fhir", "--patient", "p1"])
    assert info.value.exit_code in (ExitCode.FHIR_TEMPORARY, ExitCode.FHIR_FATAL)
    assert "connect" in info.value.message.lower() or "127.0.0.1" in info.value.message
    assert slept, "connection errors are retried before giving up"
