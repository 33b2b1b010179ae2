"""A missing birth date or sex: ``require`` is not satisfied (no finding), ``exclude`` is
not applied (the finding stays, a human looks) and the finding says which fact was unknown
(``extra["unknown"]`` and its summary). Documented in rules/README.md."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from plugin.rules import evaluate_rule
from plugin.timeline.model import Setting

from .helpers import T0, enc, one_rule, timeline

D = timedelta(days=1)
BASE = """  type: sequence
  index: {kind: encounter, setting: [ED], diagnosis: [icd10:R42]}
  outcome: {kind: encounter, setting: [IP]}
  within: 30d
"""
CONDITIONS = {
    "age": "    - age: {lt: 18}\n",
    "sex": "    - sex: [male]\n",
    "age-in-any": "    - any:\n        - age: {ge: 90}\n        - sex: [male]\n",
}
MISSING = {"age": {"birth": None}, "sex": {"sex": None}}


def pair(**patient):
    ed = enc(1, timedelta(0), Setting.ED, dx=("R42",))
    ip = enc(2, 5 * D, Setting.IP)
    return timeline(ed, ip, **patient)


def rule(tmp_path, stage: str, cond: str):
    return one_rule(tmp_path, BASE + f"  {stage}:\n" + CONDITIONS[cond])


@pytest.mark.parametrize("fact", ["age", "sex"])
def test_unknown_does_not_satisfy_a_requirement(tmp_path, fact):
    r = rule(tmp_path, "require", fact)
    known = {"age": {"birth": date(2015, 1, 1)}, "sex": {"sex": "male"}}[fact]
    assert evaluate_rule(r, pair(**known))  # the requirement holds when the fact is known
    assert evaluate_rule(r, pair(**MISSING[fact])) == []


@pytest.mark.parametrize("fact", ["age", "sex"])
def test_unknown_does_not_exclude_and_is_recorded(tmp_path, fact):
    r = rule(tmp_path, "exclude", fact)
    excluded = {"age": {"birth": date(2015, 1, 1)}, "sex": {"sex": "male"}}[fact]
    assert evaluate_rule(r, pair(**excluded)) == []  # known: the exclusion applies
    (kept,) = evaluate_rule(r, pair())  # known and not excluded: nothing to record
    assert "unknown" not in kept.extra
    (f,) = evaluate_rule(r, pair(**MISSING[fact]))
    assert f.extra["unknown"] == fact
    assert f"({fact} unknown: an exclusion on it was not applied)" in f.summary


def test_unknown_inside_any_is_recorded(tmp_path):
    r = rule(tmp_path, "exclude", "age-in-any")
    (f,) = evaluate_rule(r, pair(birth=None, sex=None))
    assert f.extra["unknown"] == "age, sex"
    (f,) = evaluate_rule(r, pair(birth=None))  # female: the sex branch decides "no" ...
    assert f.extra["unknown"] == "age"  # ... the age branch could not decide
    assert evaluate_rule(r, pair(birth=None, sex="male")) == []  # one branch holds: excluded


def test_a_decided_exclusion_records_nothing(tmp_path):
    r = rule(tmp_path, "exclude", "age")
    (f,) = evaluate_rule(r, pair(birth=T0.date() - 40 * 365 * D))
    assert set(f.extra) == {"trigger", "type", "rule_version", "catalogue_version", "index_local"}
