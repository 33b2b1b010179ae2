"""Formula-safe spreadsheet cells (issue 15, item 9).

Spreadsheet programs evaluate a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and,
in some, a leading tab or carriage return) as a formula, so a note or a rule title such as
``=cmd|' /C calc'!A0`` exported to CSV becomes a live command when the file is opened
(OWASP "CSV injection"). Every text cell of an export goes through :func:`safe_cell`, which
prefixes such a value with an apostrophe; numbers written by the export itself are passed as
numbers and stay numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    """``value`` as CSV cell text that no spreadsheet treats as a formula.

    ``None`` is the empty cell; ``int``/``float``/``bool`` are written as numbers (a negative
    number is data, not a formula, and stays readable as one); any other value is turned into
    text and prefixed with ``'`` when it starts with a formula character.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    text = str(value)
    if text.startswith(FORMULA_START):
        return "'" + text
    return text


def safe_row(row: Mapping[str, Any]) -> dict[str, str]:
    """Every cell of a ``csv.DictWriter`` row through :func:`safe_cell`."""
    return {key: safe_cell(value) for key, value in row.items()}
