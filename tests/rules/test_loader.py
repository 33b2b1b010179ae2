"""Loading rules: every problem reported with file:line:col, golden messages checked by hand."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from plugin.cli import main
from plugin.errors import ExitCode, FatalError, RuleValidationError
from plugin.rules import load_rules
from plugin.rules.spans import loads_yaml
from plugin.rules.validators import check_code, loinc_check_digit, verhoeff_ok

BAD = Path(__file__).parent / "bad"


@pytest.mark.parametrize("case", ["three_errors", "syntax"])
def test_bad_rules_golden(case, monkeypatch):
    monkeypatch.chdir(Path(__file__).parents[2])
    with pytest.raises(RuleValidationError) as info:
        load_rules(os.path.relpath(BAD / case))
    expected = (BAD / f"{case}.expected.txt").read_text().rstrip("\n")
    assert str(info.value) == expected


def test_misspelt_key_wrong_type_duplicate_id_all_reported():
    with pytest.raises(RuleValidationError) as info:
        load_rules(BAD / "three_errors")
    codes = {(Path(p.location.path).name, p.location.line, p.code) for p in info.value.problems}
    assert ("dizziness_then_stroke.yaml", 12, "R101") in codes  # withn
    assert ("headache_then_stroke.yaml", 12, "R103") in codes  # wrong type for within
    assert ("headache_then_stroke.yaml", 2, "R105") in codes  # duplicate id
    withn = next(p for p in info.value.problems if p.code == "R101")
    assert "did you mean 'within'" in withn.message
    assert withn.location.col == 3


def test_cli_lint_exit_code(capsys):
    with pytest.raises(FatalError) as info:
        main(["rules", "lint", str(BAD / "three_errors")])
    assert info.value.exit_code == ExitCode.RULES_INVALID
    err = capsys.readouterr().err
    assert "dizziness_then_stroke.yaml:12:3: error[R101] unknown key 'withn'" in err


def test_duplicate_keys_and_nulls_have_their_own_lines():
    _, _, problems = loads_yaml("a: 1\nb:\n  c: 1\n  c: 2\nd:\n", "x.yaml")
    assert [(p.code, p.location.line, p.location.col) for p in problems] == [
        ("R003", 4, 3),
        ("R004", 5, 1),
    ]


def test_loinc_check_digits():
    # published codes with known check digits
    for code in ("2335-8", "29771-3", "718-7", "3016-3", "1834-1", "14563-1", "57803-9"):
        number, check = code.split("-")
        assert loinc_check_digit(number) == int(check), code
    assert check_code("loinc", "2335-9") is not None
    assert check_code("loinc", "2335") is not None  # no check digit at all


def test_code_shapes():
    assert check_code("icd10", "I63.9") is None
    assert check_code("icd10", "I639") is None
    assert check_code("icd10", "I60-I63") is None
    assert check_code("icd10", "63.9") is not None
    assert check_code("cpt", "45378-45392") is None
    assert check_code("cpt", "4537") is not None
    assert check_code("snomed", "230690007") is None  # stroke
    assert verhoeff_ok("22298006")  # myocardial infarction
    assert not verhoeff_ok("230690008")
