"""Missing data is not absence of care (issue 11 item 5): an absence rule whose follow-ups the
source cannot hold is not evaluated; a partial gap marks the findings; a source that holds the
kind is never suppressed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from plugin.rules import data_gaps, evaluate, load_rules
from plugin.scan import kinds_present, scan_population
from plugin.timeline.model import Kind
from plugin.timeline.spec import timeline_from_spec

ROOT = Path(__file__).parents[2]
MIMIC = Path("/work/shared/data/mimic-iv-demo-fhir")
AS_OF = datetime(2030, 1, 1, tzinfo=UTC)
EVERYTHING = frozenset(Kind)


@pytest.fixture(scope="module")
def rules():
    return load_rules(ROOT / "rules")


def tr(rules, trigger):
    return rules.find(trigger)[0]


def fit_rule(rules):
    return next(r for r in rules.rules if "fobt_fit" in r.path)


def colonoscopy_miss(extra=()):
    """A positive FIT and no colonoscopy in 60 days (TR-1)."""
    events = [
        {"t": "0d", "kind": "observation", "code": "loinc:29771-3", "interpretation": ["POS"]},
        *extra,
    ]
    return timeline_from_spec({"patient": {"birth_date": "1960-01-01", "sex": "male"},
                               "events": events})  # fmt: skip


def test_a_source_with_every_kind_has_no_gap(rules):
    assert data_gaps(rules, EVERYTHING) == {}


def test_no_kind_of_followup_present_means_not_evaluated(rules):
    tsh = tr(rules, "TR-7")
    gaps = data_gaps([tsh], {Kind.ENCOUNTER, Kind.CONDITION})
    gap = gaps[tsh.id]
    assert not gap.evaluated
    assert "not evaluated" in gap.reason and "Observation" in gap.reason


def test_a_partial_gap_keeps_and_marks_findings(rules):
    fit = fit_rule(rules)
    present = EVERYTHING - {Kind.PROCEDURE}
    gaps = data_gaps([fit], present)
    assert gaps[fit.id].evaluated and gaps[fit.id].missing == (Kind.PROCEDURE,)
    found = evaluate([fit], colonoscopy_miss(), as_of=AS_OF, gaps=gaps)
    assert len(found) == 1
    assert "Procedure" in found[0].extra["data_gap"]


def test_a_source_that_holds_procedures_is_never_suppressed(rules):
    """The miss the rule looks for: procedures exist (a knee arthroscopy), no colonoscopy."""
    fit = fit_rule(rules)
    tl = colonoscopy_miss([{"t": "10d", "kind": "procedure", "code": "cpt:29881"}])
    gaps = data_gaps([fit], kinds_present({"Observation": 1, "Procedure": 1, "Encounter": 1}))
    found = evaluate([fit], tl, as_of=AS_OF, gaps=gaps)
    assert len(found) == 1 and "data_gap" not in found[0].extra


def test_not_evaluated_rule_gives_nothing_that_it_would_otherwise_give(rules):
    fit = fit_rule(rules)
    assert evaluate([fit], colonoscopy_miss(), as_of=AS_OF)  # fires without the gap
    gaps = data_gaps([fit], {Kind.OBSERVATION})
    assert not gaps[fit.id].evaluated
    assert evaluate([fit], colonoscopy_miss(), as_of=AS_OF, gaps=gaps) == []


def test_kinds_present_comes_from_the_resource_types_read():
    assert kinds_present({"Procedure": 3, "DiagnosticReport": 0, "Patient": 1}) == {
        Kind.PROCEDURE,
        Kind.DEATH,
    }


@pytest.mark.skipif(not MIMIC.exists(), reason="shared MIMIC demo not mounted")
def test_mimic_tr3_findings_are_marked_and_the_scan_says_why(rules):
    """The MIMIC demo holds no Procedure, DiagnosticReport or ServiceRequest: its TR-3 findings
    ("no follow-up" guaranteed by missing data) carry the reason; TR-7 is not evaluated."""
    result = scan_population([MIMIC], rules, as_of=datetime(2200, 1, 1, tzinfo=UTC))
    tr3 = [f for f in result.findings if f.extra.get("trigger") == "TR-3"]
    assert tr3
    assert all("DiagnosticReport" in f.extra["data_gap"] for f in tr3)
    assert not result.gaps[tr(rules, "TR-7").id].evaluated
    lines = result.gap_lines()
    assert lines[0].startswith("TR-7 not evaluated")
    assert any(line.startswith("TR-3 data gap") for line in lines)


def test_scan_command_says_which_rules_were_not_evaluated(tmp_path, capsys):
    from plugin.cli import main

    out = tmp_path / "f.json"
    fixture = ROOT / "fhir_fixtures" / "tr1_fit_no_colonoscopy"  # no Procedure at all
    assert main(["scan", str(fixture), "--as-of", "2030-01-01", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "TR-1 data gap: the source holds no Procedure records" in err
    assert "TR-7 data gap: the source holds no MedicationRequest" in err
    (finding,) = [f for f in json.loads(out.read_text()) if f["extra"]["trigger"] == "TR-1"]
    assert "Procedure" in finding["extra"]["data_gap"]
