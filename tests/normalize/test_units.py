"""UCUM conversion through ucumvert + pint, with the spelling table in front and the guard
that keeps arbitrary units (``[IU]``, ``[HPF]``, ``%``) from converting into counts."""

from __future__ import annotations

import pytest

from plugin.normalize.units import convert, is_known, to_ucum
from plugin.rules.units import Threshold


@pytest.mark.parametrize(
    ("value", "unit", "target", "want"),
    [
        (15.2, "m[IU]/L", "mIU/L", 15.2),
        (15.2, "mIU/L", "m[IU]/L", 15.2),
        (12, "uIU/mL", "m[IU]/L", 12),  # µIU/mL == mIU/L
        (12, "µIU/mL", "mIU/L", 12),
        (2, "[IU]/L", "m[IU]/L", 2000),
        (60, "/hpf", "/[HPF]", 60),
        (60, "{RBCs}/[HPF]", "/[HPF]", 60),
        (5.1, "K/uL", "10*3/uL", 5.1),
        (5.1, "10*3/uL", "10*9/L", 5.1),
        (0.03, "mg/L", "ng/mL", 30),
        (11, "g/dL", "g/L", 110),
        (38.5, "Cel", "[degF]", 101.3),
        (100.4, "°F", "Cel", 38),
        (120, "mmHg", "mm[Hg]", 120),
        (88, "fl", "fL", 88),
        (3, "{score}", "1", 3),
    ],
)
def test_conversions(value, unit, target, want):
    assert convert(value, unit, target) == pytest.approx(want)


def test_mass_to_substance_needs_a_molar_mass():
    assert convert(180.156, "mg/dL", "mmol/L") is None
    assert convert(180.156, "mg/dL", "mmol/L", g_per_mol=180.156) == pytest.approx(10)
    assert convert(10, "mmol/L", "mg/dL", g_per_mol=180.156) == pytest.approx(180.156)


@pytest.mark.parametrize(
    ("unit", "target"),
    [
        ("m[IU]/L", "10*3/uL"),  # pint alone converts these: both are "per volume"
        ("%", "/[HPF]"),  # pint alone: both dimensionless
        ("/[HPF]", "/[LPF]"),
        ("mg/dL", "mm[Hg]"),
        ("furlongs", "mg/dL"),
        ("mg/dL", "nonsense"),
    ],
)
def test_failures_do_not_convert(unit, target):
    assert convert(1.0, unit, target) is None


def test_reading_units():
    assert to_ucum("mIU/L") == "m[IU]/L"
    assert to_ucum("m[IU]/L") == "m[IU]/L"
    assert to_ucum("mU/L") == "m[IU]/L"  # table before the parser (mU = milli enzyme unit)
    assert to_ucum("MG/DL") == "mg/dL"  # upper-cased spelling, after the parser refused it
    assert not is_known("not-a-unit") and not is_known(None)


def test_conversion_noise_does_not_flip_an_edge():
    assert Threshold.parse(">= 100.4 [degF]").test(38, "Cel")


def test_threshold_honours_units_and_comparators():
    tsh = Threshold.parse("> 10 mIU/L")
    assert tsh.test(15.2, "m[IU]/L")
    assert tsh.test(12, "uIU/mL")
    assert not tsh.test(15, "10*3/uL")  # unconvertible: never matched
    afp = Threshold.parse("> 20 ng/mL")
    assert not afp.test(25, "ng/mL", "<")
    assert afp.test(400, "ng/mL", ">")
    assert not afp.test(20, "ng/mL", ">=")  # 20 itself is allowed
    assert afp.test(20, "ng/mL", ">")
    glucose = Threshold.parse(">= 11.1 mmol/L")
    assert not glucose.test(250, "mg/dL")
    assert glucose.test(250, "mg/dL", g_per_mol=180.156)
    assert Threshold.parse("> 10 mIU/L").known_unit()
    assert not Threshold.parse("> 10 bogus").known_unit()
