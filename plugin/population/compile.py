"""Rules → relational plans: one SQL query per rule over the flat tables, transpiled by SQLGlot.

The same loaded :class:`~plugin.rules.engine.RuleSet` the Python engine runs is compiled
here, from each rule's spec (``rules/README.md`` semantics, ``plugin/rules/engine.py``):

* a selector is a relation of its own (a CTE): the events of its kinds passing its column
  predicates (read from ``picked``, the events any selector of the plan may accept, made in
  one pass over ``events`` per scan: :meth:`CodeSets.picked_sql`), then semi-/anti-joins on
  the event id for what lives in other tables (codes and diagnoses on ``ev_set``, the
  event→code-set matches computed once per scan from ``codes`` and ``cs_entries``: exact
  codes, ICD prefixes and ranges, CPT/HCPCS ranges; thresholds on ``ev_conv``;
  interpretations on ``codes``; report concepts on ``text_concepts``);
* ``index`` candidates are the events any index selector accepts, with their anchor;
* an ``event`` condition is a join to the events of the same patient inside its ``between``
  window (both ends inclusive, relative to the anchor or the outcome), optionally in the index
  encounter or before the outcome, skipping the index's own resource; the first match in
  timeline order (``seq``) is its evidence. ``age``/``sex``/``died_within`` join ``patients``.
  Every condition is three-valued (1, 0, NULL = unknown age/sex), ``any`` as in the engine;
* ``sequence``: a windowed join to outcome candidates (``anchor < t <= anchor + within``),
  outcome-relative conditions per (index, outcome) pair, the first passing outcome by ``seq``;
* ``absence``: an anti-join per expected follow-up, each with its own window
  (``anchor <= t <= anchor + within``), once ``anchor + within <= as_of``.

Queries are written once (DuckDB dialect text assembled from the rule) and transpiled by
SQLGlot for every other engine (``spark``): one representation, no SQL per engine. DuckDB runs
the text as written: parsing and generating it again for its own dialect cost 0.3 s per scan
plus 0.1-0.2 s per patient partition (16 partitions for 1,000,000 patients) and changed
nothing, so the SQLGlot tree is built only when another dialect asks. Only portable
constructs are used (inner, left, semi and anti joins, GROUP BY,
``arg_min`` (Spark ``min_by``), CASE, integer arithmetic on epoch microseconds), so the
transpilation is mechanical.

Every join between two event-sized relations has an equality key (``pid`` between events,
``eid`` into ``ev_set``/``ev_conv``/``codes``, ``system`` into ``cs_entries``) and the window
as a residual condition. No ``IN (subquery)`` or correlated subquery appears: Spark plans an
``IN`` subquery under ``OR``/``NOT`` or inside a join condition as a broadcast nested-loop
join, which ran the whole catalogue out of Java heap; written as joins, both engines hash- or
sort-merge-join on the key.

``positive``/``abnormal`` read the result-semantics columns; ``text`` reads
``text_concepts`` (ConText over report narratives, :mod:`plugin.population.flatten`). A
selector key the compiler does not know (a new timeline field the SQL has no column for yet)
makes the rule :class:`~plugin.errors.NotCompiled`; the population scan then runs that rule
through the Python engine, so a new key never silently drops findings.
"""

# ruff: noqa: S608 - this module builds SQL; every literal goes through lit()/_q()

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlglot
from sqlglot import exp

from plugin.errors import NotCompiled
from plugin.rules.codesets import PREFIX_SYSTEMS, CodeSet
from plugin.rules.engine import Rule
from plugin.rules.schema import EVER, Condition, Selector
from plugin.rules.selectors import resolve_codes
from plugin.rules.units import Threshold

# Selector keys with a SQL translation here; any other key set on a selector: NotCompiled.
_HANDLED = frozenset(
    {
        "kind", "codes", "not_codes", "diagnosis", "not_diagnosis", "setting", "released",
        "planned", "icu", "disposition", "not_disposition", "admit_source", "not_admit_source",
        "value", "interpretation", "status", "not_status", "principal", "within", "positive",
        "abnormal", "text",
    }
)  # fmt: skip
# The event columns a selection carries on (what idx, conditions and outcomes read): a
# selection CTE an engine materialises stays narrow.
_SELECTED = ("pid", "eid", "seq", "kind", "t", "te", "source", "enc", "ty", "tmd")
# ... and the columns selector predicates and ``ev_conv`` read besides
_PICKED = (
    *_SELECTED, "status", "setting", "disposition", "admit_source", "planned", "released",
    "icu", "has_pr", "positive", "abnormal", "system", "code", "value", "unit", "comparator",
)  # fmt: skip
_BIG = 4_000_000_000_000_000_000  # beyond any epoch-microsecond time: the clamp of ``ever``


def us(delta: timedelta) -> int:
    """A duration in whole microseconds (``ever`` clamps past every time)."""
    if abs(delta) >= EVER:
        return _BIG if delta > timedelta(0) else -_BIG
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def epoch_us(moment: datetime) -> int:
    return us(moment - datetime(1970, 1, 1, tzinfo=moment.tzinfo))


def _q(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _in(values: Sequence[str]) -> str:
    return "(" + ", ".join(_q(v) for v in values) + ")"


@dataclass(slots=True)
class CodeSets:
    """What the compiled rules share, prepared once per scan: every code set they name, as
    rows of ``cs_entries``; the threshold units; and for each selector a predicate over
    ``events x`` true of (at least) every event it accepts, whose disjunction is
    ``picked``."""

    rows: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    targets: set[str] = field(default_factory=set)  # threshold units ("" = none)
    picks: dict[str, None] = field(default_factory=dict)  # ordered set of predicates
    _ids: dict[str, str] = field(default_factory=dict)

    def picked_sql(self) -> str:
        """``picked``: the events any selector of the plan may accept, with the columns the
        selectors read. Made in one pass over ``events``; every rule query then selects
        from it, so a scan of the catalogue reads the (large) events table once, not once
        per selector. A selector that needs a code-set member only looks at events with a
        row in ``ev_set`` (``m``, a join on ``eid``)."""
        cond = " OR ".join(f"({p})" for p in self.picks) or "FALSE"
        return (
            f"SELECT {', '.join(f'x.{c}' for c in _PICKED)} FROM events x "
            f"LEFT JOIN (SELECT DISTINCT eid FROM ev_set) m ON m.eid = x.eid WHERE {cond}"
        )

    def add(self, cs: CodeSet) -> str:
        key = repr((sorted((s, sorted(c)) for s, c in cs.exact.items()),
                    sorted((s, sorted(p)) for s, p in cs.prefixes.items()),
                    sorted((s, sorted(r)) for s, r in cs.ranges.items())))  # fmt: skip
        if key in self._ids:
            return self._ids[key]
        sid = f"cs{len(self._ids)}"
        self._ids[key] = sid
        for system, codes in cs.exact.items():
            self.rows += [(sid, system, "exact", c, c) for c in sorted(codes)]
        for system, prefixes in cs.prefixes.items():
            self.rows += [(sid, system, "prefix", p, p) for p in prefixes]
        for system, ranges in cs.ranges.items():
            kind = "irange" if system in PREFIX_SYSTEMS else "nrange"
            self.rows += [(sid, system, kind, lo, hi) for lo, hi in ranges]
        return sid


# ev_conv: every valued event a selector may accept (``picked``) with its value in each
# threshold unit it converts to (``unit_conv``, an equality join), plus its raw value once:
# under ``*`` when it has no unit (it is then compared as it stands against any threshold, as
# ``Threshold.test`` does), under ``''`` when it has one (compared against thresholds without
# a unit). No cross join with the target list.
EV_CONV_SQL = """
SELECT e.eid, u.target, e.value * u.a + u.b AS v, e.comparator
FROM picked e JOIN unit_conv u ON e.unit = u.unit AND e.system = u.system AND e.code = u.code
WHERE e.value IS NOT NULL
UNION ALL
SELECT e.eid, CASE WHEN e.unit IS NULL THEN '*' ELSE '' END AS target, e.value AS v,
       e.comparator
FROM picked e
WHERE e.value IS NOT NULL
"""

# ev_set: (eid, role, set_id) for every event code in a named code set. Read only by semi-
# and anti-joins (and DISTINCT eid for ``picked``), so a row repeated when an event has two
# codes of one set changes nothing: no DISTINCT (a quarter of this step's time).
EV_SET_SQL = """
SELECT c.eid, c.role, m.set_id
FROM codes c JOIN (
    SELECT DISTINCT e.set_id, d.system, d.code
    FROM (SELECT DISTINCT system, code FROM codes WHERE role <> 'interp') d
    JOIN cs_entries e ON d.system = e.system
    WHERE (e.kind = 'exact' AND d.code = e.lo)
       OR (e.kind = 'prefix' AND substr(d.code, 1, length(e.lo)) = e.lo)
       OR (e.kind = 'irange' AND substr(d.code, 1, length(e.lo)) >= e.lo
           AND substr(d.code, 1, length(e.hi)) <= e.hi)
       OR (e.kind = 'nrange' AND length(d.code) = length(e.lo) AND d.code >= e.lo
           AND d.code <= e.hi)
) m ON c.system = m.system AND c.code = m.code
WHERE c.role <> 'interp'
"""


@dataclass(frozen=True, slots=True)
class CompiledRule:
    rule: Rule
    text: str  # DuckDB dialect; columns: pid, ieid, oeid, ev_0..ev_n, xu_0..xu_m, bu, su
    n_evidence: int
    exclude_facts: tuple[frozenset[str], ...]  # per output xu_k: the facts its cond reads
    # the SQLGlot tree and each dialect's text, made once when first asked for
    _made: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def sql(self) -> exp.Expr:
        """The query as a SQLGlot expression (parsed from :attr:`text` on first use)."""
        if "tree" not in self._made:
            self._made["tree"] = sqlglot.parse_one(self.text, read="duckdb")
        tree: exp.Expr = self._made["tree"]
        return tree

    def to_sql(self, dialect: str) -> str:
        if dialect == "duckdb":
            return self.text
        if dialect not in self._made:
            self._made[dialect] = self.sql.sql(dialect=dialect)
        out: str = self._made[dialect]
        return out

    def steps(self, dialect: str) -> list[tuple[str, str, bool]]:
        """The same query as named steps: (CTE name, its SELECT, read more than once), then
        ("", the outer SELECT, False). For an engine that inlines every CTE where it is read
        (Spark), which would copy a shared CTE (``idx``, ``ist``, ``pairs``) into each
        condition reading it and multiply the plan (thousands of exchanges and broadcasts
        for TR-1, which ran the driver out of heap); the runner materialises the shared
        steps instead."""
        with_ = self.sql.find(exp.With)
        ctes = list(with_.expressions) if with_ is not None else []
        names = {c.alias for c in ctes}
        reads = Counter(t.name for t in self.sql.find_all(exp.Table) if t.name in names)
        outer = self.sql.copy()
        outer.set("with_", None)
        return [(c.alias, c.this.sql(dialect=dialect), reads[c.alias] > 1) for c in ctes] + [
            ("", outer.sql(dialect=dialect), False)
        ]


@dataclass(slots=True)
class _Ctx:
    rule: Rule
    sets: CodeSets
    valuesets: Mapping[str, CodeSet]
    ctes: list[str] = field(default_factory=list)
    selections: dict[str, str] = field(default_factory=dict)  # selector key -> CTE name
    n: int = 0
    patients: bool = False  # a condition of the stage being built reads ``patients p``

    def name(self, stem: str) -> str:
        self.n += 1
        return f"{stem}{self.n}"

    def select(self, sels: Sequence[Selector]) -> str:
        """The CTE of the events any of ``sels`` accepts, made once per rule for each
        distinct selector list."""
        key = repr([s.model_dump(exclude={"within"}, exclude_none=True) for s in sels])
        if key in self.selections:
            return self.selections[key]
        parts = [self.select([s]) for s in sels] if len(sels) > 1 else []
        name = self.name("sel")
        if parts:  # one row per event: an event several selectors accept is still one event
            body = " UNION ".join(f"SELECT * FROM {p}" for p in parts)
        else:
            body = selector_sql(sels[0], self)
        self.ctes.append(f"{name} AS ({body})")
        self.selections[key] = name
        return name


def selector_sql(sel: Selector, ctx: _Ctx) -> str:
    """The events a selector accepts (columns ``_SELECTED``): a filter on the event columns
    of ``picked``, then a semi- or anti-join on ``eid`` per test that reads another table.
    Registers the selector's ``picked`` predicate."""
    given = {k for k, v in sel if v is not None}
    unknown = given - _HANDLED
    if unknown:
        raise NotCompiled(f"selector key(s) {', '.join(sorted(unknown))}")
    kinds = sel.kind if isinstance(sel.kind, list) else [sel.kind]
    x = "x"
    parts = [f"{x}.kind IN {_in(kinds)}"]
    joins: list[str] = []

    def member(how: str, table: str, on: str) -> None:
        j = f"j{len(joins)}"
        joins.append(f" {how} JOIN {table} {j} ON {j}.eid = {x}.eid AND {on.replace('{j}', j)}")

    def in_set(refs: list[str], role: str, how: str) -> None:
        sid = ctx.sets.add(resolve_codes(refs, ctx.valuesets))
        member(how, "ev_set", f"{{j}}.set_id = {_q(sid)} AND {{j}}.role = {role}")

    if sel.codes:
        in_set(sel.codes, "'own'", "SEMI")
    if sel.not_codes:
        in_set(sel.not_codes, "'own'", "ANTI")
    # principal_or_all: the principal diagnosis when the encounter has one, else every one
    dx_role = (
        f"CASE WHEN coalesce({x}.has_pr, FALSE) THEN 'pr' ELSE 'dx' END"
        if sel.principal
        else "'dx'"
    )
    if sel.diagnosis:
        in_set(sel.diagnosis, dx_role, "SEMI")
    if sel.not_diagnosis:
        in_set(sel.not_diagnosis, dx_role, "ANTI")
    if sel.setting:
        parts.append(f"coalesce({x}.setting IN {_in(sel.setting)}, FALSE)")
    for attr in ("released", "planned"):
        want = getattr(sel, attr)
        if want is not None:
            parts.append(f"coalesce({x}.{attr} = {'TRUE' if want else 'FALSE'}, FALSE)")
    if sel.icu is not None:
        parts.append(f"{x}.icu = {'TRUE' if sel.icu else 'FALSE'}")
    for attr, values, negate in (
        ("disposition", sel.disposition, False),
        ("disposition", sel.not_disposition, True),
        ("admit_source", sel.admit_source, False),
        ("admit_source", sel.not_admit_source, True),
    ):
        if values:
            inside = f"coalesce(lower({x}.{attr}) IN {_in([v.lower() for v in values])}, FALSE)"
            parts.append(f"NOT {inside}" if negate else inside)
    if sel.value is not None:
        member("SEMI", "ev_conv", _threshold_sql(Threshold.parse(sel.value), ctx))
    if sel.interpretation:
        wanted = _in([i.upper() for i in sel.interpretation])
        member("SEMI", "codes", f"{{j}}.role = 'interp' AND {{j}}.code IN {wanted}")
    if sel.positive is not None:  # unknown (NULL) is neither positive nor negative
        parts.append(f"coalesce({x}.positive = {'TRUE' if sel.positive else 'FALSE'}, FALSE)")
    if sel.abnormal is not None:
        flags = ["high", "low", "abnormal"] if sel.abnormal == "any" else [sel.abnormal]
        parts.append(f"coalesce({x}.abnormal IN {_in(flags)}, FALSE)")
    if sel.text:
        member("SEMI", "text_concepts", f"{{j}}.concept IN {_in(sel.text)}")
    if sel.status:
        parts.append(f"coalesce({x}.status IN {_in(sel.status)}, FALSE)")
    if sel.not_status:
        parts.append(f"({x}.status IS NULL OR {x}.status NOT IN {_in(sel.not_status)})")
    # the column filter first, so the joins see only the selector's kinds
    where = " AND ".join(parts)
    ctx.sets.picks[f"{where} AND m.eid IS NOT NULL" if sel.codes or sel.diagnosis else where] = None
    inner = _SELECTED + (("has_pr",) if sel.principal else ())  # the role join reads has_pr
    return (
        f"SELECT {', '.join(f'{x}.{c}' for c in _SELECTED)} FROM (SELECT {', '.join(inner)} "
        f"FROM picked {x} WHERE {where}) {x}" + "".join(joins)
    )


def _threshold_sql(th: Threshold, ctx: _Ctx) -> str:
    """``Threshold.test`` as the join condition on ``ev_conv`` alias ``{j}``: the value in
    the threshold's unit (converted by the Python engine's own ``to_unit`` for each distinct
    unit of the scan, or a unitless value as it stands), compared as
    :func:`plugin.normalize.results.compare` does (a value with a comparator is an interval:
    every value it allows must pass)."""
    target = th.unit or ""
    ctx.sets.targets.add(target)
    n, op = repr(float(th.number)), th.op
    if op == "=":
        test = f"{{j}}.comparator IS NULL AND {{j}}.v = {n}"
    else:
        strict = "TRUE" if op in ("<", ">") else "FALSE"
        side = ("'<'", "'<='") if op in ("<", "<=") else ("'>'", "'>='")
        loose, tight = ("<=", "<") if op in ("<", "<=") else (">=", ">")
        test = (
            f"({{j}}.comparator IS NULL AND {{j}}.v {op} {n}) OR ({{j}}.comparator IN "
            f"({side[0]}, {side[1]}) AND CASE WHEN {strict} AND {{j}}.comparator NOT IN "
            f"('<', '>') THEN {{j}}.v {tight} {n} ELSE {{j}}.v {loose} {n} END)"
        )
    return f"{{j}}.target IN ({_q(target)}, '*') AND ({test})"


def _condition_parts(
    cond: Condition, ctx: _Ctx, *, stage: str, src: str
) -> tuple[str, str | None, str]:
    """(value expression, evidence expression or None, extra joins) for one condition over
    the relation ``src`` (columns pid, eid, iseq, isource, ikind, anchor, it, [oeid, ot]).
    The value is 1, 0 or NULL (unknown)."""
    if cond.any:
        members = [_condition_parts(c, ctx, stage=stage, src=src) for c in cond.any]
        joins = "".join(m[2] for m in members)
        vals = [m[0] for m in members]
        value = (
            "CASE "
            + " ".join(f"WHEN {v} = 1 THEN 1" for v in vals)
            + (" WHEN " + " OR ".join(f"{v} IS NULL" for v in vals) + " THEN NULL")
            + " ELSE 0 END"
        )
        evs = [(v, e) for v, e, _ in members if e is not None]
        evidence = (
            "CASE " + " ".join(f"WHEN {v} = 1 THEN {e}" for v, e in evs) + " END" if evs else None
        )
        return value, evidence, joins
    if cond.event is not None:
        return _event_condition(cond, ctx, stage=stage, src=src)
    ctx.patients = True
    if cond.age is not None:
        b = cond.age
        checks = [f"{op} {float(v)!r}" for op, v in (("<", b.lt), ("<=", b.le), (">", b.gt),
                                                     (">=", b.ge)) if v is not None]  # fmt: skip
        age = "(s.ity - p.by - CASE WHEN s.itmd < p.bmd THEN 1 ELSE 0 END)"
        test = " AND ".join(f"{age} {c}" for c in checks) or "TRUE"
        return f"CASE WHEN p.by IS NULL THEN NULL WHEN {test} THEN 1 ELSE 0 END", None, ""
    if cond.died_within is not None:
        d = us(cond.died_within)
        base = "s.ot" if cond.relative_to == "outcome" else "s.anchor"
        return (
            f"CASE WHEN p.deceased IS NOT NULL AND {base} <= p.deceased "
            f"AND p.deceased <= {base} + {d} THEN 1 ELSE 0 END",
            None,
            "",
        )
    if cond.sex is not None:
        return (
            f"CASE WHEN p.sex IS NULL THEN NULL WHEN p.sex IN {_in(cond.sex)} THEN 1 ELSE 0 END",
            None,
            "",
        )
    return "NULL", None, ""


def _event_condition(
    cond: Condition, ctx: _Ctx, *, stage: str, src: str
) -> tuple[str, str | None, str]:
    if cond.event is None:
        raise NotCompiled("an event condition without an event")
    events = ctx.select([cond.event])
    name = ctx.name("c")
    keys = "s.pid, s.eid" + (", s.oeid" if stage == "outcome" else "")
    on = ["x.pid = s.pid", not_same("x", "s")]
    if cond.between is not None:
        base = "s.ot" if cond.relative_to == "outcome" else "s.anchor"
        lo, hi = us(cond.between[0]), us(cond.between[1])
        on += [f"x.t >= {base} + {lo}", f"x.t <= {base} + {hi}"]
    if cond.same_encounter:
        on.append("(x.enc = s.isource OR (x.source = s.isource AND x.kind <> s.ikind))")
    if cond.before_outcome:
        on.append("x.t < s.ot")
    # the first match in timeline order: seq is unique within a patient, so arg_min picks
    # that one event's source and id
    ctx.ctes.append(
        f"{name} AS (SELECT {keys}, arg_min(x.source, x.seq) AS fsrc, "
        f"arg_min(x.eid, x.seq) AS feid FROM {src} s JOIN {events} x "
        f"ON {' AND '.join(on)} GROUP BY {keys})"
    )
    on_key = f"{name}.eid = s.eid" + (f" AND {name}.oeid = s.oeid" if stage == "outcome" else "")
    join = f" LEFT JOIN {name} ON {on_key}"
    if stage == "outcome":  # the first match being the outcome itself does not count
        value = f"CASE WHEN {name}.fsrc IS NOT NULL AND {name}.feid <> s.oeid THEN 1 ELSE 0 END"
    else:
        value = f"CASE WHEN {name}.fsrc IS NOT NULL THEN 1 ELSE 0 END"
    return value, f"{name}.fsrc", join


def not_same(x: str, s: str, i: str = "") -> str:
    """Not the index (alias ``s``, columns prefixed ``i``) nor its own resource nor the other
    record of its study (:func:`plugin.rules.engine.same_source`)."""
    return (
        f"NOT (({x}.source = {s}.isource AND {x}.kind = {s}.ikind) OR ({x}.kind <> {s}.ikind "
        f"AND {x}.kind IN ('procedure', 'report') AND {s}.ikind IN ('procedure', 'report') "
        f"AND {x}.t = {s}.it AND {x}.enc IS NOT DISTINCT FROM {s}.ienc))"
    )


def _facts(cond: Condition) -> frozenset[str]:
    out: set[str] = set()
    if cond.age is not None:
        out.add("age")
    if cond.sex is not None:
        out.add("sex")
    for c in cond.any or ():
        out |= _facts(c)
    return frozenset(out)


def _stage(
    rule: Rule, ctx: _Ctx, *, stage: str, src: str, out: str
) -> tuple[list[str], list[frozenset[str]], list[str]]:
    """A CTE ``out`` over ``src`` with ``ok`` (requirements hold, no exclusion), evidence and
    unknown-exclusion columns. Returns (evidence columns, facts per unknown column,
    unknown columns)."""
    on_outcome = stage == "outcome"
    selects, joins, oks = [], [], []
    ev_cols: list[str] = []
    unk_cols: list[str] = []
    facts: list[frozenset[str]] = []
    ctx.patients = False
    for i, cond in enumerate(rule.spec.logic.require):
        if cond.mentions_outcome() is not on_outcome:
            continue
        value, evidence, join = _condition_parts(cond, ctx, stage=stage, src=src)
        joins.append(join)
        oks.append(f"coalesce(({value}) = 1, FALSE)")
        if evidence is not None:
            col = f"{out}_r{i}"
            selects.append(f"{evidence} AS {col}")
            ev_cols.append(col)
    for i, cond in enumerate(rule.spec.logic.exclude):
        if cond.mentions_outcome() is not on_outcome:
            continue
        value, _, join = _condition_parts(cond, ctx, stage=stage, src=src)
        joins.append(join)
        oks.append(f"NOT coalesce(({value}) = 1, FALSE)")
        col = f"{out}_x{i}"
        selects.append(f"({value}) IS NULL AS {col}")
        unk_cols.append(col)
        facts.append(_facts(cond))
    ok = " AND ".join(oks) or "TRUE"
    extra = "".join(", " + s for s in selects)
    people = " LEFT JOIN patients p ON p.pid = s.pid" if ctx.patients else ""
    ctx.ctes.append(
        f"{out} AS (SELECT s.*, {ok} AS {out}_ok{extra} FROM {src} s{people}{''.join(joins)})"
    )
    return ev_cols, facts, unk_cols


def compile_rule(rule: Rule, sets: CodeSets, valuesets: Mapping[str, CodeSet], *,
                 as_of: datetime) -> CompiledRule:  # fmt: skip
    """One rule → its query (raises :class:`NotCompiled`)."""
    ctx = _Ctx(rule=rule, sets=sets, valuesets=valuesets)
    logic = rule.spec.logic
    index = ctx.select(logic.index_selectors())
    anchor = "e.t" if rule.anchor == "start" else "coalesce(e.te, e.t)"
    ctx.ctes.append(
        f"idx AS (SELECT e.pid, e.eid, e.seq AS iseq, e.source AS isource, e.kind AS ikind, "
        f"e.enc AS ienc, e.t AS it, e.ty AS ity, e.tmd AS itmd, {anchor} AS anchor "
        f"FROM {index} e)"
    )
    i_ev, i_facts, i_unk = _stage(rule, ctx, stage="index", src="idx", out="ist")
    within = us(rule.within)
    if rule.type == "sequence":
        outcome = ctx.select(_as_list(logic.outcome))  # type: ignore[attr-defined]
        ctx.ctes.append(
            f"pairs AS (SELECT i.*, o.eid AS oeid, o.seq AS oseq, o.t AS ot, "
            f"o.source AS osrc FROM ist i JOIN {outcome} o ON o.pid = i.pid "
            f"AND o.t > i.anchor AND o.t <= i.anchor + {within} "
            f"AND {not_same('o', 'i')} WHERE i.ist_ok)"
        )
        o_ev, o_facts, o_unk = _stage(rule, ctx, stage="outcome", src="pairs", out="ost")
        # the first passing outcome of each index, by timeline order
        ctx.ctes.append(
            "firsto AS (SELECT *, row_number() OVER (PARTITION BY eid ORDER BY oseq) AS rn "
            "FROM ost WHERE ost_ok)"
        )
        evidence = ["ev_0", *i_ev, "ev_o", *o_ev]
        unk = i_unk + o_unk
        facts = i_facts + o_facts
        cols = ", s.oeid, s.isource AS ev_0" + "".join(f", s.{c}" for c in i_ev)
        cols += ", s.osrc AS ev_o" + "".join(f", s.{c}" for c in o_ev)
        source, where = "firsto s", "s.rn = 1"
    elif rule.type == "absence":
        closed = []
        for sel in logic.expect_any:  # type: ignore[attr-defined]
            w = us(sel.within) if sel.within is not None else within
            expected = ctx.select([sel])
            closed.append(
                f"SELECT i.eid FROM ist i JOIN {expected} x ON x.pid = i.pid "
                f"AND x.t >= i.anchor AND x.t <= i.anchor + {w} AND {not_same('x', 'i')} "
                f"WHERE i.ist_ok"
            )
        ctx.ctes.append("closed AS (" + " UNION ".join(closed) + ")")
        evidence = ["ev_0", *i_ev]
        unk = i_unk
        facts = i_facts
        cols = ", CAST(NULL AS BIGINT) AS oeid, s.isource AS ev_0"
        cols += "".join(f", s.{c}" for c in i_ev)
        source = "ist s ANTI JOIN closed c ON c.eid = s.eid"
        where = f"s.ist_ok AND s.anchor + {within} <= {epoch_us(as_of)}"
    else:
        raise NotCompiled(f"logic type {rule.type!r}")
    # whether age or sex was unknown matters only to an undecided exclusion
    if any(facts):
        source += " LEFT JOIN patients p ON p.pid = s.pid"
        known = ", p.by IS NULL AS bu, p.sex IS NULL AS su"
    else:
        known = ", FALSE AS bu, FALSE AS su"
    final = (
        f"SELECT s.pid, s.eid AS ieid{cols}" + "".join(f", s.{c}" for c in unk)
        + f"{known} FROM {source} WHERE {where}"
    )  # fmt: skip
    # rename the evidence/unknown columns to positional names the engine reads
    outer = (
        "SELECT pid, ieid, oeid, "
        + ", ".join(f"{c} AS ev_{k}" for k, c in enumerate(evidence))
        + "".join(f", {c} AS xu_{k}" for k, c in enumerate(unk))
        + ", bu, su FROM fin"
    )
    text = "WITH " + ", ".join(ctx.ctes) + f", fin AS ({final}) {outer}"
    return CompiledRule(
        rule=rule,
        text=text,
        n_evidence=len(evidence),
        exclude_facts=tuple(facts),
    )


def _as_list(sel: Selector | list[Selector]) -> list[Selector]:
    return sel if isinstance(sel, list) else [sel]


@dataclass(slots=True)
class Plan:
    compiled: list[CompiledRule]
    not_compiled: dict[str, str]  # rule id -> why
    sets: CodeSets


def compile_rules(rules: Sequence[Rule], valuesets: Mapping[str, CodeSet], *,
                  as_of: datetime) -> Plan:  # fmt: skip
    sets = CodeSets()
    compiled, skipped = [], {}
    for rule in rules:
        try:
            compiled.append(compile_rule(rule, sets, valuesets, as_of=as_of))
        except NotCompiled as exc:
            skipped[rule.id] = str(exc)
    return Plan(compiled=compiled, not_compiled=skipped, sets=sets)
