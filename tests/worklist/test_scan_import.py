"""The real scan's output in the worklist: ``dxsafety synth`` -> ``scan --store`` and
``scan --format json`` -> ``worklist import`` give the same cases, once each."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa

from plugin.cli import main
from plugin.worklist import cases, tables
from plugin.worklist.store import Store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "pop"
    assert main(["synth", "--patients", "60", "--seed", "11", "--out", str(out)]) == 0
    return out


def test_scan_store_then_json_import_is_idempotent(
    population: Path, store: Store, db_url: str, tmp_path: Path
) -> None:
    rules = str(ROOT / "rules")
    as_of = "2030-01-01T00:00:00Z"
    findings_json = tmp_path / "findings.json"
    assert main(["scan", str(population), "--rules", rules, "--as-of", as_of,
                 "--out", str(findings_json), "--format", "json",
                 "--store", db_url]) == 0  # fmt: skip
    written = orjson.loads(findings_json.read_bytes())
    assert written, "the synthetic population should trigger some rules"
    assert store.count_findings() == len(written)
    # every case the scan stored has its timeline snapshot for the case view
    with store.engine.connect() as conn:
        snapshots = conn.execute(sa.select(tables.findings.c.snapshot)).scalars().all()
    assert all(s and s["events"] for s in snapshots)
    assert main(["worklist", "--database-url", db_url, "import", str(findings_json)]) == 0
    assert main(["scan", str(population), "--rules", rules, "--as-of", as_of,
                 "--store", db_url]) == 0  # fmt: skip
    with store.engine.connect() as conn:
        keys = conn.execute(sa.select(tables.findings.c.key)).scalars().all()
    assert sorted(keys) == sorted(f["key"] for f in written)
    case = cases.get_case(store, written[0]["key"])
    assert case is not None and case.finding["rule_id"] == written[0]["rule_id"]


def test_json_import_with_fhir_source_stores_timelines(
    population: Path, store: Store, db_url: str, tmp_path: Path
) -> None:
    findings_json = tmp_path / "findings.json"
    assert main(["scan", str(population), "--rules", str(ROOT / "rules"),
                 "--as-of", "2030-01-01T00:00:00Z", "--out", str(findings_json),
                 "--format", "json"]) == 0  # fmt: skip
    written = orjson.loads(findings_json.read_bytes())
    assert main(["worklist", "--database-url", db_url, "import", str(findings_json),
                 "--fhir", str(population)]) == 0  # fmt: skip
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(tables.findings.c.key, tables.findings.c.snapshot)).all()
    assert sorted(k for k, _ in rows) == sorted(f["key"] for f in written)
    for _key, snap in rows:
        assert snap and snap["events"]
