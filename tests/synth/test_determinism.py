"""Same seed -> byte-identical output, whatever the number of worker processes."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

from plugin.synth import generate
from plugin.synth.population import CHUNK


def _digest(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())}


def test_same_seed_same_bytes_across_worker_counts(tmp_path: Path) -> None:
    n = CHUNK + 150  # two chunks, so the two-worker run really splits the work
    generate(tmp_path / "a", patients=n, seed=7, as_of=date(2026, 6, 30), workers=1)
    generate(tmp_path / "b", patients=n, seed=7, as_of=date(2026, 6, 30), workers=2)
    a, b = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert "labels.csv" in a and "Patient.000.ndjson" in a
    assert a == b


def test_other_seed_other_population(tmp_path: Path) -> None:
    generate(tmp_path / "a", patients=200, seed=1, as_of=date(2026, 6, 30))
    generate(tmp_path / "b", patients=200, seed=2, as_of=date(2026, 6, 30))
    assert _digest(tmp_path / "a")["Patient.000.ndjson"] != _digest(tmp_path / "b")[
        "Patient.000.ndjson"
    ]


def test_rerun_into_same_directory_replaces_output(tmp_path: Path) -> None:
    generate(tmp_path, patients=300, seed=3, as_of=date(2026, 6, 30))
    first = _digest(tmp_path)
    generate(tmp_path, patients=300, seed=3, as_of=date(2026, 6, 30))
    assert _digest(tmp_path) == first
    assert not (tmp_path / ".synth-tmp").exists()
