"""The rules API consumers call: open findings, the follow-up to order, the codes that close
a finding, whether an index is clinical. Answers use the engine's own semantics."""

from __future__ import annotations

from datetime import timedelta

import pytest

from plugin.rules import (
    advises_at_discharge,
    closing_codes,
    evaluate_rule,
    followup_order,
    has_clinical_index,
    load_rules,
    open_findings,
)
from plugin.timeline.model import Code, Setting

from .helpers import T0, enc, obs, one_rule, proc, timeline, write_rules

D = timedelta(days=1)

TSH = """  type: absence
  index: {kind: observation, codes: [loinc:3016-3], value: "> 10 mIU/L"}
  expect_any:
    - {kind: observation, codes: [loinc:3016-3], within: 30d}
    - {kind: procedure, codes: [valueset:visits]}
  within: 60d
"""
VISITS = """name: visits
version: "1"
title: Office visit (established patient)
source: test
codes:
  cpt: ["99213", "99214"]
  snomed: ["185349003"]
"""


@pytest.fixture
def tsh_rule(tmp_path):
    return one_rule(tmp_path, TSH, valuesets={"visits": VISITS})


def high_tsh():
    return obs(1, timedelta(0), "3016-3", 14.0, "uIU/mL")


def test_a_finding_with_no_follow_up_is_open(tsh_rule):
    now = T0 + 100 * D
    (f,) = open_findings([tsh_rule], timeline(high_tsh()), now=now, lookback=365 * D)
    assert f.index_ref == "Observation/o1"
    assert f == evaluate_rule(tsh_rule, timeline(high_tsh()), as_of=now)[0]


def test_a_late_follow_up_closes_it(tsh_rule):
    late_visit = proc(1, 80 * D, "99213")  # after the 60-day window
    tl = timeline(high_tsh(), late_visit)
    assert evaluate_rule(tsh_rule, tl, as_of=T0 + 100 * D)  # the finding stays (late)
    assert open_findings([tsh_rule], tl, now=T0 + 100 * D, lookback=365 * D) == []


def test_a_follow_up_late_for_its_own_window_closes_it(tsh_rule):
    # the repeat TSH counts within 30 d; on day 45 it is late, inside the rule's 60 d: the
    # engine finds it (late), and it is done, so no card asks for it again
    repeat = obs(2, 45 * D, "3016-3", 4.0, "uIU/mL")
    tl = timeline(high_tsh(), repeat)
    assert evaluate_rule(tsh_rule, tl, as_of=T0 + 100 * D)
    assert open_findings([tsh_rule], tl, now=T0 + 100 * D, lookback=365 * D) == []


def test_the_look_back_and_open_windows(tsh_rule):
    tl = timeline(high_tsh())
    assert open_findings([tsh_rule], tl, now=T0 + 100 * D, lookback=30 * D) == []  # day 60
    assert open_findings([tsh_rule], tl, now=T0 + 50 * D, lookback=365 * D) == []  # still open
    assert open_findings([tsh_rule], tl, now=T0 + 61 * D, lookback=30 * D)


def test_sequence_findings_are_not_open_follow_ups(tmp_path):
    rule = one_rule(
        tmp_path,
        """  type: sequence
  index: {kind: encounter, setting: [ED], diagnosis: [icd10:R42]}
  outcome: {kind: encounter, setting: [IP]}
  within: 30d
""",
    )
    tl = timeline(enc(1, timedelta(0), Setting.ED, dx=("R42",)), enc(2, 5 * D, Setting.IP))
    assert evaluate_rule(rule, tl, as_of=T0 + 100 * D)
    assert open_findings([rule], tl, now=T0 + 40 * D, lookback=365 * D) == []
    assert advises_at_discharge(rule)
    assert closing_codes(rule).systems() == set() and followup_order(rule) is None


def test_open_findings_sort_by_level_then_newest_window(tmp_path):
    body = TSH.replace("valueset:visits", "cpt:99213").replace(
        "    - {kind: observation, codes: [loinc:3016-3], within: 30d}\n", ""
    )  # the second TSH is not a repeat of the first here
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    low = load_rules(write_rules(tmp_path / "a", body)).rules[0]
    write_rules(tmp_path / "b", body)
    text = (tmp_path / "b" / "test_rule_file.yaml").read_text()
    (tmp_path / "b" / "test_rule_file.yaml").write_text(
        text.replace("level: high", "level: critical").replace("0f6e2a8e", "1f6e2a8e")
    )
    high = load_rules(tmp_path / "b").rules[0]
    first, second = high_tsh(), obs(2, 10 * D, "3016-3", 20.0, "uIU/mL")
    tl = timeline(first, second)
    found = open_findings([low, high], tl, now=T0 + 200 * D, lookback=365 * D)
    assert [(f.level, f.index_ref) for f in found] == [
        ("critical", "Observation/o2"), ("critical", "Observation/o1"),
        ("high", "Observation/o2"), ("high", "Observation/o1"),
    ]  # fmt: skip


def test_followup_order_prefers_snomed_and_uses_the_value_set_title(tsh_rule):
    follow = followup_order(tsh_rule)
    assert follow is not None
    assert follow.label == "Office visit"  # the value set's title, before " ("
    assert follow.coding == ({"system": "http://snomed.info/sct", "code": "185349003"},)


def test_followup_order_of_a_literal_code(tmp_path):
    rule = one_rule(tmp_path, TSH.replace("valueset:visits", "cpt:45378"))
    follow = followup_order(rule)
    assert follow is not None and follow.label == "CPT 45378"
    assert follow.coding == ({"system": "http://www.ama-assn.org/go/cpt", "code": "45378"},)


def test_closing_codes_expand_value_sets(tsh_rule):
    codes = closing_codes(tsh_rule)
    assert codes.any_of([Code("cpt", "99214")])
    assert codes.any_of([Code("loinc", "3016-3")])
    assert not codes.any_of([Code("cpt", "45378")])


def test_clinical_index(tmp_path):
    any_ed = one_rule(
        tmp_path,
        """  type: sequence
  index: {kind: encounter, setting: [ED]}
  outcome: {kind: death}
  within: 24h
""",
    )
    assert not has_clinical_index(any_ed) and not advises_at_discharge(any_ed)
