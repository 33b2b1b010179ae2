"""Typed access to FHIR JSON values, and FHIR dates → UTC datetimes.

Every accessor checks the JSON type of what it reads and raises :class:`Malformed` when a field
is present with the wrong type (a string where an object is due, a number given as a string, an
unparseable date). This *is* the fast validation: it checks exactly what the timeline reads.

CAUTION — times. FHIR ``dateTime`` values are normalised once, here:

* a value with an offset (``2025-03-05T10:00:00+04:00``) is converted to UTC (06:00Z);
* a value with a time but no offset is read in the zone given to :func:`assume_timezone`
  (``dxsafety scan --assume-tz Europe/Paris``); without one it is taken as UTC and a warning is
  reported (FHIR says it *should* have an offset; a silent guess can flip a 72 h window);
* a date-only value (``2025-03-05``) becomes midnight UTC of that day, ``date_only=True``;
* a partial date (``2025-03`` / ``2025``) becomes the first day of the month / year at midnight
  UTC, ``date_only=True``.

Placeholder and out-of-range dates — any year outside ``PLAUSIBLE_YEARS`` (1800-2998), such
as the ``9999-12-31`` "no end" of EHR exports or ``0001-01-01`` — raise
:class:`~plugin.errors.OutOfRangeDate` from :func:`parse_datetime` (before any offset arithmetic,
which would overflow); :func:`when` and :func:`period` read them as unknown (an open end) and
report a warning. A ``period`` whose end is before its start keeps its start and loses its end
(reported), so no event gets a negative duration.

Warnings go to the collector opened by :func:`collecting` (one per resource being converted,
see :func:`plugin.fhir.parse.timeline_from_resources`); outside one they are dropped.

A date-only event is therefore placed at 00:00Z of its day: it sorts before timed events of the
same day and window arithmetic treats it as that instant (documented for rule authors in
``rules/README.md``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, tzinfo
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from plugin.errors import Malformed as Malformed  # what every accessor here raises
from plugin.errors import OutOfRangeDate
from plugin.timeline.codes import normalise
from plugin.timeline.model import Code

JSON = dict[str, Any]


class Note(NamedTuple):
    """A warning about one value that was read anyway (``reason``: counted; ``value``: the raw
    text, so the caller can tell which resource it came from)."""

    reason: str
    detail: str
    value: str


# MIMIC shifts its dates into 2100-2210, so the future is open wide; 2999-12-31 and
# 9999-12-31 are the "no end" placeholders of common EHR exports.
PLAUSIBLE_YEARS = range(1800, 2999)
NO_OFFSET = "date-time without UTC offset"  # the warning's reason (counted in ReadReport)
# The zone for date-times without an offset (None: UTC, with a warning), and the open
# collector of warnings. Context variables, so that a scan sets them once around the whole
# pipeline (plugin/cli/scan.py) without threading them through every call.
_ASSUMED_TZ: ContextVar[tzinfo | None] = ContextVar("assumed_tz", default=None)
_NOTES: ContextVar[list[Note] | None] = ContextVar("date_notes", default=None)
# UTC instant -> the source's own UTC offset in minutes, for the values read in the block
_OFFSETS: ContextVar[dict[datetime, int] | None] = ContextVar("date_offsets", default=None)


def zone(name: str) -> tzinfo:
    """An IANA zone by name (``Europe/Paris``, ``UTC``); raises ``ValueError`` if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as Europe/Paris)") from exc


@contextmanager
def assume_timezone(tz: tzinfo | None) -> Iterator[None]:
    """Read date-times without an offset in ``tz`` (None: as UTC, each one warned)."""
    token = _ASSUMED_TZ.set(tz)
    try:
        yield
    finally:
        _ASSUMED_TZ.reset(token)


def assumed_timezone() -> tzinfo | None:
    return _ASSUMED_TZ.get()


@contextmanager
def collecting() -> Iterator[list[Note]]:
    """Collect the warnings of the dates read inside the block."""
    notes: list[Note] = []
    token = _NOTES.set(notes)
    try:
        yield notes
    finally:
        _NOTES.reset(token)


@contextmanager
def local_offsets() -> Iterator[dict[datetime, int]]:
    """Collect, for each date-time read inside the block, its UTC instant → the offset it was
    written with (minutes; the ``--assume-tz`` zone's offset when it had none). Date-only
    values and offset-less values read as UTC have no local offset and are left out."""
    offsets: dict[datetime, int] = {}
    token = _OFFSETS.set(offsets)
    try:
        yield offsets
    finally:
        _OFFSETS.reset(token)


def _local(dt: datetime) -> datetime:
    """``dt`` (aware) in UTC, its offset recorded for :func:`local_offsets`."""
    utc = dt.astimezone(UTC)
    offsets = _OFFSETS.get()
    delta = dt.utcoffset()
    if offsets is not None and delta is not None:
        offsets.setdefault(utc, int(delta.total_seconds()) // 60)
    return utc


def warn(reason: str, detail: str, value: str) -> None:
    notes = _NOTES.get()
    if notes is not None:
        notes.append(Note(reason, detail, value))


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
    """A FHIR date / dateTime / instant → (aware UTC datetime, date_only). Raises
    :class:`Malformed` when unparseable, :class:`OutOfRangeDate` for a placeholder year."""
    try:
        n = len(value)
        parts: tuple[int, int, int] | None
        if n == 4:
            parts = (int(value), 1, 1)
        elif n == 7 and value[4] == "-":
            parts = (int(value[:4]), int(value[5:7]), 1)
        elif n == 10:
            y, m, d = value.split("-")
            parts = (int(y), int(m), int(d))
        else:
            parts = None
        if parts is not None:
            _check_year(parts[0], value)
            return datetime(*parts, tzinfo=UTC), True
        if n < 16 or value[10] != "T":
            raise ValueError("not a FHIR dateTime")
        dt = datetime.fromisoformat(value)
    except ValueError as exc:
        raise Malformed(f"unparseable date {value!r}") from exc
    _check_year(dt.year, value)  # before the offset arithmetic, which overflows at 1 and 9999
    if dt.tzinfo is None:
        tz = _ASSUMED_TZ.get()
        if tz is None:
            warn(NO_OFFSET, f"{value!r} read as UTC (set --assume-tz)", value)
            return dt.replace(tzinfo=UTC), False
        return _local(dt.replace(tzinfo=tz)), False
    return _local(dt), False


def _check_year(year: int, value: str) -> None:
    if year not in PLAUSIBLE_YEARS:
        raise OutOfRangeDate(f"placeholder date {value!r}")


def when(d: JSON, key: str) -> tuple[datetime, bool] | None:
    """``d[key]`` as a date, or None when absent or a placeholder (warned)."""
    v = text(d, key)
    if not v:
        return None
    try:
        return parse_datetime(v)
    except OutOfRangeDate:
        warn("placeholder date", f"{key} {v!r} read as unknown", v)
        return None


def period(d: JSON, key: str) -> tuple[tuple[datetime, bool] | None, tuple[datetime, bool] | None]:
    """``(start, end)`` of the Period ``d[key]``. An end before the start is dropped (warned):
    the event keeps its start and has no duration."""
    p = obj(d, key)
    if p is None:
        return None, None
    start, end = when(p, "start"), when(p, "end")
    if start is not None and end is not None and end[0] < start[0]:
        same_day = end[1] and end[0].date() == start[0].date()  # date-only end on the start day
        if not same_day:
            detail = f"{key}.end {p['end']!r} < start {p['start']!r}; no end"
            warn("end before start", detail, p["end"])
            return start, None
    return start, end


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
