"""The README's main command, on a small population: synth → train → scan → worklist."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_demo_runs_end_to_end_without_serving(tmp_path):
    work = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "plugin.cli", "demo", "--workdir", str(work),
         "--patients", "600", "--no-serve"],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "model" / "MODEL_CARD.md").exists()
    assert "Ranked findings" in proc.stdout
    assert "worklist login: admin" in proc.stderr
    with sqlite3.connect(work / "dxsafety.db") as db:
        tables = {r[0] for r in db.execute("select name from sqlite_master where type='table'")}
        case_table = next(t for t in ("cases", "findings", "case") if t in tables)
        (n,) = db.execute(f"select count(*) from {case_table}").fetchone()
        scored = db.execute(f"select count(*) from {case_table} where score is not null").fetchone()
    assert n > 0
    assert scored[0] == n  # every case carries the model's score
