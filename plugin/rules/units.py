"""Numeric thresholds with UCUM units (``"> 10 mIU/L"``) and the conversions we trust.

Only conversions within one dimension are done (mass concentration, arbitrary-unit
concentration, temperature, ...). A value whose unit cannot be converted to the
threshold's unit does not match. A value with no unit is compared as written
(CAUTION: sources that omit units are assumed to use the threshold's unit).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "=": operator.eq,
}
_THRESHOLD = re.compile(r"^\s*(>=|<=|>|<|=)\s*(-?\d+(?:\.\d+)?)\s*(\S+)?\s*$")

# unit (lower case, as written in data) -> (dimension, factor to the dimension's base unit)
_UNITS: dict[str, tuple[str, float]] = {
    "g/l": ("mass", 1.0),
    "g/dl": ("mass", 10.0),
    "mg/dl": ("mass", 0.01),
    "mg/l": ("mass", 1e-3),
    "ug/l": ("mass", 1e-6),
    "ng/ml": ("mass", 1e-6),
    "ug/ml": ("mass", 1e-3),
    "ng/dl": ("mass", 1e-8),
    "pg/ml": ("mass", 1e-9),
    "miu/l": ("au", 1.0),
    "m[iu]/l": ("au", 1.0),
    "uiu/ml": ("au", 1.0),
    "u[iu]/ml": ("au", 1.0),
    "mu/l": ("au", 1.0),
    "uu/ml": ("au", 1.0),
    "iu/l": ("au", 1e3),
    "[iu]/l": ("au", 1e3),
    "fl": ("volume_cell", 1.0),
    "um3": ("volume_cell", 1.0),
    "/[hpf]": ("per_hpf", 1.0),
    "/hpf": ("per_hpf", 1.0),
    "{rbcs}/[hpf]": ("per_hpf", 1.0),
    "%": ("percent", 1.0),
    "mmol/l": ("molar", 1.0),
    "umol/l": ("molar", 1e-3),
    "/min": ("rate", 1.0),
    "{beats}/min": ("rate", 1.0),
    "{breaths}/min": ("rate", 1.0),
    "mm[hg]": ("pressure", 1.0),
    "mmhg": ("pressure", 1.0),
    "10*3/ul": ("count", 1.0),
    "10^3/ul": ("count", 1.0),
    "k/ul": ("count", 1.0),
    "10*9/l": ("count", 1.0),
}
_CELSIUS = {"cel", "°c", "c", "degc", "deg c"}
_FAHRENHEIT = {"[degf]", "°f", "f", "degf", "deg f"}


def to_unit(value: float, unit: str | None, target: str | None) -> float | None:
    """``value`` in ``unit`` expressed in ``target``; None when not convertible."""
    if target is None or unit is None:
        return value
    u, t = unit.strip().lower(), target.strip().lower()
    if u == t:
        return value
    if u in _CELSIUS | _FAHRENHEIT and t in _CELSIUS | _FAHRENHEIT:
        celsius = value if u in _CELSIUS else (value - 32.0) * 5.0 / 9.0
        return celsius if t in _CELSIUS else celsius * 9.0 / 5.0 + 32.0
    a, b = _UNITS.get(u), _UNITS.get(t)
    if a is None or b is None or a[0] != b[0]:
        return None
    return value * a[1] / b[1]


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
        if self.unit is None:
            return True
        u = self.unit.lower()
        return u in _UNITS or u in _CELSIUS or u in _FAHRENHEIT

    def test(self, value: float | None, unit: str | None) -> bool:
        if value is None:
            return False
        converted = to_unit(value, unit, self.unit)
        return converted is not None and _OPS[self.op](converted, self.number)

    def __str__(self) -> str:
        return f"{self.op} {self.number:g}{' ' + self.unit if self.unit else ''}"
