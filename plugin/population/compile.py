"""Rules → relational plans: one SQL query per rule over the flat tables, as SQLGlot trees.

The same loaded :class:`~plugin.rules.engine.RuleSet` the Python engine runs is compiled
here, from each rule's spec (``rules/README.md`` semantics, ``plugin/rules/engine.py``):

* a selector is a predicate over ``events`` (codes and diagnoses are semi-joins on
  ``ev_set``, the event→code-set matches computed once per scan from ``codes`` and
  ``cs_entries``: exact codes, ICD prefixes and ranges, CPT/HCPCS ranges);
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

Queries are written once (DuckDB dialect text assembled from the rule), parsed into a SQLGlot
expression and generated for each engine (``duckdb``, ``spark``): one representation, no SQL
per engine. Only portable constructs are used (joins, GROUP BY, CASE, IN-subqueries, integer
arithmetic on epoch microseconds), so the transpilation is mechanical.

``positive``/``abnormal`` read the result-semantics columns; ``text`` reads
``text_concepts`` (ConText over report narratives, :mod:`plugin.population.flatten`). A
selector key the compiler does not know (a new timeline field the SQL has no column for yet)
makes the rule :class:`~plugin.errors.NotCompiled`; the population scan then runs that rule
through the Python engine, so a new key never silently drops findings.
"""

# ruff: noqa: S608 - this module builds SQL; every literal goes through lit()/_q()

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

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
    """Every code set the compiled rules name, as rows of ``cs_entries``."""

    rows: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    targets: set[str] = field(default_factory=set)  # threshold units ("" = none)
    _ids: dict[str, str] = field(default_factory=dict)

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


# ev_conv: every valued event's value in each threshold unit it converts to
EV_CONV_SQL = """
SELECT e.eid, u.target, e.value * u.a + u.b AS v, e.comparator
FROM events e JOIN unit_conv u ON e.unit = u.unit AND e.system = u.system AND e.code = u.code
WHERE e.value IS NOT NULL
UNION ALL
SELECT e.eid, t.target, e.value AS v, e.comparator
FROM events e JOIN (SELECT DISTINCT target FROM unit_conv_targets) t
  ON e.unit IS NULL OR t.target = ''
WHERE e.value IS NOT NULL
"""

# ev_set: (eid, role, set_id) for every event code in a named code set.
EV_SET_SQL = """
SELECT DISTINCT c.eid, c.role, m.set_id
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
    sql: exp.Expr  # columns: pid, ieid, oeid, ev_0..ev_n, xu_0..xu_m, bu, su
    n_evidence: int
    exclude_facts: tuple[frozenset[str], ...]  # per output xu_k: the facts its cond reads

    def to_sql(self, dialect: str) -> str:
        return self.sql.sql(dialect=dialect)


@dataclass(slots=True)
class _Ctx:
    rule: Rule
    sets: CodeSets
    valuesets: Mapping[str, CodeSet]
    ctes: list[str] = field(default_factory=list)
    n: int = 0

    def name(self, stem: str) -> str:
        self.n += 1
        return f"{stem}{self.n}"


def selector_sql(sel: Selector, x: str, ctx: _Ctx) -> str:
    """The predicate a selector is, over events alias ``x``."""
    given = {k for k, v in sel if v is not None}
    unknown = given - _HANDLED
    if unknown:
        raise NotCompiled(f"selector key(s) {', '.join(sorted(unknown))}")
    kinds = sel.kind if isinstance(sel.kind, list) else [sel.kind]
    parts = [f"{x}.kind IN {_in(kinds)}"]

    def in_set(refs: list[str], role: str) -> str:
        sid = ctx.sets.add(resolve_codes(refs, ctx.valuesets))
        return f"{x}.eid IN (SELECT eid FROM ev_set WHERE set_id = {_q(sid)} AND role = {_q(role)})"

    if sel.codes:
        parts.append(in_set(sel.codes, "own"))
    if sel.not_codes:
        parts.append(f"NOT {in_set(sel.not_codes, 'own')}")
    for refs, negate in ((sel.diagnosis, False), (sel.not_diagnosis, True)):
        if not refs:
            continue
        if sel.principal:  # principal_or_all: the principal when known, else every diagnosis
            hit = (
                f"(({x}.has_pr AND {in_set(refs, 'pr')}) "
                f"OR (NOT coalesce({x}.has_pr, FALSE) AND {in_set(refs, 'dx')}))"
            )
        else:
            hit = in_set(refs, "dx")
        parts.append(f"NOT {hit}" if negate else hit)
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
        parts.append(_threshold_sql(Threshold.parse(sel.value), x, ctx))
    if sel.interpretation:
        wanted = _in([i.upper() for i in sel.interpretation])
        parts.append(
            f"{x}.eid IN (SELECT eid FROM codes WHERE role = 'interp' AND code IN {wanted})"
        )
    if sel.positive is not None:  # unknown (NULL) is neither positive nor negative
        parts.append(f"coalesce({x}.positive = {'TRUE' if sel.positive else 'FALSE'}, FALSE)")
    if sel.abnormal is not None:
        flags = ["high", "low", "abnormal"] if sel.abnormal == "any" else [sel.abnormal]
        parts.append(f"coalesce({x}.abnormal IN {_in(flags)}, FALSE)")
    if sel.text:
        parts.append(f"{x}.eid IN (SELECT eid FROM text_concepts WHERE concept IN {_in(sel.text)})")
    if sel.status:
        parts.append(f"coalesce({x}.status IN {_in(sel.status)}, FALSE)")
    if sel.not_status:
        parts.append(f"({x}.status IS NULL OR {x}.status NOT IN {_in(sel.not_status)})")
    return "(" + " AND ".join(parts) + ")"


def _threshold_sql(th: Threshold, x: str, ctx: _Ctx) -> str:
    """``Threshold.test`` as SQL: the value in the threshold's unit (``ev_conv``, converted
    by the Python engine's own ``to_unit`` for each distinct unit of the scan), compared as
    :func:`plugin.normalize.results.compare` does (a value with a comparator is an
    interval: every value it allows must pass)."""
    target = th.unit or ""
    ctx.sets.targets.add(target)
    n, op = repr(float(th.number)), th.op
    if op == "=":
        test = f"v.comparator IS NULL AND v.v = {n}"
    else:
        strict = "TRUE" if op in ("<", ">") else "FALSE"
        side = ("'<'", "'<='") if op in ("<", "<=") else ("'>'", "'>='")
        loose, tight = ("<=", "<") if op in ("<", "<=") else (">=", ">")
        test = (
            f"(v.comparator IS NULL AND v.v {op} {n}) OR (v.comparator IN ({side[0]}, "
            f"{side[1]}) AND CASE WHEN {strict} AND v.comparator NOT IN ('<', '>') "
            f"THEN v.v {tight} {n} ELSE v.v {loose} {n} END)"
        )
    return f"{x}.eid IN (SELECT v.eid FROM ev_conv v WHERE v.target = {_q(target)} AND ({test}))"


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
    name = ctx.name("c")
    pred = selector_sql(cond.event, "x", ctx)
    keys = "s.pid, s.eid" + (", s.oeid" if stage == "outcome" else "")
    where = ["x.pid = s.pid", pred, not_same("x", "s")]
    if cond.between is not None:
        base = "s.ot" if cond.relative_to == "outcome" else "s.anchor"
        lo, hi = us(cond.between[0]), us(cond.between[1])
        where += [f"x.t >= {base} + {lo}", f"x.t <= {base} + {hi}"]
    if cond.same_encounter:
        where.append("(x.enc = s.isource OR (x.source = s.isource AND x.kind <> s.ikind))")
    if cond.before_outcome:
        where.append("x.t < s.ot")
    ctx.ctes.append(
        f"{name}m AS (SELECT {keys}, min(x.seq) AS fseq FROM {src} s JOIN events x "
        f"ON {' AND '.join(where)} GROUP BY {keys}), "
        f"{name} AS (SELECT m.*, f.source AS fsrc, f.eid AS feid FROM {name}m m "
        f"JOIN events f ON f.pid = m.pid AND f.seq = m.fseq)"
    )
    on = f"{name}.eid = s.eid" + (f" AND {name}.oeid = s.oeid" if stage == "outcome" else "")
    join = f" LEFT JOIN {name} ON {on}"
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
    ctx.ctes.append(
        f"{out} AS (SELECT s.*, {ok} AS {out}_ok{extra} FROM {src} s "
        f"LEFT JOIN patients p ON p.pid = s.pid{''.join(joins)})"
    )
    return ev_cols, facts, unk_cols


def compile_rule(rule: Rule, sets: CodeSets, valuesets: Mapping[str, CodeSet], *,
                 as_of: datetime) -> CompiledRule:  # fmt: skip
    """One rule → its query (raises :class:`NotCompiled`)."""
    ctx = _Ctx(rule=rule, sets=sets, valuesets=valuesets)
    logic = rule.spec.logic
    index = "(" + " OR ".join(selector_sql(s, "e", ctx) for s in logic.index_selectors()) + ")"
    anchor = "e.t" if rule.anchor == "start" else "coalesce(e.te, e.t)"
    ctx.ctes.append(
        f"idx AS (SELECT e.pid, e.eid, e.seq AS iseq, e.source AS isource, e.kind AS ikind, "
        f"e.enc AS ienc, "
        f"e.t AS it, e.ty AS ity, e.tmd AS itmd, {anchor} AS anchor FROM events e "
        f"WHERE {index})"
    )
    i_ev, i_facts, i_unk = _stage(rule, ctx, stage="index", src="idx", out="ist")
    within = us(rule.within)
    if rule.type == "sequence":
        outcome = (
            "("
            + " OR ".join(
                selector_sql(s, "o", ctx)
                for s in _as_list(logic.outcome)  # type: ignore[attr-defined]
            )
            + ")"
        )
        ctx.ctes.append(
            f"pairs AS (SELECT i.*, o.eid AS oeid, o.seq AS oseq, o.t AS ot, "
            f"o.source AS osrc FROM ist i JOIN events o ON o.pid = i.pid "
            f"AND o.t > i.anchor AND o.t <= i.anchor + {within} "
            f"AND {not_same('o', 'i')} AND {outcome} WHERE i.ist_ok)"
        )
        o_ev, o_facts, o_unk = _stage(rule, ctx, stage="outcome", src="pairs", out="ost")
        ctx.ctes.append(
            "firsto AS (SELECT eid, min(oseq) AS oseq FROM ost WHERE ost_ok GROUP BY eid)"
        )
        final = (
            "SELECT s.pid, s.eid AS ieid, s.oeid, s.isource AS ev_0"
            + "".join(f", s.{c}" for c in i_ev)
            + ", s.osrc AS ev_o"
            + "".join(f", s.{c}" for c in o_ev)
            + "".join(f", s.{c}" for c in i_unk + o_unk)
            + ", p.by IS NULL AS bu, p.sex IS NULL AS su "
            "FROM ost s JOIN firsto f ON f.eid = s.eid AND f.oseq = s.oseq "
            "LEFT JOIN patients p ON p.pid = s.pid"
        )
        evidence = ["ev_0", *i_ev, "ev_o", *o_ev]
        unk = i_unk + o_unk
        facts = i_facts + o_facts
    elif rule.type == "absence":
        closed = []
        for sel in logic.expect_any:  # type: ignore[attr-defined]
            w = us(sel.within) if sel.within is not None else within
            pred = selector_sql(sel, "x", ctx)
            closed.append(
                f"SELECT i.eid FROM ist i JOIN events x ON x.pid = i.pid AND x.t >= i.anchor "
                f"AND x.t <= i.anchor + {w} AND {not_same('x', 'i')} "
                f"AND {pred} WHERE i.ist_ok"
            )
        ctx.ctes.append("closed AS (" + " UNION ".join(closed) + ")")
        final = (
            "SELECT s.pid, s.eid AS ieid, CAST(NULL AS BIGINT) AS oeid, s.isource AS ev_0"
            + "".join(f", s.{c}" for c in i_ev)
            + "".join(f", s.{c}" for c in i_unk)
            + ", p.by IS NULL AS bu, p.sex IS NULL AS su "
            f"FROM ist s LEFT JOIN patients p ON p.pid = s.pid WHERE s.ist_ok "
            f"AND s.anchor + {within} <= {epoch_us(as_of)} "
            "AND s.eid NOT IN (SELECT eid FROM closed)"
        )
        evidence = ["ev_0", *i_ev]
        unk = i_unk
        facts = i_facts
    else:
        raise NotCompiled(f"logic type {rule.type!r}")
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
        sql=sqlglot.parse_one(text, read="duckdb"),
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
