"""SPADE on the population engine's flat tables (``plugin.population.flatten``: ``events``,
``codes``, ``patients`` in DuckDB).

The cohort steps run where the data is: one query returns only the encounters that can take
part in a pair — a diagnosis (``codes`` role ``dx``/``pr``) that matches some cohort's code set
by prefix, exact code or range, plus its site (the encounter's first ``transfer`` label) and the
patient's birth date and sex — ordered by patient and time. Those rows become the same
:class:`~plugin.measure.visits.Visit` rows the per-patient engine yields, and the same
cohort and estimator code runs on them, so both engines give the same report (the
differential test in ``tests/measure/test_sql.py``). The code filter in SQL is a superset
(prefix/range on the normalised code); Python re-checks every match exactly.

Moving the rest to SQL is mechanical when a warehouse needs it: index visits are that query
filtered by the symptom set and ``released``; the first outcome is ``MIN(o.t)`` over a
self-join ``o.pid = i.pid AND o.t > i.t AND o.t <= i.t + horizon``; the estimators need only
``GROUP BY`` counts of (stratum, outcome day).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from plugin.measure.cohorts import collect
from plugin.measure.pairs import Cohort, Pair
from plugin.measure.report import Report
from plugin.measure.run import report_of
from plugin.measure.visits import Visit
from plugin.timeline.model import Code, Setting

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _cohort_filter(cohorts: Sequence[Cohort]) -> str:
    """A SQL predicate on ``c.system``/``c.code`` true for every code any cohort matches."""
    terms: list[str] = []
    for c in cohorts:
        for system, codes in c.codes.exact.items():
            for code in codes:
                terms.append(f"(c.system = {_lit(system)} AND c.code = {_lit(code)})")
        for system, prefixes in c.codes.prefixes.items():
            for p in prefixes:
                terms.append(f"(c.system = {_lit(system)} AND starts_with(c.code, {_lit(p)}))")
        for system, ranges in c.codes.ranges.items():
            for lo, hi in ranges:
                terms.append(f"(c.system = {_lit(system)} AND c.code >= {_lit(lo)} "
                             f"AND c.code <= {_lit(hi + '~')})")  # fmt: skip
    return " OR ".join(terms) or "FALSE"


def _query(pairs: Sequence[Pair]) -> str:
    cohorts = [c for p in pairs for c in (p.symptom, p.disease, p.comparator) if c is not None]
    # codes are validated as [A-Za-z0-9.-] when pairs load, and quoted by _lit
    return f"""
    WITH wanted AS (
        SELECT DISTINCT c.eid FROM codes c
        WHERE c.role IN ('dx', 'pr') AND ({_cohort_filter(cohorts)})
    ), dx AS (
        SELECT c.eid,
               list(c.system || ':' || c.code) FILTER (WHERE c.role = 'dx') AS dx,
               list(c.system || ':' || c.code) FILTER (WHERE c.role = 'pr') AS pr
        FROM codes c JOIN wanted w USING (eid) WHERE c.role IN ('dx', 'pr') GROUP BY c.eid
    ), site AS (
        SELECT source, arg_min(label, seq) AS site FROM events
        WHERE kind = 'transfer' GROUP BY source
    )
    SELECT e.pid, e.source, e.t, e.setting, e.released, e.planned, dx.dx, dx.pr, s.site,
           p.by, p.bmd, p.sex
    FROM events e JOIN dx ON dx.eid = e.eid
    LEFT JOIN site s ON s.source = e.source
    LEFT JOIN patients p ON p.pid = e.pid
    WHERE e.kind = 'encounter'
    ORDER BY e.pid, e.t, e.source
    """  # noqa: S608


def _codes(items: list[str] | None) -> tuple[Code, ...]:
    out = []
    for item in items or ():
        system, _, code = item.partition(":")
        out.append(Code(system, code))
    return tuple(out)


def _birth(by: int | None, bmd: int | None) -> date | None:
    if by is None or bmd is None:
        return None
    try:
        return date(int(by), int(bmd) // 100, int(bmd) % 100)
    except ValueError:
        return None


def _visits(con: Any, pairs: Sequence[Pair]) -> Iterator[list[Visit]]:
    cur = con.execute(_query(pairs))
    current: list[Visit] = []
    pid = None
    settings = {s.value for s in Setting}
    while True:
        rows = cur.fetchmany(50_000)
        if not rows:
            break
        for (p, source, t, setting, released, planned, dx, pr, site, by, bmd, sex) in rows:
            if p != pid and current:
                yield current
                current = []
            pid = p
            current.append(Visit(
                patient_id=p, ref=source, start=_EPOCH + timedelta(microseconds=int(t)),
                setting=Setting(setting) if setting in settings else Setting.OTHER,
                released=bool(released), diagnoses=_codes(dx), principal=_codes(pr),
                site=site or "unknown", birth_date=_birth(by, bmd), sex=sex,
                planned=bool(planned)))  # fmt: skip
    if current:
        yield current


def measure_duckdb(
    con: Any,
    pairs: Sequence[Pair],
    *,
    source: str,
    by: Sequence[str] = ("quarter", "site", "age", "sex"),
    start: datetime | None = None,
    end: datetime | None = None,
) -> Report:
    """SPADE over flattened tables in ``con`` (a DuckDB connection after ``flatten``)."""
    got = collect(pairs, _visits(con, pairs), start=start, end=end)
    lo, hi, n = con.execute(
        "SELECT min(t), max(t), (SELECT count(*) FROM patients) FROM events "
        "WHERE kind = 'encounter'").fetchone()  # fmt: skip
    # the data's span and population come from every encounter, not only the pairs' rows
    got.first = _EPOCH + timedelta(microseconds=int(lo)) if lo is not None else None
    got.last = _EPOCH + timedelta(microseconds=int(hi)) if hi is not None else None
    got.patients = int(n)
    return report_of(pairs, got, source=source, by=by, start=start, end=end)
