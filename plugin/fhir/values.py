"""Typed access to FHIR JSON values, and FHIR dates → UTC datetimes.

Every accessor checks the JSON type of what it reads and raises :class:`Malformed` when a field
is present with the wrong type (a string where an object is due, a number given as a string, an
unparseable date). This *is* the fast validation: it checks exactly what the timeline reads.

CAUTION — times. FHIR ``dateTime`` values are normalised once, here:

* a value with an offset (``2025-03-05T10:00:00+04:00``) is converted to UTC (06:00Z);
* a value with a time but no offset is taken as UTC (FHIR says it *should* have one);
* a date-only value (``2025-03-05``) becomes midnight UTC of that day, ``date_only=True``;
* a partial date (``2025-03`` / ``2025``) becomes the first day of the month / year at midnight
  UTC, ``date_only=True``.

A date-only event is therefore placed at 00:00Z of its day: it sorts before timed events of the
same day and window arithmetic treats it as that instant (documented for rule authors in
``rules/README.md``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from plugin.errors import Malformed as Malformed  # what every accessor here raises
from plugin.timeline.codes import normalise
from plugin.timeline.model import Code

JSON = dict[str, Any]


def obj(d: JSON, key: str) -> JSON | None:
    v = d.get(key)
    if v is None or isinstance(v, dict):
        return v
    raise Malformed(f"{key}: expected an object, got {type(v).__name__}")


def lst(d: JSON, key: str) -> list[Any]:
    v = d.get(key)
    if v is None:
        return []
    if isinstance(v, list):
        return v
    raise Malformed(f"{key}: expected a list, got {type(v).__name__}")


def objs(d: JSON, key: str) -> list[JSON]:
    items = lst(d, key)
    for item in items:
        if not isinstance(item, dict):
            raise Malformed(f"{key}[]: expected objects, got {type(item).__name__}")
    return items


def text(d: JSON, key: str) -> str | None:
    v = d.get(key)
    if v is None or isinstance(v, str):
        return v
    raise Malformed(f"{key}: expected a string, got {type(v).__name__}")


def number(d: JSON, key: str) -> float | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise Malformed(f"{key}: expected a number, got {type(v).__name__}")
    return float(v)


def reference(d: JSON, key: str) -> str | None:
    """``d[key].reference`` (a Reference), or None."""
    ref = obj(d, key)
    return text(ref, "reference") if ref is not None else None


def parse_datetime(value: str) -> tuple[datetime, bool]:
    """A FHIR date / dateTime / instant → (aware UTC datetime, date_only)."""
    try:
        n = len(value)
        if n == 4:
            return datetime(int(value), 1, 1, tzinfo=UTC), True
        if n == 7 and value[4] == "-":
            return datetime(int(value[:4]), int(value[5:7]), 1, tzinfo=UTC), True
        if n == 10:
            y, m, d = value.split("-")
            return datetime(int(y), int(m), int(d), tzinfo=UTC), True
        if n < 16 or value[10] != "T":
            raise ValueError("not a FHIR dateTime")
        dt = datetime.fromisoformat(value)
    except ValueError as exc:
        raise Malformed(f"unparseable date {value!r}") from exc
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC), False
    return dt.astimezone(UTC), False


def when(d: JSON, key: str) -> tuple[datetime, bool] | None:
    v = text(d, key)
    return parse_datetime(v) if v else None


def period(d: JSON, key: str) -> tuple[tuple[datetime, bool] | None, tuple[datetime, bool] | None]:
    p = obj(d, key)
    if p is None:
        return None, None
    return when(p, "start"), when(p, "end")


def codings(cc: JSON | None) -> list[tuple[Code, str | None]]:
    """The normalised codings of a CodeableConcept, with their display text."""
    if cc is None:
        return []
    out = []
    for coding in objs(cc, "coding"):
        code = text(coding, "code")
        if code:
            out.append((normalise(text(coding, "system"), code), text(coding, "display")))
    return out


def first_code(cc: JSON | None) -> str | None:
    """The raw ``code`` of the first coding (for local vocabularies: class, disposition...)."""
    for coding in objs(cc, "coding") if cc is not None else []:
        code = text(coding, "code")
        if code:
            return code
    return None


def codeable_text(cc: JSON | None) -> str | None:
    return text(cc, "text") if cc is not None else None
