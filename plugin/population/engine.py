"""Run compiled rules over the flat tables on DuckDB or Spark, and turn rows into Findings.

The SQL gives, per finding, the patient, the index and outcome event ids, the evidence
sources in the engine's order and which exclusions were undecided; everything a
:class:`~plugin.timeline.model.Finding` holds besides (key, window end, summary, extra) is
made here from the index and outcome rows, with the Python engine's own functions
(:func:`plugin.rules.engine.finding_key`, ``describe``, ``days_text``), so a finding of the
SQL engines is field for field the Python engine's.
"""

# ruff: noqa: S608 - this module builds SQL; every literal goes through lit()/_q()

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from plugin.normalize.lookups import molar_mass
from plugin.population.compile import EV_CONV_SQL, EV_SET_SQL, CompiledRule, Plan
from plugin.population.steps import step
from plugin.rules.engine import Rule, days_text, describe, finding_key
from plugin.rules.units import to_unit
from plugin.timeline.model import Code, EncounterDetail, Event, Finding, Kind, Setting

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CS_COLUMNS = ("set_id", "system", "kind", "lo", "hi")


def from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(value))


class Runner(Protocol):
    """What an engine offers the compiled plan: run one query, get rows as tuples."""

    dialect: str

    def prepare(self, plan: Plan) -> None: ...

    def query(self, sql: str) -> list[tuple[Any, ...]]: ...

    def rows(self, rule: CompiledRule) -> list[tuple[Any, ...]]: ...

    def ids(self, name: str, ids: list[int]) -> None:
        """A temporary relation ``name(eid)`` holding ``ids``."""


class DuckRunner:
    dialect = "duckdb"

    def __init__(self, con: Any):
        self.con = con

    def prepare(self, plan: Plan) -> None:
        c = self.con
        c.execute(
            "CREATE OR REPLACE TEMP TABLE cs_entries (set_id VARCHAR, system VARCHAR, "
            "kind VARCHAR, lo VARCHAR, hi VARCHAR)"
        )
        if plan.sets.rows:
            c.executemany("INSERT INTO cs_entries VALUES (?, ?, ?, ?, ?)", plan.sets.rows)
        c.execute(f"CREATE OR REPLACE TEMP TABLE ev_set AS {EV_SET_SQL}")
        c.execute(f"CREATE OR REPLACE TEMP TABLE picked AS {plan.sets.picked_sql()}")
        units = self.query(UNITS_SQL)
        c.execute(
            "CREATE OR REPLACE TEMP TABLE unit_conv (unit VARCHAR, system VARCHAR, "
            "code VARCHAR, target VARCHAR, a DOUBLE, b DOUBLE)"
        )
        conv = conversions(units, plan.sets.targets)
        if conv:
            c.executemany("INSERT INTO unit_conv VALUES (?, ?, ?, ?, ?, ?)", conv)
        c.execute(f"CREATE OR REPLACE TEMP TABLE ev_conv AS {EV_CONV_SQL}")

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.con.execute(sql).fetchall()]

    def rows(self, rule: CompiledRule) -> list[tuple[Any, ...]]:
        # one statement: DuckDB materialises a CTE read more than once by itself
        return self.query(rule.to_sql(self.dialect))

    def ids(self, name: str, ids: list[int]) -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS "
                         "SELECT unnest(?::BIGINT[]) AS eid", [ids])  # fmt: skip


class SparkRunner:
    dialect = "spark"

    def __init__(self, spark: Any):
        self.spark = spark

    def prepare(self, plan: Plan) -> None:
        import sqlglot

        sp = self.spark

        def cached(name: str, sql: str) -> None:  # the DuckDB text, transpiled like the rules
            df = sp.sql(sqlglot.transpile(sql, read="duckdb", write="spark")[0])
            df.cache().createOrReplaceTempView(name)

        schema = ", ".join(f"{c} STRING" for c in CS_COLUMNS)
        sp.createDataFrame(plan.sets.rows or [], schema).createOrReplaceTempView("cs_entries")
        cached("ev_set", EV_SET_SQL)
        cached("picked", plan.sets.picked_sql())
        conv = conversions(self.query(UNITS_SQL), plan.sets.targets)
        sp.createDataFrame(
            conv, "unit STRING, system STRING, code STRING, target STRING, a DOUBLE, b DOUBLE"
        ).createOrReplaceTempView("unit_conv")
        cached("ev_conv", EV_CONV_SQL)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.spark.sql(sql).collect()]

    def rows(self, rule: CompiledRule) -> list[tuple[Any, ...]]:
        """The rule's steps as temporary views; a step read more than once is computed once
        (``localCheckpoint``: its rows, without the plan that made them), so no plan holds a
        shared step twice."""
        out: list[tuple[Any, ...]] = []
        views = []
        for name, sql, shared in rule.steps(self.dialect):
            df = self.spark.sql(sql)
            if not name:
                out = [tuple(r) for r in df.collect()]
                break
            if shared:
                df = df.localCheckpoint()
            df.createOrReplaceTempView(name)
            views.append(name)
        for name in views:
            self.spark.catalog.dropTempView(name)
        return out

    def ids(self, name: str, ids: list[int]) -> None:
        self.spark.createDataFrame([(i,) for i in ids], "eid BIGINT").createOrReplaceTempView(
            name
        )


@dataclass(frozen=True, slots=True)
class Row:
    rule: CompiledRule
    pid: str
    ieid: int
    oeid: int | None
    evidence: tuple[str, ...]
    unknown: frozenset[str]


UNITS_SQL = (
    "SELECT DISTINCT unit, system, code FROM picked WHERE value IS NOT NULL AND unit IS NOT NULL"
)


def conversions(
    units: Iterable[tuple[Any, ...]], targets: Iterable[str]
) -> list[tuple[str, str, str, str, float, float]]:
    """(unit, system, code, target, a, b): ``value * a + b`` is the value in ``target``, as
    the Python engine's ``to_unit`` converts it (with the analyte's molar mass); units it
    cannot convert get no row (they never match, as in Python)."""
    out = []
    for unit, system, code in units:
        gpm = molar_mass(system, code) if code else None
        for target in targets:
            if not target:
                continue
            zero = to_unit(0.0, unit, target, g_per_mol=gpm)
            one = to_unit(1.0, unit, target, g_per_mol=gpm)
            if zero is None or one is None:
                continue
            out.append((unit, system, code, target, one - zero, zero))
    return out


def run_plan(runner: Runner, plan: Plan, *, prepared: bool = False) -> list[Row]:
    """The rows of every compiled rule; ``prepared``: the runner's per-scan tables were made
    for ``plan.sets`` already (a subset of a prepared plan's rules, sharing its sets)."""
    if not prepared:
        with step("prepare"):
            runner.prepare(plan)
    out: list[Row] = []
    for compiled in plan.compiled:
        with step("rules"):
            recs = runner.rows(compiled)
        for rec in recs:
            pid, ieid, oeid = rec[0], rec[1], rec[2]
            evs = rec[3 : 3 + compiled.n_evidence]
            first_unk = 3 + compiled.n_evidence
            unk_flags = rec[first_unk : first_unk + len(compiled.exclude_facts)]
            bu, su = rec[-2], rec[-1]
            unknown: set[str] = set()
            for flag, facts in zip(unk_flags, compiled.exclude_facts, strict=True):
                if flag:
                    unknown |= {f for f in facts if (f == "age" and bu) or (f == "sex" and su)}
            out.append(
                Row(
                    compiled,
                    str(pid),
                    int(ieid),
                    None if oeid is None else int(oeid),
                    tuple(e for e in evs if e is not None),
                    frozenset(unknown),
                )
            )
    return out


_EVENT_FIELDS = "eid, pid, kind, t, te, source, system, code, value, unit, setting, label, off"


def events_by_id(runner: Runner, eids: Iterable[int]) -> dict[int, Event]:
    """The events behind findings (index and outcome), as timeline Events for summaries:
    two joins against the ids (a scan of each table, not one per chunk of ids)."""
    ids = sorted(set(eids))
    if not ids:
        return {}
    runner.ids("want_eid", ids)
    dx: dict[int, list[Code]] = {}
    pr: dict[int, list[Code]] = {}
    for eid, role, system, code in runner.query(
        "SELECT DISTINCT c.eid, c.role, c.system, c.code FROM codes c JOIN want_eid w "
        "ON w.eid = c.eid WHERE c.role IN ('dx', 'pr') ORDER BY c.eid, c.role, c.system, c.code"
    ):
        (dx if role == "dx" else pr).setdefault(int(eid), []).append(Code(system, code))
    fields = ", ".join(f"e.{f.strip()}" for f in _EVENT_FIELDS.split(","))
    out: dict[int, Event] = {}
    for r in runner.query(f"SELECT {fields} FROM events e JOIN want_eid w ON w.eid = e.eid"):
        eid = int(r[0])
        kind = Kind(r[2])
        detail = None
        if kind is Kind.ENCOUNTER:
            detail = EncounterDetail(
                setting=Setting(r[10] or "OTHER"),
                class_code="",
                diagnoses=tuple(dx.get(eid, ())),
                principal=tuple(pr.get(eid, ())),
            )
        out[eid] = Event(
            patient=r[1], kind=kind, t=from_us(r[3]),
            end=None if r[4] is None else from_us(r[4]), source=r[5], system=r[6] or "",
            code=r[7] or "", value=r[8], unit=r[9], text=r[11], detail=detail,
            offset_min=None if r[12] is None else int(r[12]),
        )  # fmt: skip
    return out


def to_findings(runner: Runner, rows: Sequence[Row]) -> list[Finding]:
    events = events_by_id(runner, [r.ieid for r in rows] + [r.oeid for r in rows if r.oeid])
    out = []
    for row in rows:
        rule: Rule = row.rule.rule
        index = events[row.ieid]
        outcome = events.get(row.oeid) if row.oeid is not None else None
        anchor = index.t if rule.anchor == "start" else index.stop
        if outcome is not None:
            days = (outcome.t - anchor).total_seconds() / 86400
            summary = f"{describe(index)}, then {describe(outcome)} after {days:.1f} d"
        else:
            summary = f"{describe(index)} with no expected follow-up in {days_text(rule.within)}"
        extra = {
            "trigger": rule.trigger or "",
            "type": rule.type,
            "rule_version": rule.version,
            "catalogue_version": rule.catalogue_version,
            "index_local": index.local_t.isoformat(),
        }
        if row.unknown:
            facts = ", ".join(sorted(row.unknown))
            extra["unknown"] = facts
            summary += f" ({facts} unknown: an exclusion on it was not applied)"
        out.append(
            Finding(
                key=finding_key(row.pid, rule.id, index),
                patient_id=row.pid,
                rule_id=rule.id,
                rule_title=rule.title,
                level=rule.level.name,
                index_ref=index.source,
                index_start=index.t,
                index_end=index.end,
                window_end=anchor + rule.within,
                outcome_ref=outcome.source if outcome is not None else None,
                evidence=tuple(dict.fromkeys(row.evidence)),
                summary=summary,
                extra=extra,
            )
        )
    out.sort(key=lambda f: (f.patient_id, f.index_start, f.rule_id))
    return out


def run(runner: Runner, plan: Plan, *, prepared: bool = False) -> list[Finding]:
    """Every compiled rule's findings over the tables the runner sees."""
    rows = run_plan(runner, plan, prepared=prepared)
    with step("findings"):
        return to_findings(runner, rows)


def finding_map(findings: Iterable[Finding]) -> Mapping[str, Finding]:
    return {f.key: f for f in findings}
