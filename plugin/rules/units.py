"""Numeric thresholds with UCUM units (``"> 10 mIU/L"``), converted through
:mod:`plugin.normalize.units` (ucumvert + pint; spellings from the ``units`` table).

A value whose unit cannot be converted to the threshold's unit does not match (and the read
report / ``dxsafety profile`` count such units). Mass ↔ substance conversions need a molar
mass from the ``molar_mass`` table (passed in by the selector). A value with no unit is
compared as written (CAUTION: sources that omit units are assumed to use the threshold's
unit). A value with a comparator (``<25``) is an interval and matches only when every value
it allows passes (:func:`plugin.normalize.results.compare`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from plugin.normalize.results import compare
from plugin.normalize.units import convert, is_known

__all__ = ["Threshold", "to_unit"]

_THRESHOLD = re.compile(r"^\s*(>=|<=|>|<|=)\s*(-?\d+(?:\.\d+)?)\s*(\S+)?\s*$")


def to_unit(
    value: float, unit: str | None, target: str | None, *, g_per_mol: float | None = None
) -> float | None:
    """``value`` in ``unit`` expressed in ``target``; None when not convertible."""
    return convert(value, unit, target, g_per_mol=g_per_mol)


@dataclass(frozen=True, slots=True)
class Threshold:
    op: str
    number: float
    unit: str | None

    @classmethod
    def parse(cls, text: str) -> Threshold:
        m = _THRESHOLD.match(text)
        if not m:
            raise ValueError(f"expected a threshold such as '> 10 mIU/L', got {text!r}")
        return cls(m.group(1), float(m.group(2)), m.group(3))

    def known_unit(self) -> bool:
        return self.unit is None or is_known(self.unit)

    def test(
        self,
        value: float | None,
        unit: str | None,
        comparator: str | None = None,
        *,
        g_per_mol: float | None = None,
    ) -> bool:
        if value is None:
            return False
        converted = to_unit(value, unit, self.unit, g_per_mol=g_per_mol)
        return converted is not None and compare(self.op, converted, comparator, self.number)

    def __str__(self) -> str:
        return f"{self.op} {self.number:g}{' ' + self.unit if self.unit else ''}"
