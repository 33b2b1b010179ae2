"""Units through UCUM: parse with ``ucumvert`` (a UCUM grammar on top of ``pint``), convert
with ``pint``.

Why these libraries: ``ucumvert`` parses the full case-sensitive UCUM grammar (``m[IU]/L``,
``/[HPF]``, ``10*3/uL``, annotations ``{RBCs}``) into ``pint`` units, and ``pint`` is the
maintained, widely used quantity library that does the arithmetic (prefixes, offsets for
``Cel``/``[degF]``). A hand table cannot follow every prefix × unit combination a site writes.

Order of reading a unit as written in the data: the ``units`` table (common non-UCUM
spellings, case-sensitive), then the UCUM parser as written, then the ``units`` table
upper-cased. A unit none of them reads is *not convertible*: :func:`convert` returns None and
the value never matches a threshold (the caller reports it; see :mod:`.coverage`).

Guard: pint treats UCUM's arbitrary units (``[IU]``, ``[HPF]``, ``[LPF]``) and ``%`` as
dimensionless, so ``m[IU]/L`` would "convert" to ``10*3/uL``. Two units convert only when they
carry the same arbitrary units (:func:`_arbitrary`), as UCUM itself requires.
Mass ↔ substance (``mg/dL`` ↔ ``mmol/L``) converts only with a molar mass (``molar_mass``).
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from typing import Any

from plugin.normalize.lookups import ucum_spelling

__all__ = ["convert", "convertible", "is_known", "is_ucum", "to_ucum"]

_ANNOTATION = re.compile(r"\{[^{}]*\}")
_ARBITRARY = ("international_unit", "high_power_field", "low_power_field", "percent")


@cache
def _registry() -> Any:
    # Built on first use (about a second): importing plugin.normalize stays cheap.
    from ucumvert import PintUcumRegistry

    return PintUcumRegistry()


@lru_cache(maxsize=2048)
def _parse(ucum: str) -> Any | None:
    from ucumvert import InvalidUcumError

    if _ANNOTATION.fullmatch(ucum):
        ucum = "1"  # a bare annotation ({score}) is unity in UCUM; the parser refuses it
    try:
        return _registry().from_ucum(ucum).units
    except (InvalidUcumError, ValueError, KeyError, AttributeError, TypeError):
        return None
    except Exception:  # pint's own errors (UndefinedUnitError, DimensionalityError...)
        return None


@lru_cache(maxsize=2048)
def to_ucum(unit: str | None) -> str | None:
    """The canonical UCUM spelling of ``unit`` as written, or None when unreadable."""
    if unit is None or not unit.strip():
        return None
    u = unit.strip()
    for candidate in (ucum_spelling(u, exact=True), u, ucum_spelling(u, exact=False)):
        if candidate is not None and _parse(candidate) is not None:
            return candidate
    return None


def is_ucum(ucum: str) -> bool:
    """Does the UCUM reader accept ``ucum`` exactly as written (no spelling table)?"""
    return _parse(ucum) is not None


def is_known(unit: str | None) -> bool:
    return to_ucum(unit) is not None


def _arbitrary(units: Any) -> tuple[tuple[str, int], ...]:
    out: dict[str, int] = {}
    for name, power in dict(units._units).items():
        for kind in _ARBITRARY:
            if kind in name:
                out[kind] = out.get(kind, 0) + int(power)
    return tuple(sorted((k, p) for k, p in out.items() if p))


@lru_cache(maxsize=4096)
def _linear(unit: str, target: str, g_per_mol: float | None) -> tuple[float, float] | None:
    """(a, b) with ``target_value = a * value + b``, or None when not convertible."""
    src, dst = to_ucum(unit), to_ucum(target)
    if src is None or dst is None:
        return None
    a_units, b_units = _parse(src), _parse(dst)
    if a_units is None or b_units is None or _arbitrary(a_units) != _arbitrary(b_units):
        return None
    reg = _registry()

    def at(x: float) -> float | None:
        q = reg.Quantity(x, a_units)
        try:
            if q.dimensionality == b_units.dimensionality:
                return float(q.to(b_units).magnitude)
            if g_per_mol:
                mm = reg.Quantity(g_per_mol, "g/mol")
                for candidate in (q / mm, q * mm):
                    if candidate.dimensionality == b_units.dimensionality:
                        return float(candidate.to(b_units).magnitude)
        except Exception:  # pint DimensionalityError / OffsetUnitCalculusError
            return None
        return None

    zero, one = at(0.0), at(1.0)
    if zero is None or one is None:
        return None
    return one - zero, zero


def convert(
    value: float, unit: str | None, target: str | None, *, g_per_mol: float | None = None
) -> float | None:
    """``value`` in ``unit`` expressed in ``target``; None when not convertible.

    No target, or no unit: the value as is (CAUTION, kept from the hand table this replaces:
    a value written without a unit is taken to be in the threshold's unit; :mod:`.coverage`
    counts such values so a site sees how many there are)."""
    if target is None or unit is None or not unit.strip():
        return value
    if unit.strip() == target.strip():
        return value
    found = _linear(unit.strip(), target.strip(), g_per_mol)
    # 12 significant digits: conversion noise (98.59999999 °F) must not flip a ">=" test
    return None if found is None else float(f"{found[0] * value + found[1]:.12g}")


def convertible(unit: str | None, target: str, *, g_per_mol: float | None = None) -> bool:
    return convert(1.0, unit, target, g_per_mol=g_per_mol) is not None
