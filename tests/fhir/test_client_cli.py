"""``dxsafety fetch`` end to end against the live server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plugin.cli import main
from plugin.errors import ExitCode, FatalError
from tests.fhir.sekmet_live import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_fetch_bulk_export_to_ndjson(sekmet: LiveServer, tmp_path: Path, capsys):
    token = tmp_path / "token"
    token.write_text(sekmet.token)
    out = tmp_path / "out"
    code = main(
        [
            "fetch",
            sekmet.base_url,
            "--out",
            str(out),
            "--token-file",
            str(token),
            "--type",
            "Patient",
            "--type",
            "Condition",
        ]
    )
    assert code == 0
    assert {p["id"] for p in lines(out / "Patient.ndjson")} == set(sekmet.loaded)
    assert (out / "Condition.ndjson").is_file()
    assert "wrote 2 file(s)" in capsys.readouterr().err


def test_fetch_patients_with_smart(sekmet: LiveServer, tmp_path: Path):
    ids = sorted(sekmet.loaded)[:2]
    out = tmp_path / "out"
    code = main(
        [
            "fetch",
            sekmet.base_url,
            "--out",
            str(out),
            "--auth",
            "smart",
            "--client-id",
            "dxsafety-es",
            "--private-key",
            str(sekmet.ec_key),
            "--patient",
            ids[0],
            "--patient",
            ids[1],
            "--since",
            "2010-01-01",
        ]
    )
    assert code == 0
    assert [p["id"] for p in lines(out / "Patient.ndjson")] == ids


def test_fetch_exit_codes(sekmet: LiveServer, tmp_path: Path):
    token = tmp_path / "token"
    token.write_text("wrong")
    with pytest.raises(FatalError) as err:
        main(
            [
                "fetch",
                sekmet.base_url,
                "--out",
                str(tmp_path),
                "--token-file",
                str(token),
                "--patient",
                next(iter(sekmet.loaded)),
            ]
        )
    assert err.value.exit_code == ExitCode.FHIR_AUTH
    assert "HTTP 401" in err.value.message and "wrong" not in err.value.message
    with pytest.raises(FatalError) as err:
        main(["fetch", sekmet.base_url, "--out", str(tmp_path), "--auth", "smart"])
    assert err.value.exit_code == ExitCode.FHIR_AUTH
    assert "--client-id" in err.value.message
    with pytest.raises(FatalError) as err:
        main(["fetch", "ftp://example.org", "--out", str(tmp_path)])
    assert err.value.exit_code == ExitCode.USAGE


def test_since_option_parsing():
    import argparse
    from datetime import date, datetime

    from plugin.fhir.remote import add_remote_arguments, since_instant

    parser = argparse.ArgumentParser()
    add_remote_arguments(parser)
    assert parser.parse_args(["--since", "2024-03-05"]).since == date(2024, 3, 5)
    assert parser.parse_args(["--since", "auto"]).since == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args(["--since", "last tuesday"])
    assert since_instant(date(2024, 3, 5)) == "2024-03-05T00:00:00Z"
    assert since_instant(datetime(2024, 3, 5, 8, 30)) == "2024-03-05T08:30:00Z"
    assert since_instant("auto") == "auto" and since_instant(None) is None


def test_since_auto_is_refused_for_patients(sekmet: LiveServer, tmp_path: Path):
    with pytest.raises(FatalError) as err:
        main(
            ["fetch", sekmet.base_url, "--out", str(tmp_path), "--since", "auto", "--patient", "x"]
        )
    assert err.value.exit_code == ExitCode.USAGE
