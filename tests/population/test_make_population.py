"""bench/make_population.py: K rewritten copies of a population scan to K times its findings.

The replicated population is scanned with ``dxsafety scan --engine duckdb``; its findings
must be exactly the original's for each copy with patient ids, references and times
rewritten as the copy was (the keys recomputed with the engine's own ``finding_key``)."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest

from plugin.rules.engine import finding_key
from plugin.timeline.model import Event, Kind

ROOT = Path(__file__).resolve().parents[2]
DXS = str(Path(sys.executable).with_name("dxsafety"))
AS_OF = "2026-11-01"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_population", ROOT / "bench" / "make_population.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["make_population"] = mod  # worker processes unpickle its functions by name
    spec.loader.exec_module(mod)
    return mod


mp = _load()


def test_rewrite_ids_references_and_dates() -> None:
    line = (
        b'{"resourceType": "Observation", "id": "o1", "contained": [{"resourceType": '
        b'"Medication", "id": "m1"}], "subject": {"reference": "Patient/p1"}, '
        b'"encounter": {"reference": "http://x/fhir/Encounter/e1/_history/2"}, '
        b'"basedOn": [{"reference": "urn:uuid:s1"}, {"reference": "#m1"}, '
        b'{"reference": "Patient?identifier=sys|42"}], "effectiveDateTime": '
        b'"2024-03-01T10:00:00+01:00", "note": [{"text": "2024-03-01 seen"}]}\n'
    )
    got = json.loads(mp.rewrite(line, 2, shift_days=3))
    assert got["id"] == "c2-o1"
    assert got["contained"][0]["id"] == "c2-m1"
    assert got["subject"]["reference"] == "Patient/c2-p1"
    assert got["encounter"]["reference"] == "http://x/fhir/Encounter/c2-e1/_history/2"
    refs = [r["reference"] for r in got["basedOn"]]
    assert refs == ["urn:uuid:c2-s1", "#c2-m1", "Patient?identifier=sys|42"]
    # copy 2 of shift-days 3 moves 2 days earlier, across the leap day
    assert got["effectiveDateTime"] == "2024-02-28T10:00:00+01:00"
    assert got["note"][0]["text"] == "2024-02-28 seen"
    assert mp.rewrite(line, 0, shift_days=3) == line  # copy 0 is the input
    assert mp.Template(line).conditional == 1


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _scan(data: Path, out: Path) -> list[dict[str, str]]:
    subprocess.run(
        [DXS, "scan", str(data), "--engine", "duckdb", "--as-of", AS_OF, "--out", str(out)],
        check=True,
        capture_output=True,
    )
    return _rows(out)


def _ref(ref: str, pre: str) -> str:
    off = mp.ref_id_offset(ref.encode())
    return ref if off is None else ref[:off] + pre + ref[off:]


def _expected(row: dict[str, str], k: int, days: int) -> tuple[str, ...]:
    pre = mp.prefix(k)
    start = datetime.fromisoformat(row["index_start"]) - timedelta(days=days)
    end = datetime.fromisoformat(row["window_end"]) - timedelta(days=days)
    index = Event(
        patient=pre + row["patient_id"],
        t=start,
        kind=Kind.ENCOUNTER,
        system="",
        code="",
        source=_ref(row["index_ref"], pre),
    )
    key = finding_key(pre + row["patient_id"], row["rule_id"], index)
    return (
        pre + row["patient_id"],
        row["rule_id"],
        index.source,
        start.isoformat(),
        _ref(row["outcome_ref"], pre) if row["outcome_ref"] else "",
        " ".join(_ref(e, pre) for e in row["evidence"].split()),
        end.isoformat(),
        key,
    )


def _got(row: dict[str, str]) -> tuple[str, ...]:
    return tuple(
        row[c]
        for c in (
            "patient_id",
            "rule_id",
            "index_ref",
            "index_start",
            "outcome_ref",
            "evidence",
            "window_end",
            "key",
        )
    )


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    subprocess.run(
        [DXS, "synth", "--patients", "200", "--seed", "5", "--out", str(src), "--workers", "1"],
        check=True,
        capture_output=True,
    )
    return src


def test_copies_scan_to_k_times_the_findings(small: Path, tmp_path: Path) -> None:
    copies, shift = 3, 2
    m = mp.make_population(small, tmp_path / "pop", copies, shift_days=shift, gz=True)
    lines = sum(len(p.read_bytes().splitlines()) for p in small.glob("*.ndjson"))
    assert m["resources"] == copies * lines and m["patients"] == copies * 200
    assert not list((tmp_path / "pop").glob("*.ndjson"))  # gzip only
    original = _scan(small, tmp_path / "orig.csv")
    assert len({r["rule_id"] for r in original}) >= 3, "too few rules fire to prove anything"
    replicated = _scan(tmp_path / "pop", tmp_path / "rep.csv")
    want = sorted(_expected(r, k, mp.shift_of(k, shift)) for k in range(copies) for r in original)
    assert sorted(_got(r) for r in replicated) == want
    labels = _rows(tmp_path / "pop" / "labels.csv")
    assert len(labels) == copies * len(_rows(small / "labels.csv"))
    assert {r["patient_id"] for r in labels} >= {"c2-" + r["patient_id"] for r in original}


def test_plain_output_equals_gzip_and_resumes(small: Path, tmp_path: Path) -> None:
    plain = mp.make_population(small, tmp_path / "a", 2, shift_days=1, workers=1)
    packed = mp.make_population(small, tmp_path / "b", 2, shift_days=1, gz=True, workers=2)
    assert plain["resources"] == packed["resources"]
    names = sorted(p.name for p in (tmp_path / "a").glob("*.ndjson"))
    assert names == sorted(p.name[:-3] for p in (tmp_path / "b").glob("*.ndjson.gz"))
    for name in names:
        a = (tmp_path / "a" / name).read_bytes()
        assert a == gzip.decompress((tmp_path / "b" / (name + ".gz")).read_bytes())
    first = next(iter((tmp_path / "a").glob("*.k001.ndjson")))
    stamp = first.stat().st_mtime_ns
    (tmp_path / "a" / names[0]).unlink()  # an interrupted run: only the missing file is made
    again = mp.make_population(small, tmp_path / "a", 2, shift_days=1, workers=1)
    assert again["resources"] == plain["resources"]
    assert (tmp_path / "a" / names[0]).exists()
    assert first.stat().st_mtime_ns == stamp or first.name == names[0]


def test_cli_refuses_a_patient_count_that_is_not_a_multiple(small: Path, tmp_path: Path) -> None:
    script = str(ROOT / "bench" / "make_population.py")
    proc = subprocess.run(
        [sys.executable, script, str(small), str(tmp_path / "x"), "--patients", "500"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "multiple" in proc.stderr
    proc = subprocess.run(
        [sys.executable, script, str(small), str(tmp_path / "y"), "--patients", "400"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "y" / mp.MANIFEST).read_text())["patients"] == 400
