"""The shared real data the population tests read (../shared/data), each with an as-of."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

SHARED = Path("/work/shared/data")
# an as-of after the data's dates (MIMIC dates are shifted into 2100-2210)
SHARED_CASES = [
    ("mimic-iv-demo-fhir", datetime(2300, 1, 1, tzinfo=UTC)),
    ("synthea-r4", datetime(2300, 1, 1, tzinfo=UTC)),
    ("bulk-ndjson-10-patients", datetime(2026, 11, 1, tzinfo=UTC)),
]


def shared_source(name: str) -> Path:
    """The folder of a shared data set; the test is skipped where it is not on the machine."""
    import pytest

    src = SHARED / name
    if not src.exists():
        pytest.skip(f"{src} not on this machine")
    return src


def synth(out: Path, patients: int, seed: int) -> Path:
    """A synthetic population made by the CLI (``dxsafety synth``) in ``out``."""
    import subprocess
    import sys

    dxs = str(Path(sys.executable).parent / "dxsafety")
    subprocess.run([dxs, "synth", "--patients", str(patients), "--seed", str(seed),
                    "--out", str(out)], check=True, capture_output=True)  # fmt: skip
    return out
