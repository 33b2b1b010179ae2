"""Run SPADE over a FHIR source on the one population pipeline (``iter_timelines``), or over
visit rows a population engine already holds (:func:`measure_visits`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from plugin.fhir.read import ReadReport
from plugin.measure.cohorts import Collected, collect
from plugin.measure.pairs import Pair
from plugin.measure.report import Report, case_link_key, observed_keys
from plugin.measure.spade import look_back, look_forward
from plugin.measure.visits import Visit, visits_of


def measure_visits(
    pairs: Sequence[Pair],
    patients: Iterable[Sequence[Visit]],
    *,
    source: str,
    by: Sequence[str] = ("quarter", "site", "age", "sex"),
    start: datetime | None = None,
    end: datetime | None = None,
) -> Report:
    got = collect(pairs, patients, start=start, end=end)
    return report_of(pairs, got, source=source, by=by, start=start, end=end)


def report_of(
    pairs: Sequence[Pair],
    got: Collected,
    *,
    source: str,
    by: Sequence[str],
    start: datetime | None,
    end: datetime | None,
) -> Report:
    """Look-forward per pair and look-back over the collected visits, whichever engine
    collected them (per-patient here, DuckDB in :mod:`plugin.measure.sql`)."""
    data_end = min(end, got.last) if end is not None and got.last is not None else got.last
    results = [look_forward(p, got, by=by, data_end=data_end) for p in pairs]
    symptoms = list(dict.fromkeys([p.symptom.name for p in pairs] +
                                  [p.comparator.name for p in pairs if p.comparator]))  # fmt: skip
    return Report(source=source, generated=datetime.now(UTC), patients=got.patients,
                  span=(start or got.first, data_end), results=results,
                  lookback=look_back(got, symptoms),
                  principal_unknown=got.principal_unknown)  # fmt: skip


def measure_source(
    sources: Sequence[str | Path],
    pairs: Sequence[Pair],
    *,
    report: ReadReport,
    by: Sequence[str] = ("quarter", "site", "age", "sex"),
    start: datetime | None = None,
    end: datetime | None = None,
) -> Report:
    """SPADE over FHIR files, one timeline per patient (``plugin.fhir.stage.iter_timelines``)."""
    from plugin.fhir.stage import iter_timelines

    timelines = iter_timelines(list(sources), report=report)
    return measure_visits(pairs, (visits_of(t) for t in timelines),
                          source=", ".join(str(s) for s in sources), by=by, start=start,
                          end=end)  # fmt: skip


def worklist_links(rep: Report, engine: sa.Engine, base_url: str) -> dict[str, str]:
    """Worklist case URLs for the visits counted as observed: the findings stored for the
    same patient and index visit (any rule), the highest-scored first."""
    from plugin.worklist import tables as t

    wanted = observed_keys(rep.results)
    if not wanted:
        return {}
    f = t.findings
    links: dict[str, str] = {}
    patients = sorted({p for p, _ in wanted})
    with engine.connect() as conn:
        for i in range(0, len(patients), 500):
            rows = conn.execute(sa.select(f.c.key, f.c.patient_id, f.c.index_ref, f.c.score)
                                .where(f.c.patient_id.in_(patients[i:i + 500]))
                                .order_by(f.c.score.desc().nulls_last()))  # fmt: skip
            for row in rows:
                k = case_link_key(row.patient_id, row.index_ref)
                if (row.patient_id, row.index_ref) in wanted and k not in links:
                    links[k] = f"{base_url.rstrip('/')}/worklist/cases/{row.key}"
    return links


def summary(rep: Report) -> list[dict[str, object]]:
    """Per pair, the figures the dashboard shows (counts and rates only, no patient data)."""
    out: list[dict[str, object]] = []
    for r in rep.results:
        lo, hi = r.total.ci
        bench = next((b for b in r.benchmarks if b.kind == "excess_per_10k"), None)
        out.append({"id": r.pair.id, "title": r.pair.title, "n": r.total.n,
                    "observed": r.total.observed, "expected": round(r.total.expected, 2),
                    "excess_per_10k": round(r.total.excess_per_10k, 2),
                    "ci95": [round(lo, 2), round(hi, 2)],
                    "benchmark": None if bench is None else {"value": bench.value,
                                                             "label": bench.label}})  # fmt: skip
    return out


def save_summary(engine: sa.Engine, rep: Report) -> None:
    """Keep the run's per-pair figures in the worklist database for its dashboard."""
    from plugin.worklist import tables as t

    lo, hi = rep.span
    span = f"{lo.date() if lo else '?'} to {hi.date() if hi else '?'}"
    with engine.begin() as conn:
        conn.execute(t.spade_runs.insert().values(created_at=datetime.now(UTC),
                                                  source=rep.source[:2000], span=span,
                                                  pairs=summary(rep)))  # fmt: skip
