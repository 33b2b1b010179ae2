"""labels.csv: columns, references to existing resources, planted prevalences, exclusions."""

from __future__ import annotations

import csv
import math
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from plugin.synth import LABEL_COLUMNS, Summary, read_labels
from plugin.synth.mix import SCENARIOS

TRIGGERS = {"SP-1", "SP-2", "SP-3", "ED-1", "PC-3", "PC-4", "TR-1", "TR-7"}


def _utc(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_columns_and_values(population: tuple[Path, Summary]) -> None:
    out, _ = population
    with open(out / "labels.csv", newline="") as fh:
        reader = csv.reader(fh)
        assert tuple(next(reader)) == LABEL_COLUMNS
    rows = read_labels(out / "labels.csv")
    assert rows
    for r in rows:
        assert r.trigger in TRIGGERS
        assert r.is_mod in (0, 1)
        assert bool(r.missed_dx) == bool(r.is_mod), r
        assert r.index_ref.split("/")[0] in ("Encounter", "Observation")
    keys = [(r.patient_id, r.trigger, r.index_ref) for r in rows]
    assert len(keys) == len(set(keys))
    assert {r.missed_dx for r in rows if r.is_mod} >= {
        "stroke", "appendicitis", "sepsis", "mi", "pe", "colorectal_cancer", "hypothyroidism"}


def test_labels_reference_existing_resources(
    population: tuple[Path, Summary], resources: dict[str, dict[str, Any]]
) -> None:
    out, _ = population
    for r in read_labels(out / "labels.csv") + read_labels(out / "excluded.csv"):
        res = resources[r.index_ref]
        assert res["subject"]["reference"] == f"Patient/{r.patient_id}"
        assert f"Patient/{r.patient_id}" in resources
        when = res["period"]["start"] if "period" in res else res["effectiveDateTime"]
        assert _utc(when) == _utc(r.index_time)


def test_planted_prevalence_per_scenario(population: tuple[Path, Summary]) -> None:
    """Each scenario's patients (seen through its label rows) match its weight."""
    out, summary = population
    rows = read_labels(out / "labels.csv") + read_labels(out / "excluded.csv")
    patients = Counter[str]()
    for name in {(r.scenario, r.patient_id) for r in rows}:
        patients[name[0]] += 1
    for s in SCENARIOS:
        expected = s.weight * summary.patients
        assert abs(patients[s.name] - expected) <= 4 * math.sqrt(expected) + 2, (
            s.name, patients[s.name], expected)


def test_every_planted_case_has_its_trigger_row(population: tuple[Path, Summary]) -> None:
    out, _ = population
    rows = read_labels(out / "labels.csv")
    by_scenario = {s.name: s for s in SCENARIOS}
    planted = {(r.patient_id, r.scenario) for r in rows if r.scenario != "background"}
    for pid, name in planted:
        scenario = by_scenario[name]
        assert not scenario.excluded, f"{name} was flagged although built to be excluded"
        assert any(r.patient_id == pid and r.trigger == scenario.trigger for r in rows), name
    for r in read_labels(out / "excluded.csv"):
        assert by_scenario[r.scenario].excluded


def test_background_adds_few_trigger_hits(population: tuple[Path, Summary]) -> None:
    """Background care stays out of the planted triggers (PC-4, a broad return trigger, aside)."""
    out, _ = population
    background = Counter(r.trigger for r in read_labels(out / "labels.csv")
                         if r.scenario == "background")
    assert sum(n for t, n in background.items() if t != "PC-4") <= 2, background
