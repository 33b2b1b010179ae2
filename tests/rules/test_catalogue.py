"""The published e-trigger catalogue in rules/: coverage, metadata and its own test cases."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from pathlib import Path

import pytest
import yaml

from plugin.rules import Rule, load_rules
from plugin.rules import testing as rule_testing

RULES = Path(__file__).resolve().parents[2] / "rules"
RULESET = load_rules(RULES)
CATALOGUE_IDS = {  # etriggers.md section 1
    *(f"PC-{i}" for i in range(1, 7)),
    *(f"ED-{i}" for i in range(1, 5)),
    *(f"IP-{i}" for i in range(1, 4)),
    *(f"SP-{i}" for i in range(1, 4)),
    *(f"TR-{i}" for i in range(1, 9)),
    "CA-1",
    "CA-2",
    "LB-1",
    "FW-1",
    "FW-2",
}
REQUIRED = {
    "PC-3",
    "PC-4",
    "ED-1",
    "ED-2",
    "ED-4",
    "IP-1",
    "IP-2",
    "SP-1",
    "SP-2",
    "SP-3",
    "TR-1",
    "TR-3",
    "TR-4",
    "TR-5",
    "TR-6",
    "TR-7",
}
NO_CATALOGUE_ID = {"SPADE-SEPSIS"}  # SPADE pair without an id in etriggers.md


def test_at_least_15_rules_covering_the_required_triggers() -> None:
    assert len(RULESET) >= 15
    covered = {r.trigger for r in RULESET.rules}
    assert covered >= REQUIRED
    ed1 = [r for r in RULESET.rules if r.trigger == "ED-1"]
    assert sorted(r.within.total_seconds() / 3600 for r in ed1) == [72, 240]


@pytest.mark.parametrize("rule", RULESET.rules, ids=lambda r: Path(r.path).stem)
def test_rule_metadata(rule: Rule) -> None:
    assert rule.trigger in CATALOGUE_IDS | NO_CATALOGUE_ID, "a 'trigger:' key with the catalogue id"
    assert not any(t.startswith("trigger.") for t in rule.tags)
    assert re.fullmatch(r"[a-z0-9_]{10,90}\.yaml", Path(rule.path).name)
    assert uuid.UUID(rule.id).version == 4
    assert any(re.search(r"pubmed|doi\.org|\d{4};\d+", ref) for ref in rule.references)
    assert rule.spec.falsepositives
    pub = rule.spec.published
    assert pub is not None and pub.citation and pub.window
    if rule.status.value == "stable":
        assert pub.ppv is not None and pub.n is not None, "stable rules carry the published PPV"
    else:
        assert re.search(r"unverified|not expressible|approximat|gap", rule.description, re.I)


def test_ids_are_unique() -> None:
    counts = Counter(r.id for r in RULESET.rules)
    assert max(counts.values()) == 1


@pytest.mark.parametrize("rule", RULESET.rules, ids=lambda r: Path(r.path).stem)
def test_each_rule_has_two_flag_and_two_no_flag_cases(rule: Rule) -> None:
    cases = yaml.safe_load(rule_testing.test_file_for(rule).read_text())["cases"]
    kinds = Counter(c["expect"] for c in cases)
    assert kinds["flag"] >= 2 and kinds["no_flag"] >= 2


def test_rule_cases_all_pass() -> None:
    results, problems = rule_testing.run_tests_in(RULES)
    assert not problems, [str(p) for p in problems]
    assert len(results) >= 60
    failed = [f"{r.rule_title} :: {r.name}: {r.message}" for r in results if r.passed is False]
    assert not failed


def test_a_broken_rule_change_is_caught_by_its_cases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cases are not vacuous: widening the SP-1 window to 31 d fails the day-31 case."""
    monkeypatch.chdir(RULES.parent)  # fixture cases name folders from the repository root
    src = RULES / "core" / "spade"
    (tmp_path / "spade").mkdir()
    rule = (src / "benign_dizziness_headache_stroke_30d.yaml").read_text()
    (tmp_path / "spade" / "benign_dizziness_headache_stroke_30d.yaml").write_text(
        rule.replace("within: 30d", "within: 31d")
    )
    (tmp_path / "spade" / "benign_dizziness_headache_stroke_30d.test.yaml").write_text(
        (src / "benign_dizziness_headache_stroke_30d.test.yaml").read_text()
    )
    (tmp_path / "valuesets").symlink_to(RULES / "valuesets")
    results, _ = rule_testing.run_tests_in(tmp_path)
    assert [r.name for r in results if r.passed is False] == [
        "window edge - stroke admission on day 31 is outside"
    ]


@pytest.mark.parametrize(
    "rule", [r for r in RULESET.rules if r.exclude or r.require], ids=lambda r: Path(r.path).stem
)
def test_exclusions_and_requirements_are_exercised(rule: Rule) -> None:
    """A rule's exclude/require conditions are each load-bearing in some no_flag case: that
    case flags once the conditions are dropped (so the case is not passing by accident)."""
    from dataclasses import replace

    from plugin.rules.schema import TestFile

    spec = TestFile.model_validate(yaml.safe_load(rule_testing.test_file_for(rule).read_text()))
    no_flag = [c for c in spec.cases if c.expect == "no_flag"]
    for attr, relaxed in (
        ("exclude", replace(rule, exclude=())),
        ("require", replace(rule, require=())),
    ):
        if not getattr(rule, attr):
            continue
        hits = [c.name for c in no_flag if rule_testing.run_case(relaxed, c, RULES)]
        assert hits, f"no no_flag case depends on the rule's {attr} conditions"
