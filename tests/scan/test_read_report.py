"""Every consumer of a population reads it through the one pipeline and surfaces what it skipped:
a population with one unreadable NDJSON line and one malformed resource is reported, by
``file:line``, by the scan, training-data loading, the synth PPV check, worklist import (library
and command) and a rule-test fixture (where it fails the case)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from plugin.cli import main
from plugin.fhir.read import ReadReport
from plugin.rank.dataset import collect_population
from plugin.rank.labels import read_labels
from plugin.rules import evaluate, load_rules
from plugin.rules.testing import run_rule_tests
from plugin.scan import iter_findings, scan_population
from plugin.synth.check import format_report, measure
from plugin.synth.writer import generate
from plugin.worklist.importer import with_timelines

ROOT = Path(__file__).parents[2]
RULES = ROOT / "rules"
AS_OF = datetime(2026, 6, 30, tzinfo=UTC)


def add_bad_lines(ndjson: Path, patient: str) -> list[str]:
    """Append an unreadable line and a Condition with an unparseable date; their ``where``."""
    lines = ndjson.read_text().splitlines() if ndjson.exists() else []
    bad_date = {
        "resourceType": "Condition",
        "id": "bad-date",
        "subject": {"reference": f"Patient/{patient}"},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "R42"}]},
        "onsetDateTime": "yesterday",
    }
    lines += ['{"resourceType": "Condition", "id": "cut-off", "subj', json.dumps(bad_date)]
    ndjson.write_text("\n".join(lines) + "\n")
    return [f"{ndjson}:{len(lines) - 1}", f"{ndjson}:{len(lines)}"]


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("population")
    generate(out, patients=30, seed=11, as_of=AS_OF.date())
    first = json.loads((out / "Patient.000.ndjson").read_text().splitlines()[0])
    return out, add_bad_lines(out / "Condition.000.ndjson", first["id"])


def assert_reported(report: ReadReport, where: list[str]) -> None:
    assert sorted(e.where for e in report.errors) == sorted(where)
    assert report.skipped == 2
    text = "\n".join(report.summary_lines())
    for w in where:
        assert f"skipped: {w}: " in text


def test_the_pipeline_reports_both_lines(population):
    data, where = population
    report = ReadReport()
    pairs = list(iter_findings(data, load_rules(RULES), as_of=AS_OF, report=report))
    assert len(pairs) == 30
    assert_reported(report, where)


def test_scan_population_returns_the_report(population):
    data, where = population
    result = scan_population([data], load_rules(RULES), as_of=AS_OF)
    assert_reported(result.report, where)
    assert result.summary.patients == 30


def test_training_data_loading_reports_it(population):
    data, where = population
    ruleset = load_rules(RULES)
    collected = collect_population(
        [data], lambda tl: evaluate(ruleset, tl, as_of=AS_OF), read_labels(data / "labels.csv")
    )
    assert collected.patients == 30
    assert_reported(collected.report, where)


def test_the_synth_ppv_check_reports_it(population):
    data, where = population
    report = measure(data, rules_dir=RULES, as_of=AS_OF)
    assert report.patients == 30
    assert_reported(report.read, where)
    for w in where:
        assert f"skipped: {w}: " in format_report(report)


def test_worklist_import_reports_it(population, tmp_path, capsys):
    data, where = population
    report = ReadReport()
    assert list(with_timelines([], [data], report=report)) == []
    assert_reported(report, where)
    findings = tmp_path / "findings.json"
    findings.write_text("[]")
    db = f"sqlite:///{tmp_path}/worklist.db"
    assert (
        main(["worklist", "--database-url", db, "import", str(findings), "--fhir", str(data)]) == 0
    )
    err = capsys.readouterr().err
    for w in where:
        assert f"skipped: {w}: " in err


def test_a_skipped_resource_fails_its_rule_test_case(tmp_path):
    ruleset = load_rules(RULES)
    (rule,) = [
        r for r in ruleset.rules if Path(r.path).name == "ed_discharge_return_admission_10d.yaml"
    ]
    fixture = tmp_path / "fixture"
    shutil.copytree(ROOT / "fhir_fixtures" / "ed1_return_day6", fixture)
    folder = tmp_path / "rule"
    folder.mkdir()
    moved = dataclasses.replace(rule, path=str(folder / Path(rule.path).name))
    test_file = folder / (rule.spec.tests or "ed_discharge_return_admission_10d.test.yaml")
    case = "cases:\n  - name: fixture\n    expect: flag\n    fixture: " + str(fixture) + "\n"
    test_file.write_text(case)
    one_rule = dataclasses.replace(ruleset, rules=(moved,))

    (result,), problems = run_rule_tests(one_rule, folder)
    assert problems == [] and result.passed is True  # the fixture as shipped flags

    where = add_bad_lines(fixture / "more.ndjson", "ed1-p1")
    (result,), _ = run_rule_tests(one_rule, folder)
    assert result.passed is False
    assert where[0] in result.message and "and 1 more" in result.message


def test_the_scan_command_prints_the_same_report(population, capsys):
    data, where = population
    code = main(["scan", str(data), "--rules", str(RULES), "--as-of", "2026-06-30", "--top", "1"])
    assert code == 0
    err = capsys.readouterr().err
    assert "resources read in" in err and "2 skipped" in err
    for w in where:
        assert f"skipped: {w}: " in err
