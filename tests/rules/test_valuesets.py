"""Value sets under rules/valuesets/: well-formed codes, verified LOINC check digits.

The LOINC check digit is the mod-10 (Luhn) algorithm LOINC publishes: starting from the
rightmost digit of the number before the dash, double every other digit, add the digits of
the products and the undoubled digits, and take the distance to the next multiple of 10.
It is written out here on purpose (independent of plugin.rules.validators) so the two
implementations check each other.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

RULES = Path(__file__).resolve().parents[2] / "rules"
VALUESETS = sorted((RULES / "valuesets").glob("*.yaml"))


def loinc_check_digit(number: str) -> int:
    """Mod-10 check digit of a LOINC number (the part before the dash)."""
    if not number.isdigit():
        raise ValueError(f"not a LOINC number: {number!r}")
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char)
        if position % 2 == 0:  # rightmost digit and every second one to its left
            digit *= 2
            digit = digit // 10 + digit % 10
        total += digit
    return (10 - total % 10) % 10


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def _codes(system: str) -> list[tuple[str, str]]:
    out = []
    for path in VALUESETS:
        for code in _load(path).get("codes", {}).get(system, []):
            out.append((path.stem, str(code)))
    return out


@pytest.mark.parametrize(
    ("code", "ok"),
    [
        ("718-7", True),  # haemoglobin, as written by Synthea
        ("4548-4", True),  # HbA1c
        ("2335-8", True),
        ("57905-2", True),
        ("59841-7", True),  # corrected from etriggers.md's 59841-4
        ("59841-4", False),
        ("38526-7", False),  # etriggers.md's dagger codes, wrong check digits
        ("38527-5", False),
        ("50196-0", False),
        ("3016-3", True),
        ("3016-4", False),
    ],
)
def test_check_digit_algorithm_on_known_codes(code: str, ok: bool) -> None:
    number, check = code.split("-")
    assert (loinc_check_digit(number) == int(check)) is ok


def test_check_digit_matches_the_lint_validator() -> None:
    from plugin.rules.validators import loinc_check_digit as lint_check_digit

    for n in range(1, 100_000, 7):
        assert loinc_check_digit(str(n)) == lint_check_digit(str(n)), n


@pytest.mark.parametrize(("valueset", "code"), _codes("loinc"))
def test_every_loinc_has_a_valid_check_digit(valueset: str, code: str) -> None:
    number, dash, check = code.partition("-")
    assert dash and check.isdigit(), f"{valueset}: {code} has no check digit"
    assert loinc_check_digit(number) == int(check), f"{valueset}: {code}"


def test_dagger_loincs_from_etriggers_are_corrected() -> None:
    fit = {str(c) for c in _load(RULES / "valuesets" / "fobt_fit.yaml")["codes"]["loinc"]}
    assert {"59841-7", "38526-0", "38527-8", "50196-5"} <= fit
    assert not {"59841-4", "38526-7", "38527-5", "50196-0"} & fit


SHAPES = {
    "icd10": re.compile(r"^[A-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?$"),
    "icd9": re.compile(r"^(V\d{2}|E\d{3}|\d{3})(\.\d{1,2})?$"),
    "snomed": re.compile(r"^[1-9]\d{5,17}$"),
    "cpt": re.compile(r"^\d{4}[0-9FTU]$"),
    "hcpcs": re.compile(r"^[A-V]\d{4}$"),
    "rxnorm": re.compile(r"^\d{1,9}$"),
    "icd10pcs": re.compile(r"^[0-9A-HJ-NP-Z]{7}$"),
}


@pytest.mark.parametrize("path", VALUESETS, ids=lambda p: p.stem)
def test_valueset_is_named_versioned_and_sourced(path: Path) -> None:
    data = _load(path)
    assert data["name"] == path.stem
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(data["version"]))
    assert len(str(data["source"])) > 20
    assert data.get("codes") or data.get("include")
    for system, codes in data.get("codes", {}).items():
        if system not in SHAPES:
            continue
        for code in codes:
            for part in str(code).split("-") if system != "snomed" else [str(code)]:
                assert SHAPES[system].match(part), f"{path.stem}: {system}:{code}"
            if "-" in str(code) and system in {"cpt", "hcpcs"}:
                lo, hi = str(code).split("-")
                assert lo < hi, f"{path.stem}: empty range {code}"


def test_rules_covering_snomed_data_also_cover_icd() -> None:
    """Symptom and disease sets used by the SPADE rules work on SNOMED (Synthea) and ICD data."""
    for name in ("dizziness", "headache_benign", "stroke", "sepsis", "abdominal_pain",
                 "fluid_electrolyte_disorder", "altered_mental_status", "stroke_risk_factors"):
        codes = _load(RULES / "valuesets" / f"{name}.yaml")["codes"]
        assert {"icd10", "icd9", "snomed"} <= set(codes), name


def test_value_sets_load_without_problems() -> None:
    from plugin.rules.loader import load_valuesets

    compiled, _specs, problems = load_valuesets(RULES / "valuesets")
    assert not problems, [str(p) for p in problems]
    assert set(compiled) == {p.stem for p in VALUESETS}
