"""Inline test events derive result semantics as the FHIR converters do (issue 11)."""

from __future__ import annotations

import pytest

from plugin.errors import TimelineSpecError
from plugin.timeline.spec import timeline_from_spec


def one(**event):
    (e,) = timeline_from_spec({"events": [{"t": "0d", "kind": "observation", **event}]}).events
    return e


def test_value_with_comparator():
    e = one(code="loinc:1834-1", value="<25 ng/mL")
    assert (e.value, e.unit, e.comparator) == (25.0, "ng/mL", "<")


def test_coded_and_string_answers():
    e = one(code="loinc:57905-2", answer="snomed:10828004")
    assert (e.positive, e.positive_from, e.interpretation) == (True, "coded", ("POS",))
    e = one(code="loinc:57905-2", answer="neg")
    assert (e.positive, e.positive_from, e.interpretation) == (False, "string", ("NEG",))


def test_reference_range_gives_abnormal():
    e = one(code="loinc:3016-3", value=15.2, unit="mIU/L", ref_high=4.5)
    assert (e.abnormal, e.abnormal_from) == ("high", "reference_range")


def test_semantics_are_derived_never_written():
    with pytest.raises(TimelineSpecError, match="'positive' is derived"):
        one(code="loinc:57905-2", positive=True)
