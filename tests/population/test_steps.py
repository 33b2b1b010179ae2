"""The step timings a population scan logs at DEBUG (plugin.population.steps): the lines
bench/scan_bench.py parses into its CPU-budget table, and nothing without DEBUG."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from plugin.population.scan import scan_sql
from plugin.population.steps import LINE
from plugin.rules import RuleSet

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "fhir_fixtures" / "sp1_dizziness_stroke_day12"
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
LOGGER = "plugin.population.steps"


def _steps(caplog: pytest.LogCaptureFixture) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for rec in caplog.records:
        if rec.name == LOGGER:
            m = re.fullmatch(LINE, rec.getMessage())
            assert m, rec.getMessage()  # every step line is one the bench can read
            out.setdefault(m["name"], []).append((float(m["wall"]), float(m["cpu"])))
    return out


def test_a_scan_logs_each_step_with_wall_and_cpu_seconds(
    ruleset: RuleSet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    result = scan_sql(SOURCE, ruleset, as_of=AS_OF, stage_dir=tmp_path / "stage")
    assert result.findings  # the fixture's planted miss: the steps timed a real scan
    steps = _steps(caplog)
    for name in ("read", "damaged", "patients", "events", "derive", "text_concepts", "stage",
                 "compile", "prepare", "findings"):  # fmt: skip
        assert len(steps.get(name, [])) == 1, name
    # one per compiled rule the data can feed (a rule the fixture has no data for is a gap)
    assert 1 <= len(steps["rules"]) <= len(ruleset.rules)
    assert all(wall >= 0 and cpu >= 0 for t in steps.values() for wall, cpu in t)

    # a re-scan of the stage reads no JSON: no flattening step
    caplog.clear()
    scan_sql(SOURCE, ruleset, as_of=AS_OF, stage_dir=tmp_path / "stage")
    again = _steps(caplog)
    assert "read" not in again and "events" not in again
    assert len(again["rules"]) == len(steps["rules"])


def test_a_partitioned_scan_logs_its_own_read_and_each_partition(
    ruleset: RuleSet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    scan_sql(SOURCE, ruleset, as_of=AS_OF, parts=2)
    steps = _steps(caplog)
    assert len(steps["read_partitioned"]) == 1
    assert len(steps["load_part"]) == 2 and len(steps["events"]) == 2
    assert "read" not in steps  # the partitioned read is one step of its own


def test_nothing_is_logged_without_debug(
    ruleset: RuleSet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    scan_sql(SOURCE, ruleset, as_of=AS_OF)
    assert not [r for r in caplog.records if r.name == LOGGER]
