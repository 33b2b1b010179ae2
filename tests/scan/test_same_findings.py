"""Refactors keep findings: fixtures and the shared data give the findings recorded in
``golden/findings.csv`` (one row per finding: source, key, rule, catalogue id, patient,
index and outcome references).

The golden file was written by the engine before the pipeline/rules-API refactor (issue 10)
and is changed only with an explanation in the commit that changes it.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest

import tests.paths as shared_paths
from plugin.rules import load_rules
from plugin.scan import scan_population

ROOT = Path(__file__).parents[2]
GOLDEN = Path(__file__).parent / "golden" / "findings.csv"
AS_OF = datetime(2200, 1, 1, tzinfo=UTC)  # after every date in the data (MIMIC is in the 2100s)
SHARED = ["mimic-iv-demo-fhir", "synthea-r4", "bulk-ndjson-10-patients", "hl7-r4-examples"]


def sources() -> list[Path]:
    fixtures = sorted(
        d for d in (ROOT / "fhir_fixtures").iterdir() if d.is_dir() and d.name != "bad"
    )
    return fixtures + [shared_paths.DATA / name for name in SHARED]


def golden() -> dict[str, set[tuple[str, ...]]]:
    out: dict[str, set[tuple[str, ...]]] = {}
    with GOLDEN.open(newline="") as fh:
        for row in csv.DictReader(fh):
            out.setdefault(row["source"], set()).add(
                (row["key"], row["rule_id"], row["trigger"], row["patient_id"],
                 row["index_ref"], row["outcome_ref"])
            )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def ruleset():
    return load_rules(ROOT / "rules")


@pytest.mark.parametrize("source", sources(), ids=lambda p: p.name)
def test_findings_are_unchanged(source, ruleset):
    if not source.is_dir():
        pytest.fail(f"shared data missing: {source}")
    found = {
        (f.key, f.rule_id, f.extra.get("trigger", ""), f.patient_id, f.index_ref,
         f.outcome_ref or "")
        for f in scan_population([source], ruleset, as_of=AS_OF).findings
    }  # fmt: skip
    want = golden().get(source.name, set())
    assert found - want == set(), "new findings"
    assert want - found == set(), "lost findings"


def test_golden_covers_real_data():
    g = golden()
    assert sum(len(v) for v in g.values()) >= 100
    assert len(g["mimic-iv-demo-fhir"]) > 0 and len(g["synthea-r4"]) > 0
