"""Incremental scans (issue 12 item 5): a Bulk ``_since`` delta applied to a stage gives the
findings of a full rescan of old + new files, re-flattens only the patients it touches, and
sends the worklist store only what changed (and marks what no longer fires).

One synthetic population is split into an initial export and a delta that (a) brings the
index event of a finding (a new finding), (b) brings the colonoscopy a positive-FIT finding
was missing (it stops firing), (c) re-sends a patient's resource unchanged but newer (no
finding changes).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from plugin.errors import StageMismatch
from plugin.population.incremental import scan_incremental
from plugin.population.scan import scan_sql
from plugin.timeline.model import Finding
from plugin.worklist.store import Store
from tests.population.shared import synth

ROOT = Path(__file__).resolve().parents[2]
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth(tmp_path_factory.mktemp("pop"), 300, 7)


@pytest.fixture(scope="module")
def full(ruleset, population: Path) -> list[Finding]:  # type: ignore[no-untyped-def]
    return scan_sql(population, ruleset, as_of=AS_OF).findings


def _signature(f: Finding) -> tuple[object, ...]:
    return (f.key, f.outcome_ref, f.evidence, f.window_end, f.index_end, f.summary,
            sorted(f.extra.items()))  # fmt: skip


class Recorder:
    """The real worklist store, recording what the scan hands it."""

    def __init__(self, store: Store) -> None:
        self.store, self.upserted, self.gone = store, [], []  # type: ignore[var-annotated]

    def upsert_findings(self, findings: Iterable[Finding], timelines: Any = None) -> int:
        batch = list(findings)
        self.upserted += [f.key for f in batch]
        return self.store.upsert_findings(batch, timelines)

    def mark_gone(self, keys: Iterable[str]) -> int:
        keys = list(keys)
        self.gone += keys
        return self.store.mark_gone(keys)


def _lines(src: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for f in sorted(src.glob("*.ndjson"))
            for line in f.read_text().splitlines()]  # fmt: skip


def _write(folder: Path, resources: list[dict[str, Any]]) -> None:
    folder.mkdir(parents=True)
    by_type: dict[str, list[str]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(json.dumps(r))
    for rtype, lines in by_type.items():
        (folder / f"{rtype}.000.ndjson").write_text("\n".join(lines) + "\n")


def _split(population: Path, full: list[Finding], tmp: Path) -> tuple[Path, Path, dict[str, Any]]:
    """(initial export, delta, what each part of the delta is about)."""
    resources = _lines(population)
    tr1 = next(f for f in full if f.extra["trigger"] == "TR-1")  # (b): stops firing
    new = next(f for f in full if f.extra["trigger"] == "ED-1" and f.patient_id != tr1.patient_id)
    touched = next(
        f.patient_id for f in full if f.patient_id not in (tr1.patient_id, new.patient_id)
    )
    moved = [r for r in resources if f"{r['resourceType']}/{r['id']}" == new.index_ref]
    assert len(moved) == 1
    initial = [r for r in resources if r is not moved[0]]
    patient = next(r for r in resources
                   if r["resourceType"] == "Patient" and r["id"] == touched)  # fmt: skip
    newer = {**patient, "meta": {"lastUpdated": "2026-10-30T00:00:00Z"}}
    colonoscopy = {
        "resourceType": "Procedure", "id": "delta-colonoscopy", "status": "completed",
        "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "45378",
                             "display": "Colonoscopy, flexible; diagnostic"}]},
        "subject": {"reference": f"Patient/{tr1.patient_id}"},
        "performedDateTime": (tr1.index_start + timedelta(days=20)).isoformat(),
    }  # fmt: skip
    _write(tmp / "initial", initial)
    _write(tmp / "delta", [moved[0], colonoscopy, newer])
    about = {"new": new.key, "stopped": tr1.key, "touched": touched,
             "patients": {new.patient_id, tr1.patient_id, touched}}  # fmt: skip
    return tmp / "initial", tmp / "delta", about


def test_delta_equals_full_rescan(ruleset, population: Path, full, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    initial, delta, about = _split(population, full, tmp_path)
    store = Store(f"sqlite:///{tmp_path / 'worklist.db'}")
    sink = Recorder(store)
    stage = tmp_path / "stage"

    first = scan_incremental(initial, ruleset, as_of=AS_OF, stage_dir=stage, sink=sink)
    before = {f.key: _signature(f) for f in scan_sql(initial, ruleset, as_of=AS_OF).findings}
    assert first.built and {f.key: _signature(f) for f in first.result.findings} == before
    assert about["new"] not in before and about["stopped"] in before
    assert sorted(sink.upserted) == sorted(before) and not sink.gone
    sink.upserted.clear()

    done = scan_incremental(delta, ruleset, as_of=AS_OF, stage_dir=stage, sink=sink)
    full_stage = tmp_path / "full-stage"
    rescan = scan_sql([initial, delta], ruleset, as_of=AS_OF, stage_dir=full_stage)
    after = {f.key: _signature(f) for f in rescan.findings}
    assert {f.key: _signature(f) for f in done.result.findings} == after
    assert done.result.summary.patients == rescan.summary.patients
    # only the three patients of the delta were re-flattened and re-evaluated
    assert done.reflattened == done.reevaluated == len(about["patients"]) == 3
    # the store got exactly the new or changed findings, and the one that stopped is marked
    expected = sorted(k for k, sig in after.items() if before.get(k) != sig)
    assert about["new"] in expected and sorted(sink.upserted) == expected
    assert sink.gone == [about["stopped"]] == sorted(before.keys() - after.keys())
    assert not any(f.patient_id == about["touched"] for f in done.changed)
    with store.engine.connect() as conn:
        rows = dict(conn.execute(sa.text("SELECT key, gone_at IS NOT NULL FROM findings")).all())
    assert rows[about["stopped"]] == 1 and sum(rows.values()) == 1
    assert set(rows) == set(before) | set(after)
    store.close()

    # the staged tables now hold what a full flatten of old + new files holds
    assert _events(stage) == _events(full_stage)

    # the same files again: nothing to apply, nothing sent
    sink.upserted.clear()
    again = scan_incremental(delta, ruleset, as_of=AS_OF, stage_dir=stage)
    assert again.files == again.reflattened == 0 and not again.changed and not again.gone


def test_window_closing_later_is_new(
    ruleset, population: Path, full, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    """An absence window that closes between two scans fires for an unaffected patient
    (through the CLI: ``dxsafety scan ... --stage DIR --incremental --store URL``)."""
    from plugin.cli import main

    absent = next(f for f in full if f.extra["type"] == "absence")
    early = absent.window_end - timedelta(seconds=1)
    db = tmp_path / "worklist.db"

    def scan(as_of: datetime) -> set[str]:
        out = tmp_path / "findings.json"
        argv = ["scan", str(population), "--engine", "duckdb", "--stage", str(tmp_path / "stage"),
                "--incremental", "--store", f"sqlite:///{db}", "--as-of", as_of.isoformat(),
                "--out", str(out)]  # fmt: skip
        assert main(argv) == 0
        return {f["key"] for f in json.loads(out.read_text())}

    first = scan(early)
    assert "incremental: built the stage" in capsys.readouterr().err
    assert absent.key not in first
    assert first == {f.key for f in scan_sql(population, ruleset, as_of=early).findings}
    later = scan(AS_OF)
    assert "re-flattened 0 patients, re-evaluated 0; 1 new or changed" in capsys.readouterr().err
    assert later == {f.key for f in full} == first | {absent.key}
    with sa.create_engine(f"sqlite:///{db}").connect() as conn:
        stored = set(conn.execute(sa.text("SELECT key FROM findings")).scalars())
    assert stored == later


def test_stages_are_not_mixed(ruleset, tmp_path: Path, population: Path) -> None:  # type: ignore[no-untyped-def]
    """A stage of a plain scan is not taken as incremental, nor the other way round."""
    small = tmp_path / "small"
    small.mkdir()
    for name in ("Patient.000.ndjson", "Encounter.000.ndjson"):
        (small / name).write_bytes((population / name).read_bytes())
    scan_sql(small, ruleset, as_of=AS_OF, stage_dir=tmp_path / "plain")
    with pytest.raises(StageMismatch, match="without --incremental"):
        scan_incremental(small, ruleset, as_of=AS_OF, stage_dir=tmp_path / "plain")
    scan_incremental(small, ruleset, as_of=AS_OF, stage_dir=tmp_path / "inc")
    with pytest.raises(StageMismatch, match="kept by --incremental"):
        scan_sql(population, ruleset, as_of=AS_OF, stage_dir=tmp_path / "inc")
    from plugin.cli import main
    from plugin.errors import ExitCode, FatalError

    for extra in (["--engine", "python", "--stage", str(tmp_path / "inc")], []):
        with pytest.raises(FatalError, match="2") as stop:  # never silently a full scan
            main(["scan", str(small), "--incremental", *extra])
        assert stop.value.exit_code is ExitCode.USAGE


def _events(folder: Path) -> list[tuple[Any, ...]]:
    import duckdb

    return sorted(duckdb.sql(
        f"SELECT pid, seq, kind, t, source, code, label, setting, released FROM read_parquet("
        f"'{folder}/events/*/*.parquet')").fetchall())  # fmt: skip


def test_new_location_reflattens_its_patients(ruleset, population: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A Location in the delta re-flattens the patients whose encounters name it."""
    resources = _lines(population)
    pids = [r["id"] for r in resources if r["resourceType"] == "Patient"][:3]
    mine = [r for r in resources if r["id"] in pids
            or r.get("subject", {}).get("reference") in {f"Patient/{p}" for p in pids}]  # fmt: skip
    visit = next(r for r in mine if r["resourceType"] == "Encounter"
                 and r["subject"]["reference"] == f"Patient/{pids[0]}")  # fmt: skip
    visit["location"] = [{"location": {"reference": "Location/ward-1"}}]
    _write(tmp_path / "initial", mine)
    _write(tmp_path / "delta", [{"resourceType": "Location", "id": "ward-1", "name": "Ward One"}])
    stage = tmp_path / "stage"
    scan_incremental(tmp_path / "initial", ruleset, as_of=AS_OF, stage_dir=stage)
    assert ("transfer", "Location/ward-1") in {(e[2], e[6]) for e in _events(stage)}
    done = scan_incremental(tmp_path / "delta", ruleset, as_of=AS_OF, stage_dir=stage)
    assert done.reflattened == 1
    full_stage = tmp_path / "full"
    scan_sql([tmp_path / "initial", tmp_path / "delta"], ruleset, as_of=AS_OF,
             stage_dir=full_stage)  # fmt: skip
    assert _events(stage) == _events(full_stage)
    assert ("transfer", "Ward One") in {(e[2], e[6]) for e in _events(stage)}


class Broken(Exception):
    pass


def test_failures_are_redone(ruleset, population: Path, full, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A failed store gets the changes on the next scan; an interrupted scan is refused until
    re-run with the same files, and then gives the full rescan's findings."""
    import plugin.population.incremental as incremental

    picked = full[:3]
    pids = {f.patient_id for f in picked}
    refs = {f"Patient/{p}" for p in pids}
    mine = [r for r in _lines(population) if (r["resourceType"] == "Patient" and r["id"] in pids)
            or r.get("subject", {}).get("reference") in refs]  # fmt: skip
    moved = next(r for r in mine if f"{r['resourceType']}/{r['id']}" == picked[0].index_ref)
    _write(tmp_path / "initial", [r for r in mine if r is not moved])
    _write(tmp_path / "delta", [moved])
    _write(tmp_path / "other", [{"resourceType": "Location", "id": "x", "name": "X"}])
    stage = tmp_path / "stage"

    class FailingStore:
        def upsert_findings(self, findings: Iterable[Finding], timelines: Any = None) -> int:
            raise Broken

        def mark_gone(self, keys: Iterable[str]) -> int:
            raise Broken

    with pytest.raises(Broken):
        scan_incremental(tmp_path / "initial", ruleset, as_of=AS_OF, stage_dir=stage,
                         sink=FailingStore())  # fmt: skip
    store = Store(f"sqlite:///{tmp_path / 'worklist.db'}")
    retry = scan_incremental(tmp_path / "initial", ruleset, as_of=AS_OF, stage_dir=stage,
                             sink=store)  # fmt: skip
    assert retry.files == 0 and retry.changed and store.count_findings() == len(retry.changed)
    store.close()

    def crash(self: Any) -> int:
        raise Broken

    with monkeypatch.context() as m:  # after the new tables are staged, before the state
        m.setattr(incremental._Delta, "count_patients", crash)
        with pytest.raises(Broken):
            scan_incremental(tmp_path / "delta", ruleset, as_of=AS_OF, stage_dir=stage)
    with pytest.raises(StageMismatch, match="interrupted"):
        scan_incremental(tmp_path / "other", ruleset, as_of=AS_OF, stage_dir=stage)
    done = scan_incremental(tmp_path / "delta", ruleset, as_of=AS_OF, stage_dir=stage)
    rescan = scan_sql([tmp_path / "initial", tmp_path / "delta"], ruleset, as_of=AS_OF)
    assert picked[0].key in {f.key for f in done.changed}
    assert sorted(map(_signature, done.result.findings)) == sorted(map(_signature, rescan.findings))
