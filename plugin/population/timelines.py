"""Python timelines → the flat tables (for rule test cases and the differential test).

Rule test cases are inline events, not FHIR; to run them through the SQL engines their
timelines (built by :func:`plugin.timeline.spec.timeline_from_spec`, with the same
derivations as FHIR) are written into ``events``/``codes``/``patients`` with the columns of
:data:`plugin.population.flatten.EVENT_COLUMNS`. This is a test and tooling path: the
population path never holds a resource as a Python object.
"""

# ruff: noqa: S608 - this module builds SQL; every literal goes through lit()/_q()

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from plugin.population.compile import epoch_us
from plugin.population.flatten import EVENT_COLUMNS, _empty_tables
from plugin.text import affirmed_concepts
from plugin.timeline.model import Kind, Timeline


def _us(moment: datetime | None) -> int | None:
    return None if moment is None else epoch_us(moment.astimezone(UTC))


def load_timelines(con: Any, timelines: Iterable[Timeline]) -> None:
    """Replace the flat tables of ``con`` with these timelines."""
    _empty_tables(con)
    events: list[tuple[Any, ...]] = []
    codes: list[tuple[Any, ...]] = []
    patients: list[tuple[Any, ...]] = []
    texts: list[tuple[Any, ...]] = []
    eid = 0
    for tl in timelines:
        p = tl.patient
        bd = p.birth_date
        patients.append((p.id, bd.year if bd else None, bd.month * 100 + bd.day if bd else None,
                         p.sex, _us(p.deceased)))  # fmt: skip
        for seq, e in enumerate(tl.events, start=1):
            eid += 1
            d = e.detail
            t = e.t.astimezone(UTC)
            row = {
                "pid": p.id, "eid": eid, "seq": seq, "kind": e.kind.value, "t": _us(e.t),
                "te": _us(e.end), "source": e.source, "system": e.system, "code": e.code,
                "enc": e.encounter, "status": e.status, "value": e.value, "unit": e.unit,
                "comparator": e.comparator, "positive": e.positive, "abnormal": e.abnormal,
                "off": e.offset_min,
                "setting": d.setting.value if d else None,
                "disposition": d.disposition if d else None,
                "admit_source": d.admit_source if d else None,
                "planned": d.planned if d else None, "released": d.released if d else None,
                "icu": bool(d and (d.setting.value == "ICU" or any(s.icu for s in d.locations))),
                "has_pr": bool(d.principal) if d else None, "label": e.text,
                "ty": t.year, "tmd": t.month * 100 + t.day,
            }  # fmt: skip
            events.append(tuple(row[c] for c in EVENT_COLUMNS))
            codes += [(eid, "own", c.system, c.code) for c in e.codes]
            codes += [(eid, "interp", "interp", i) for i in e.interpretation]
            if e.kind is Kind.REPORT and e.narrative:
                texts += [(eid, c) for c in sorted(affirmed_concepts(e.narrative))]
            if d is not None and e.kind is Kind.ENCOUNTER:
                codes += [(eid, "dx", c.system, c.code) for c in d.diagnoses]
                codes += [(eid, "pr", c.system, c.code) for c in d.principal]
    marks = ", ".join("?" for _ in EVENT_COLUMNS)
    if events:
        con.executemany(f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({marks})", events)
    if codes:
        con.executemany("INSERT INTO codes VALUES (?, ?, ?, ?)", codes)
    if patients:
        con.executemany("INSERT INTO patients VALUES (?, ?, ?, ?, ?)", patients)
    if texts:
        con.executemany("INSERT INTO text_concepts VALUES (?, ?)", texts)
