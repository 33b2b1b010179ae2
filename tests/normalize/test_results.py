"""Result semantics: comparators, reference ranges, qualitative answers, provenance."""

from __future__ import annotations

import pytest

from plugin.normalize.results import compare, judge, parse_value_string


@pytest.mark.parametrize(
    ("op", "value", "comparator", "number", "want"),
    [
        (">", 25, None, 20, True),
        (">", 25, "<", 20, False),  # AFP "<25" is not "> 20"
        ("<", 25, "<", 30, True),
        ("<", 25, "<", 25, True),
        ("<", 25, "<=", 25, False),
        ("<=", 25, "<=", 25, True),
        ("<=", 25, "<", 24.5, False),
        (">", 400, ">", 20, True),
        (">", 20, ">", 20, True),
        (">", 20, ">=", 20, False),
        (">=", 20, ">=", 20, True),
        ("<", 400, ">", 1000, False),
        ("=", 5, "<", 5, False),
        (">", 25, "ad", 20, False),
    ],
)
def test_compare_reads_a_comparator_as_an_interval(op, value, comparator, number, want):
    assert compare(op, value, comparator, number) is want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("15.2 mIU/L", (15.2, "mIU/L", None)),
        ("<25", (25.0, None, "<")),
        (">= 400 ng/mL", (400.0, "ng/mL", ">=")),
        ("10-20", None),
        ("1:160", None),
        ("see comment", None),
        ("15 cats", None),
    ],
)
def test_numbers_only_from_unambiguous_strings(text, want):
    assert parse_value_string(text) == want


def test_interpretation_wins_and_says_so():
    r = judge(interpretations=("L",), value=500, high=100)
    assert (r.abnormal, r.abnormal_from) == ("low", "interpretation")


def test_reference_range_without_interpretation():
    assert judge(value=150, high=100).abnormal == "high"
    assert judge(value=2, low=3.5, high=5).abnormal == "low"
    r = judge(value=4, low=3.5, high=5)
    assert (r.abnormal, r.abnormal_from) == ("normal", "reference_range")
    assert judge(value=4).abnormal is None  # no range, no interpretation: unknown


def test_comparator_against_the_range():
    r = judge(value=5, comparator="<", low=10)
    assert (r.abnormal, r.abnormal_from) == ("low", "comparator")
    assert judge(value=25, comparator="<", high=20).abnormal is None  # undecided


def test_qualitative_coded_and_string_with_provenance():
    r = judge(coded=(("loinc", "LA6576-8"),))
    assert (r.positive, r.positive_from, r.abnormal) == (True, "coded", "abnormal")
    r = judge(strings=("Not detected",))
    assert (r.positive, r.positive_from, r.abnormal) == (False, "string", "normal")
    r = judge(interpretations=("POS",), strings=("negative",))
    assert (r.positive, r.positive_from) == (True, "interpretation")
    assert judge(strings=("Indeterminate",)).positive is None
