"""Partitioned flattening (issue 12): a population scanned one patient partition at a time
gives the findings, and the read report, of a single pass.

Each partition holds all of its patients' resources (a conditional reference resolved
before the partition is chosen), the shared Locations and Medications, and the resources of
the files read in full (Bundles, damaged files) that belong to it.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from plugin.population import partition
from plugin.population.scan import scan_sql
from plugin.scan import ScanResult
from plugin.timeline.model import Finding
from tests.population.shared import SHARED_CASES, shared_source, synth

ROOT = Path(__file__).resolve().parents[2]
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pop") / "pop"
    return synth(out, 600, 11)


def _signature(f: Finding) -> tuple[object, ...]:
    return (f.key, f.outcome_ref, f.evidence, f.window_end, f.index_end, f.summary,
            sorted(f.extra.items()))  # fmt: skip


def _same(one: ScanResult, parts: ScanResult) -> None:
    assert sorted(map(_signature, parts.findings)) == sorted(map(_signature, one.findings))
    assert parts.summary.patients == one.summary.patients
    assert parts.report.read == one.report.read
    assert parts.report.resources == one.report.resources
    assert parts.report.skipped_by_reason == one.report.skipped_by_reason
    assert sorted(e.where for e in parts.report.errors) == sorted(
        e.where for e in one.report.errors)  # fmt: skip
    assert parts.report.warned_by_reason == one.report.warned_by_reason


def test_synthetic_population_in_partitions(ruleset, population: Path) -> None:  # type: ignore[no-untyped-def]
    one = scan_sql(population, ruleset, as_of=AS_OF, parts=1)
    assert len(one.findings) > 30
    _same(one, scan_sql(population, ruleset, as_of=AS_OF, parts=4))


def test_partitioned_writes_in_batches(  # type: ignore[no-untyped-def]
    ruleset, population: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each file its own partitioned write, as a large export is written in batches: the
    batches' Parquet files sit side by side in each partition."""
    split = tmp_path / "split"
    split.mkdir()
    for f in sorted(population.glob("*.ndjson")):
        lines = f.read_text().splitlines(keepends=True)
        third = len(lines) // 3 + 1
        for k in range(3):
            part = lines[k * third : (k + 1) * third]
            (split / f"{f.stem}.part{k}.ndjson").write_text("".join(part))
    one = scan_sql(split, ruleset, as_of=AS_OF, parts=1)
    monkeypatch.setattr(partition, "_BATCH_BYTES", 1)
    _same(one, scan_sql(split, ruleset, as_of=AS_OF, parts=4))


@pytest.mark.parametrize(("name", "as_of"), SHARED_CASES)
def test_shared_data_in_partitions(ruleset, name: str, as_of: datetime) -> None:  # type: ignore[no-untyped-def]
    src = shared_source(name)
    one = scan_sql(src, ruleset, as_of=as_of, parts=1)
    assert one.findings
    _same(one, scan_sql(src, ruleset, as_of=as_of, parts=3))


def test_damaged_fixtures_in_partitions(ruleset) -> None:  # type: ignore[no-untyped-def]
    src = ROOT / "fhir_fixtures"
    one = scan_sql(src, ruleset, as_of=AS_OF, parts=1)
    assert one.report.errors and one.findings
    _same(one, scan_sql(src, ruleset, as_of=AS_OF, parts=5))


def test_conditional_reference_lands_with_its_patient(ruleset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A resource naming its patient by identifier is flattened in that patient's
    partition: without the resolution before partitioning its event would be lost."""
    src = tmp_path / "pop"
    src.mkdir()
    patients, encounters = [], []
    for i in range(12):
        patients.append({"resourceType": "Patient", "id": f"p{i}", "gender": "female",
                         "birthDate": "1950-01-01",
                         "identifier": [{"system": "urn:mrn", "value": f"m{i}"}]})  # fmt: skip
        for j, (start, cls) in enumerate((("2026-03-01T10:00:00Z", "EMER"),
                                          ("2026-03-05T10:00:00Z", "IMP"))):  # fmt: skip
            encounters.append({
                "resourceType": "Encounter", "id": f"e{i}-{j}", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                          "code": cls},
                "subject": {"reference": f"Patient?identifier=urn:mrn|m{i}"},
                "period": {"start": start, "end": start.replace("10:00", "14:00")},
            })  # fmt: skip
    for name, rows in (("Patient", patients), ("Encounter", encounters)):
        (src / f"{name}.ndjson").write_text("".join(json.dumps(r) + "\n" for r in rows))
    one = scan_sql(src, ruleset, as_of=AS_OF, parts=1)
    assert {f.patient_id for f in one.findings} == {f"p{i}" for i in range(12)}
    _same(one, scan_sql(src, ruleset, as_of=AS_OF, parts=4))


def test_staged_partitions_rescan(ruleset, population: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The partitions' Parquet is the stage a re-scan (and Spark) reads."""
    stage = tmp_path / "stage"
    first = scan_sql(population, ruleset, as_of=AS_OF, parts=3, stage_dir=stage)
    assert sorted((stage / "events").glob("bucket=*/*.parquet"))
    again = scan_sql(population, ruleset, as_of=AS_OF, parts=3, stage_dir=stage)
    _same(first, again)
    shutil.rmtree(stage)


def test_partitioned_stage_rescans_a_partition_at_a_time(
    ruleset, population: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """The re-scan of a partitioned stage runs the rules on one partition's tables at a time
    (its whole stage, 1,000,000 patients, ran out of memory), with the same findings."""
    from plugin.population import scan as scan_module

    stage = tmp_path / "stage"
    first = scan_sql(population, ruleset, as_of=AS_OF, parts=3, stage_dir=stage)
    seen: list[int] = []
    real_run = scan_module.run

    def run(runner, plan):  # type: ignore[no-untyped-def]
        (n,) = runner.con.execute("SELECT count(*) FROM patients").fetchone()
        seen.append(n)
        return real_run(runner, plan)

    monkeypatch.setattr(scan_module, "run", run)
    again = scan_sql(population, ruleset, as_of=AS_OF, parts=3, stage_dir=stage)
    _same(first, again)
    assert len(seen) == 3 and all(n > 0 for n in seen)
    assert sum(seen) == first.summary.patients


def test_parts_by_input_size(tmp_path: Path) -> None:
    (tmp_path / "a.ndjson").write_bytes(b"x" * 3000)
    (tmp_path / "b.ndjson.gz").write_bytes(b"x" * 1000)
    assert partition.parts_for([tmp_path], part_bytes=10_000) == 1  # 3,000 + 7 x 1,000
    assert partition.parts_for([tmp_path], part_bytes=5_000) == 2


def test_parts_by_memory_limit(tmp_path: Path) -> None:
    """A memory limit sizes the partitions (1,000,000 patients in 8 partitions ran out of
    1500MB): twice the limit of input per partition, never more than the default."""
    assert partition.limit_bytes("1500MB") == 1_500_000_000
    assert partition.limit_bytes(" 1.5 GiB ") == int(1.5 * 2**30)
    assert partition.limit_bytes("2gb") == 2_000_000_000
    assert partition.limit_bytes("80%") is None
    assert partition.limit_bytes(None) is None
    assert partition.part_bytes_for("1500MB") == 3_000_000_000
    assert partition.part_bytes_for("64GB") == partition.PART_BYTES
    assert partition.part_bytes_for(None) == partition.PART_BYTES
    (tmp_path / "a.ndjson.gz").write_bytes(b"x" * 1000)  # 7,000 bytes as JSON
    assert partition.parts_for([tmp_path], partition.part_bytes_for("2KB")) == 2
    assert partition.parts_for([tmp_path], partition.part_bytes_for("1KiB")) == 4
