"""Logic types come from one registry: schema, loader, engine and the rules API dispatch
through it, an unknown type is a load error, and a new type is one module + register()."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from plugin.errors import RuleValidationError
from plugin.rules import (
    evaluate,
    followup_order,
    has_clinical_index,
    index_matches,
    load_rules,
    logic,
    open_findings,
)
from plugin.timeline.model import Setting

from .helpers import T0, enc, timeline, write_rules
from .single_logic import SINGLE

D = timedelta(days=1)

SINGLE_RULE = """  type: single
  index: {kind: encounter, setting: [ED], diagnosis: [icd10:R42]}
  exclude:
    - age: {lt: 18}
"""


@pytest.fixture
def single() -> Iterator[None]:
    logic.register(SINGLE)
    yield
    logic.unregister(SINGLE.name)


def test_builtin_types_are_registered() -> None:
    assert logic.names() == ["absence", "sequence"]
    assert {t.name for t in logic.types() if t.closes_with_followup} == {"absence"}
    assert {t.name for t in logic.types() if t.advises_at_discharge} == {"sequence"}


def test_an_unknown_type_is_a_load_error_with_location_and_suggestion(tmp_path) -> None:
    root = write_rules(tmp_path, SINGLE_RULE.replace("single", "sequnce"))
    with pytest.raises(RuleValidationError) as err:
        load_rules(root)
    (problem,) = err.value.problems
    assert problem.code == "R106"
    assert (problem.location.line, problem.location.col) == (9, 9)  # the value of logic.type
    assert "unknown logic type 'sequnce'" in problem.message
    assert "did you mean 'sequence'?" in problem.message


def test_a_missing_type_names_the_registered_ones(tmp_path) -> None:
    root = write_rules(tmp_path, "  index: {kind: encounter}\n  within: 3d\n")
    with pytest.raises(RuleValidationError) as err:
        load_rules(root)
    assert [p.code for p in err.value.problems] == ["R102"]
    assert "'type'" in err.value.problems[0].message
    assert "absence, sequence" in err.value.problems[0].message


def test_a_registered_type_needs_a_matching_literal() -> None:
    class Wrong(type(SINGLE)):  # type: ignore[misc]
        name = "other"

    with pytest.raises(ValueError, match="Literal"):
        logic.register(Wrong())
    with pytest.raises(ValueError, match="already registered"):
        logic.register(logic.get("absence"))


def test_a_new_type_is_unknown_until_registered(tmp_path) -> None:
    with pytest.raises(RuleValidationError) as err:
        load_rules(write_rules(tmp_path, SINGLE_RULE))
    assert [p.code for p in err.value.problems] == ["R106"]


def test_a_new_type_loads_evaluates_and_answers_the_api(tmp_path, single) -> None:
    ruleset = load_rules(write_rules(tmp_path, SINGLE_RULE))
    (rule,) = ruleset.rules
    assert rule.type == "single" and rule.logic_type is SINGLE
    assert rule.within == timedelta(0)  # what `rules list` shows as the window
    ed = enc(1, timedelta(0), Setting.ED, dx=("R42",))
    other = enc(2, 3 * D, Setting.ED, dx=("J06",))
    tl = timeline(ed, other)
    (finding,) = evaluate(ruleset, tl, as_of=T0 + 10 * D)
    assert finding.index_ref == "Encounter/e1" and finding.outcome_ref is None
    assert finding.summary.endswith("(single)")
    assert finding.extra["type"] == "single"
    assert finding.window_end == ed.stop  # anchor "end" + a zero window
    # the shared conditions apply to it like to any type
    assert evaluate(ruleset, timeline(ed, other, birth=(T0 - 5 * 365 * D).date())) == []
    # the consumers' questions have answers without knowing the type
    assert index_matches(rule, tl, ed) == ["Encounter/e1"]
    assert has_clinical_index(rule)
    assert followup_order(rule) is None
    assert open_findings(ruleset, tl, now=T0 + 10 * D, lookback=365 * D) == []


def test_a_new_type_appears_in_rules_list(tmp_path, single, capsys) -> None:
    from plugin.cli import main

    root = write_rules(tmp_path, SINGLE_RULE)
    assert main(["rules", "list", str(root)]) == 0
    out = capsys.readouterr().out
    assert "Test rule" in out and "0f6e2a8e-9a55-4d2b-8a8e-5f2c1c7d0a11" in out
