"""``dxsafety worklist``: import (killed mid-way and resumed), create-user, export."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa

from plugin.cli import main
from plugin.timeline.model import Finding
from plugin.worklist import cases, tables
from plugin.worklist.saferdx import ReviewInput
from plugin.worklist.store import Store
from plugin.worklist.users import authenticate
from tests.worklist.factories import T0, finding

ROOT = Path(__file__).resolve().parents[2]
BATCH = 200


def finding_json(f: Finding) -> dict:
    data = asdict(f)
    for k in ("index_start", "index_end", "window_end"):
        data[k] = data[k].isoformat() if data[k] is not None else None
    return data


def write_findings(path: Path, n: int) -> set[str]:
    fs = [
        finding(f"pt{i:06d}", score=(i % 97) / 97, start=T0 + timedelta(minutes=i))
        for i in range(n)
    ]
    path.write_bytes(orjson.dumps([finding_json(f) for f in fs]))
    return {f.key for f in fs}


def import_cmd(db_url: str, path: Path) -> list[str]:
    code = "import sys; from plugin.cli import main; sys.exit(main(sys.argv[1:]))"
    return [
        sys.executable,
        "-c",
        code,
        "worklist",
        "--database-url",
        db_url,
        "import",
        str(path),
        "--batch-size",
        str(BATCH),
    ]


def keys_in(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return list(conn.execute(sa.select(tables.findings.c.key)).scalars())


@pytest.mark.slow
def test_import_killed_mid_batch_then_rerun_loses_and_duplicates_nothing(
    store: Store, db_url: str, tmp_path: Path
) -> None:
    n = 8_000
    path = tmp_path / "findings.json"
    expected = write_findings(path, n)
    proc = subprocess.Popen(
        import_cmd(db_url, path), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    try:
        while store.count_findings() < 3 * BATCH:  # a few batches in, others in flight
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
            assert time.monotonic() < deadline, "import made no progress"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.communicate(timeout=30)  # waits, and closes the pipes (ResourceWarning otherwise)
    assert proc.returncode == -signal.SIGKILL
    partial = keys_in(store)
    assert 0 < len(partial) < n, "the kill must land mid-import"
    assert len(partial) % BATCH == 0, "a batch is all-or-nothing"
    assert len(set(partial)) == len(partial)
    # the re-run completes the import
    rerun = subprocess.run(
        import_cmd(db_url, path), cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"{n - len(partial)} new" in rerun.stdout
    final = keys_in(store)
    assert len(final) == n and set(final) == expected


def test_create_user_import_export_roundtrip(
    store: Store, db_url: str, tmp_path: Path, capsys
) -> None:
    pw = tmp_path / "pw"
    pw.write_text("a long password\n")
    base = ["worklist", "--database-url", db_url]
    assert (
        main(
            [
                "worklist",
                "create-user",
                "rita",
                "--role",
                "reviewer",
                "--password-file",
                str(pw),
                "--database-url",
                db_url,
            ]
        )
        == 0  # --database-url also after the action
    )
    assert authenticate(store, "rita", "a long password") is not None
    findings_file = tmp_path / "f.json"
    write_findings(findings_file, 3)
    assert main([*base, "import", str(findings_file)]) == 0
    assert main([*base, "import", str(findings_file)]) == 0
    assert "0 new, 3 already known" in capsys.readouterr().out
    rita = authenticate(store, "rita", "a long password")
    key = finding("pt000000").key
    cases.save_review(
        store,
        cases.find_id(store, key) or 0,
        ReviewInput(items=[1] * 13, harm="none"),
        by=rita,
        version=1,
    )
    for fmt in ("csv", "detectedissue", "labels"):
        out = tmp_path / f"out.{fmt}"
        assert main([*base, "export", "--format", fmt, "--out", str(out)]) == 0
        assert out.exists() and not out.with_suffix(out.suffix + ".tmp").exists()
    with (tmp_path / "out.labels").open(newline="") as fh:
        labels = list(csv.DictReader(fh))
    assert [(r["patient_id"], r["label"]) for r in labels] == [("pt000000", "0")]  # issue 13
    assert len((tmp_path / "out.detectedissue").read_text().splitlines()) == 1


def test_import_rejects_a_file_that_is_not_findings(db_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[{"key": "x"}]')
    with pytest.raises(SystemExit) as exc:
        main(["worklist", "--database-url", db_url, "import", str(bad)])
    assert exc.value.code == 13
