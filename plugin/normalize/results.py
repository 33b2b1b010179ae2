"""Result semantics: is an observation abnormal, is it positive, and what says so.

Pure functions over values already read from FHIR (no FHIR JSON here): the converters in
:mod:`plugin.fhir.convert` call :func:`judge`, the SQL engine applies the same tables in the
same order. Provenance names the first source that decided, in this order:

``abnormal`` (``high`` | ``low`` | ``abnormal`` | ``normal`` | None = unknown):

1. ``interpretation`` — the first interpretation code the ``interpretations`` table flags;
2. ``reference_range`` — the value against the resource's own ``referenceRange`` low/high
   (``comparator`` when the value has one and the range still decides: ``<5`` under a low
   of 10 is low; ``<25`` against a high of 20 decides nothing);
3. a positive qualitative answer is ``abnormal`` (its provenance: ``coded`` / ``string``).

``positive`` (True | False | None = unknown): ``interpretation`` codes (POS, NEG, DET, ND),
then a coded answer (``coded``: SNOMED CT / LOINC answer codes in ``qualitative``), then a
string answer (``string``). ``indeterminate`` answers leave it None.

:func:`parse_value_string` reads a number from ``valueString`` only when unambiguous: one
number, an optional comparator, an optional unit the UCUM reader accepts (``15.2 mIU/L``,
``<25 ng/mL``); ranges, titres and text with words are left alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from plugin.normalize.lookups import interpretation, qualitative
from plugin.normalize.units import to_ucum

__all__ = ["COMPARATORS", "Result", "compare", "judge", "parse_value_string"]

COMPARATORS = frozenset({"<", "<=", ">", ">="})
_NUMBER = re.compile(r"^\s*(<=|>=|<|>)?\s*([-+]?\d+(?:\.\d+)?)\s*(\S+)?\s*$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    abnormal: str | None = None
    abnormal_from: str | None = None
    positive: bool | None = None
    positive_from: str | None = None


def parse_value_string(text: str) -> tuple[float, str | None, str | None] | None:
    """(value, unit, comparator) from a string such as ``"15.2 mIU/L"`` or ``"<25"``."""
    m = _NUMBER.match(text)
    if m is None:
        return None
    unit = m.group(3)
    if unit is not None and to_ucum(unit) is None:
        return None
    return float(m.group(2)), unit, m.group(1)


def compare(op: str, value: float, comparator: str | None, number: float) -> bool:
    """Does every value the result allows satisfy ``op number``? A value with a comparator
    is an interval (``<25`` is anything below 25): ``<25`` is never ``> 20``, and is
    ``< 30``. ``=`` never holds for a value with a comparator; an unknown comparator
    (``ad``) decides nothing."""
    if comparator is None:
        return {
            ">": value > number,
            ">=": value >= number,
            "<": value < number,
            "<=": value <= number,
            "=": value == number,
        }[op]
    if comparator not in COMPARATORS or op == "=":
        return False
    below = comparator in ("<", "<=")
    if below != (op in ("<", "<=")):
        return False  # unbounded on the side the test needs
    strict_value = comparator in ("<", ">")
    strict_test = op in ("<", ">")
    if below:
        return value < number if (strict_test and not strict_value) else value <= number
    return value > number if (strict_test and not strict_value) else value >= number


def _by_range(
    value: float | None, comparator: str | None, low: float | None, high: float | None
) -> tuple[str | None, str | None]:
    if value is None or (low is None and high is None):
        return None, None
    why = "comparator" if comparator else "reference_range"
    if high is not None and compare(">", value, comparator, high):
        return "high", why
    if low is not None and compare("<", value, comparator, low):
        return "low", why
    inside_low = low is None or compare(">=", value, comparator, low)
    inside_high = high is None or compare("<=", value, comparator, high)
    if inside_low and inside_high:
        return "normal", why
    return None, None


def judge(
    *,
    interpretations: tuple[str, ...] = (),
    coded: tuple[tuple[str, str], ...] = (),
    strings: tuple[str, ...] = (),
    value: float | None = None,
    comparator: str | None = None,
    low: float | None = None,
    high: float | None = None,
) -> Result:
    """Abnormal and positive, with provenance (see the module docstring). ``coded``:
    (short system, code) pairs of ``valueCodeableConcept``; ``strings``: its text and
    ``valueString``."""
    abnormal = abnormal_from = None
    positive: bool | None = None
    positive_from = None
    for code in interpretations:
        flag, pos = interpretation(code)
        if abnormal is None and flag is not None:
            abnormal, abnormal_from = flag, "interpretation"
        if positive is None and pos is not None:
            positive, positive_from = pos, "interpretation"
    if positive is None:
        for system, code in coded:
            meaning = qualitative(system, code)
            if meaning is not None:
                positive, positive_from = _meaning(meaning), "coded"
                break
    if positive is None and positive_from is None:
        for text in strings:
            meaning = qualitative("text", text)
            if meaning is not None:
                positive, positive_from = _meaning(meaning), "string"
                break
    if abnormal is None:
        abnormal, abnormal_from = _by_range(value, comparator, low, high)
    if abnormal is None and positive is not None:
        abnormal, abnormal_from = ("abnormal" if positive else "normal"), positive_from
    return Result(
        abnormal=abnormal,
        abnormal_from=abnormal_from,
        positive=positive,
        positive_from=positive_from,
    )


def _meaning(meaning: str) -> bool | None:
    return {"positive": True, "negative": False}.get(meaning)
