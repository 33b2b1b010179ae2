"""The flat visit table SPADE reads: one row per encounter, the shape a population engine
holds (plugin/population's ``encounters`` table).

The measure never looks at a :class:`Timeline` beyond :func:`visits_of`; a SQL engine gives
the same rows with one ``SELECT`` over its encounter and diagnosis tables, and the cohort
steps of :mod:`plugin.measure.spade` become joins on ``patient_id`` with a
``start - index_start BETWEEN`` window (see ``docs`` in the module docstring there).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from plugin.timeline.model import Code, Kind, Setting, Timeline


@dataclass(frozen=True, slots=True, kw_only=True)
class Visit:
    patient_id: str
    ref: str  # "Encounter/<id>"
    start: datetime  # UTC
    setting: Setting
    released: bool
    diagnoses: tuple[Code, ...]
    principal: tuple[Code, ...]  # empty when the record does not say which is principal
    site: str  # Encounter location (first stay's name), "unknown" when absent
    birth_date: date | None
    sex: str | None
    planned: bool = False


def visits_of(timeline: Timeline) -> list[Visit]:
    """The encounters of one patient, in time order."""
    p = timeline.patient
    out = []
    for e in timeline.events:
        if e.kind is not Kind.ENCOUNTER or e.detail is None:
            continue
        d = e.detail
        site = d.locations[0].name if d.locations else "unknown"
        out.append(Visit(patient_id=p.id, ref=e.source, start=e.t, setting=d.setting,
                         released=d.released, diagnoses=d.diagnoses, principal=d.principal,
                         site=site or "unknown", birth_date=p.birth_date, sex=p.sex,
                         planned=d.planned))  # fmt: skip
    return out


def age_at(v: Visit) -> int | None:
    if v.birth_date is None:
        return None
    d = v.start.date()
    b = v.birth_date
    return d.year - b.year - ((d.month, d.day) < (b.month, b.day))
