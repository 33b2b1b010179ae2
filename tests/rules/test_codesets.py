from __future__ import annotations

import pytest

from plugin.rules.codesets import CodeSet
from plugin.rules.units import Threshold, to_unit
from plugin.timeline.model import Code


def test_icd_prefix_range_and_dots():
    cs = CodeSet()
    for entry in ("I60-I63", "G45", "H81.0-H81.3", "R51.9"):
        cs.add("icd10", entry)
    assert Code("icd10", "I639") in cs
    assert Code("icd10", "I60") in cs
    assert Code("icd10", "I64") not in cs
    assert Code("icd10", "G459") in cs
    assert Code("icd10", "H8110") in cs
    assert Code("icd10", "H814") not in cs  # central vertigo is outside the range
    assert Code("icd10", "R519") in cs
    assert Code("icd10", "R51") not in cs  # a prefix matches children, not parents
    assert Code("icd9", "I639") not in cs  # systems are kept apart


def test_cpt_ranges_and_exact_codes():
    cs = CodeSet()
    cs.add("cpt", "45378-45392")
    cs.add("loinc", "29771-3")
    assert Code("cpt", "45380") in cs
    assert Code("cpt", "45393") not in cs
    assert Code("cpt", "453800") not in cs
    assert Code("loinc", "29771-3") in cs
    assert Code("loinc", "29771") not in cs


@pytest.mark.parametrize(
    ("value", "unit", "target", "expected"),
    [
        (10.5, "g/dL", "g/L", 105.0),
        (100, "ng/mL", "ug/L", 100.0),
        (12, "uIU/mL", "mIU/L", 12.0),
        (98.6, "[degF]", "Cel", 37.0),
        (38, "Cel", "Cel", 38.0),
    ],
)
def test_unit_conversion(value, unit, target, expected):
    assert to_unit(value, unit, target) == pytest.approx(expected)


def test_thresholds():
    th = Threshold.parse("> 10 mIU/L")
    assert th.test(10.5, "mIU/L")
    assert not th.test(10, "mIU/L")
    assert th.test(11, "uIU/mL")
    assert not th.test(11, "mmol/L")  # not convertible: no match
    assert th.test(11, None)  # no unit in the data: compared as written (documented)
    assert not th.test(None, "mIU/L")
    with pytest.raises(ValueError, match="threshold"):
        Threshold.parse("about ten")
