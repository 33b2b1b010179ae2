"""``dxsafety synth`` on the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from plugin.cli import main
from plugin.synth import LABEL_COLUMNS


def test_synth_command_writes_population_and_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pop"
    code = main(["synth", "--patients", "120", "--seed", "4", "--out", str(out),
                 "--as-of", "2026-01-31", "--workers", "1"])
    assert code == 0
    assert (out / "Patient.000.ndjson").read_bytes().count(b"\n") == 120
    assert (out / "labels.csv").read_text().splitlines()[0] == ",".join(LABEL_COLUMNS)
    printed = capsys.readouterr().out
    assert "120 patients" in printed and "labels.csv" in printed


def test_synth_command_rejects_a_bad_date(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["synth", "--patients", "5", "--out", str(tmp_path), "--as-of", "June"])
    assert exc.value.code == 2
