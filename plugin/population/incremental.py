"""``scan --engine duckdb --stage DIR --incremental``: apply a Bulk ``_since`` delta to a stage.

The first incremental scan into an empty stage builds it in full and keeps, beside the flat
tables of :mod:`plugin.population.scan`, what a later delta needs:

* ``res/*.parquet`` -- every resource read, typed (``rt, id, r, pref`` of
  :func:`plugin.population.flatten.read_resources`) with its patient: ``p0`` the patient
  reference as resolved without the Patients (``?identifier`` for a conditional one) and
  ``pid`` (NULL for the shared Locations/Medications and for conditional references, which
  are resolved again on each scan against the Patients' identifiers). Append-only: a delta
  adds one file; older copies of a resource stay and lose to the newer one exactly where a
  full scan of old + new files would drop them (``flatten``'s one copy per Type/id, latest
  ``meta.lastUpdated``).
* ``incremental.json`` -- the files applied, the resource counts, the rules' fingerprint, the
  ``as_of`` of the last scan, every finding *candidate* and a digest of each finding emitted.

A delta scan reads only the new files, finds the affected patients (a resource of theirs in
the delta, a conditional reference that now resolves elsewhere, or a Location/Medication in
the delta that one of their resources names), re-flattens only them (their staged and new
resources through :func:`~plugin.population.flatten.flatten_resources`), replaces their rows
of the staged tables, runs the compiled rules for them only and diffs the findings.

Candidates make the result exact without re-evaluating anybody else: the rules are compiled
with ``as_of`` in the far future, so an absence rule also returns the windows still open; the
result at ``as_of`` keeps an absence candidate once its window has closed (the compiled
plan's only use of ``as_of``). An unaffected patient's window that closes between two scans
therefore shows up as a new finding, as in a full scan. A changed rule set or data-gap
decision re-evaluates every patient from the staged tables (no re-flattening).
"""

# ruff: noqa: S608 - this module builds SQL; every literal goes through lit()

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from plugin.errors import EmptySource, StageMismatch
from plugin.fhir.read import ReadReport
from plugin.fhir.resource_types import shared_types
from plugin.population.compile import Plan, compile_rules
from plugin.population.engine import DuckRunner, run
from plugin.population.flatten import (
    SCHEMA,
    check_damaged,
    connect,
    damaged_files,
    flatten_resources,
    no_offset_warnings,
    p0_sql,
    pident_sql,
    read_resources,
)
from plugin.population.scan import TABLES, _fingerprint, stage
from plugin.population.vocab import in_list, lit
from plugin.rules import RuleSet, data_gaps
from plugin.scan import ScanResult, ScanSummary, kinds_present, rank_key
from plugin.timeline.model import Finding

STATE = "incremental.json"
# the candidates' as_of: every absence window counts as closed, the result filters them
_FAR = datetime(9999, 1, 1, tzinfo=UTC)
# the staged resources are read back into flatten: a different SCHEMA cannot be mixed in
_SCHEMA_ID = hashlib.sha256(json.dumps(SCHEMA, sort_keys=True).encode()).hexdigest()[:16]


class FindingSink(Protocol):
    """What the worklist store offers a scan (:class:`plugin.worklist.store.Store`)."""

    def upsert_findings(self, findings: Iterable[Finding], timelines: Any = None) -> int: ...

    def mark_gone(self, keys: Iterable[str]) -> int: ...


@dataclass(kw_only=True)
class IncrementalResult:
    """The whole population's findings, and what this scan changed."""

    result: ScanResult
    built: bool  # the stage was built from scratch (first scan)
    files: int  # new files read (already applied ones are skipped)
    resources: int  # resources in them
    reflattened: int  # patients re-flattened (every patient on a build)
    reevaluated: int  # patients whose rules ran (all of them when the rules changed)
    changed: list[Finding] = field(default_factory=list)  # new or changed: sent to the store
    gone: list[str] = field(default_factory=list)  # keys no longer produced: marked gone


def scan_incremental(
    sources: Sequence[str | Path] | str | Path,
    ruleset: RuleSet,
    *,
    as_of: datetime,
    stage_dir: str | Path,
    memory_limit: str | None = None,
    sink: FindingSink | None = None,
) -> IncrementalResult:
    """Build the stage from ``sources``, or apply them as a delta to it; see the module doc.
    ``sink`` (the worklist store) receives the new or changed findings and the gone keys."""
    started = time.perf_counter()
    paths = [sources] if isinstance(sources, str | Path) else list(sources)
    sdir = Path(stage_dir)
    state = _load_state(sdir)
    fresh = _fingerprint(paths)
    applied = {tuple(f) for f in state["files"]} if state else set()
    new_files = [f for f in fresh if tuple(f) not in applied]
    if state is None and not new_files:
        raise EmptySource(f"{', '.join(map(str, paths))}: no FHIR files to scan")
    if state is not None:
        pending = {tuple(f) for f in state.get("pending", [])}
        if not pending <= {tuple(f) for f in new_files}:  # its patients' rows are half-done
            raise StageMismatch(f"{sdir}: an incremental scan of {len(pending)} file(s) was "
                                "interrupted; run it again with the same files first")  # fmt: skip
        if new_files:  # cleared by the state saved at the end
            _save_state(sdir, {**state, "pending": new_files})
    with tempfile.TemporaryDirectory(prefix="dxsafety-inc-") as tmp:
        con = connect(memory_limit=memory_limit, temp_dir=Path(tmp) / "spill")
        try:
            delta = _Delta(con, sdir, state)
            types = delta.read([f[0] for f in new_files]) if new_files else {}
            counts = Counter(state["types"] if state else {}) + Counter(types)
            gaps = data_gaps(ruleset, kinds_present(counts))
            rules = [r for r in ruleset.rules if r.id not in gaps or gaps[r.id].evaluated]
            plan = compile_rules(rules, ruleset.valuesets, as_of=_FAR)
            if plan.not_compiled:  # they need Python timelines, which a stage does not keep
                names = ", ".join(sorted(plan.not_compiled))
                raise StageMismatch(f"--incremental needs compiled rules; not compiled: {names}")
            rules_id = _rules_id(plan, gaps)
            old = [_decode(c) for c in state["candidates"]] if state else []
            affected = delta.affected() if state is not None and new_files else set()
            if new_files:
                delta.append()
            if state is None or affected:
                delta.reflatten(affected if state is not None else None)
                subset = run(DuckRunner(con), plan)
            if state is not None and affected:
                delta.merge()
            if new_files:
                delta.write({"files": (state["files"] if state else []) + new_files,
                             "resources": sum(counts.values()), "types": dict(counts)})  # fmt: skip
            patients = delta.count_patients()
            if state is None:
                candidates, reevaluated = subset, patients
            elif state["rules"] == rules_id:
                keep = [c for c in old if c.patient_id not in affected]
                candidates, reevaluated = keep + (subset if affected else []), len(affected)
            else:  # another rule set or data-gap decision: every patient, from the stage
                delta.load_all()
                candidates, reevaluated = run(DuckRunner(con), plan), patients
        finally:
            con.close()
    findings = _visible(candidates, as_of, gaps)
    emitted = {f.key: _digest(f) for f in findings}
    previous: dict[str, str] = state["emitted"] if state else {}
    changed = [f for f in findings if previous.get(f.key) != emitted[f.key]]
    gone = sorted(previous.keys() - emitted.keys())
    saved = {
        "schema": _SCHEMA_ID, "files": (state["files"] if state else []) + new_files,
        "types": dict(counts), "rules": rules_id, "as_of": as_of.isoformat(),
        "candidates": [_encode(c) for c in candidates], "emitted": previous,
    }  # fmt: skip
    _save_state(sdir, saved)  # the stage is current; the store may still fail below
    if sink is not None:
        if changed:
            sink.upsert_findings(changed, None)
        if gone:
            sink.mark_gone(gone)
    _save_state(sdir, {**saved, "emitted": emitted})  # a failed store gets them next time
    summary = ScanSummary(as_of=as_of)
    summary.patients = patients
    summary.findings_by_rule = Counter(f.rule_id for f in findings)
    summary.seconds = time.perf_counter() - started
    report = delta.report
    report.files = len(new_files)
    report.resources.update(Counter(types))
    findings.sort(key=rank_key)
    return IncrementalResult(
        result=ScanResult(findings=findings, summary=summary, report=report, gaps=gaps),
        built=state is None, files=len(new_files), resources=sum(types.values()),
        reflattened=patients if state is None else len(affected), reevaluated=reevaluated,
        changed=changed, gone=gone,
    )  # fmt: skip


class _Delta:
    """The SQL steps of one scan on ``con``: read, resolve, re-flatten, merge, write."""

    def __init__(self, con: Any, sdir: Path, state: dict[str, Any] | None):
        self.con, self.sdir, self.state = con, sdir, state
        self.report = ReadReport()
        self.shared = in_list(shared_types())
        self.flattened = False  # the tables of some patients were rebuilt: stage them

    def read(self, files: list[str]) -> dict[str, int]:
        """The new files → ``dres(rt, id, r, pref, p0, pid)``; staged resources → ``sres``."""
        c = self.con
        types = read_resources(c, files, stream=False)
        if types is None:
            raise EmptySource(f"{', '.join(files)}: no FHIR files to scan")
        # p0 added in place: the wide rows of a full export are not copied
        c.execute("ALTER TABLE res ADD COLUMN p0 VARCHAR")
        if types:  # as flatten(): the damaged files' problems by file:line, same resources
            damaged = damaged_files(c)
            check_damaged(c, damaged, self.report)
            no_offset_warnings(c, damaged, self.report)
        c.execute(f"""
            UPDATE res SET p0 = {p0_sql(self.shared)}
        """)
        c.execute("ALTER TABLE res RENAME TO dres")
        staged = self.sdir / "res"
        if self.state is not None and any(staged.glob("*.parquet")):
            c.execute(f"CREATE OR REPLACE TEMP VIEW sres AS SELECT * EXCLUDE (pid) "
                      f"FROM read_parquet({lit(str(staged / '*.parquet'))})")  # fmt: skip
        else:
            c.execute("CREATE OR REPLACE TEMP VIEW sres AS SELECT * FROM dres LIMIT 0")
        # conditional Patient?identifier= references resolve against every Patient's
        # identifiers (flatten's pident), before and after this delta
        # (filtered on rt, a column of its own: the wide r is read for the Patients only)
        c.execute("CREATE OR REPLACE TEMP TABLE spat AS SELECT id, r.identifier AS ident "
                  "FROM sres WHERE rt = 'Patient'")  # fmt: skip
        c.execute(pident_sql("pident_old", "SELECT id, ident FROM spat"))
        c.execute(pident_sql("pident", "SELECT id, ident FROM spat UNION ALL SELECT "
                             "id, r.identifier FROM dres WHERE rt = 'Patient'"))  # fmt: skip
        return types

    def affected(self) -> set[str]:
        """Patients whose flat rows this delta can change: a resource of theirs in it, a
        conditional reference that now resolves to another patient (both count), or a
        Location/Medication in it that a resource of theirs names (by reference or by
        identifier, as flatten joins them)."""
        c = self.con
        rows = c.execute(f"""
            SELECT {_pid("d", "pident")} FROM dres d LEFT JOIN pident ON pident.k = qkey(d.p0)
            UNION
            SELECT unnest([a, b]) FROM (
                SELECT {_pid("s", "pn")} AS a, {_pid("s", "po")} AS b FROM sres s
                LEFT JOIN pident pn ON pn.k = qkey(s.p0)
                LEFT JOIN pident_old po ON po.k = qkey(s.p0)
                WHERE starts_with(s.p0, '?')) WHERE a IS DISTINCT FROM b
        """).fetchall()
        keys = c.execute(f"""
            SELECT list(k) FROM (
                SELECT rt || '/' || id AS k FROM dres WHERE rt IN {self.shared}
                UNION ALL
                SELECT unnest([coalesce(i.system, '') || '|' || i.value, '|' || i.value])
                FROM (SELECT unnest(r.identifier) AS i FROM dres WHERE rt = 'Location')
                WHERE i.value IS NOT NULL)
        """).fetchone()
        if keys and keys[0]:  # only then: it reads every staged resource's references
            c.execute("CREATE OR REPLACE TEMP TABLE dkeys AS SELECT ? AS keys", [keys[0]])
            rows += c.execute(f"""
                SELECT {_pid("s", "pident")} FROM sres s
                LEFT JOIN pident ON pident.k = qkey(s.p0), dkeys d
                WHERE list_contains(d.keys, canon(s.r.medicationReference.reference,
                                                  'Medication'))
                   OR len(list_filter(coalesce(s.r.location, []), lambda x:
                          list_contains(d.keys, canon(x.location.reference, 'Location'))
                          OR list_contains(d.keys, qkey(x.location.reference)))) > 0
            """).fetchall()
        return {r[0] for r in rows if r[0] is not None}

    def append(self) -> None:
        """The delta's resources join the staged ones (one more file)."""
        path = self.sdir / "res" / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        # pid kept only where it needs no Patient identifiers (those resolve on each scan)
        self.con.execute(f"""
            COPY (SELECT rt, id, r, pref, p0, CASE WHEN starts_with(p0, '?') THEN NULL
                         ELSE p0 END AS pid FROM dres ORDER BY pid)
            TO {lit(str(path) + ".parquet")} (FORMAT parquet)
        """)

    def reflatten(self, affected: set[str] | None) -> None:
        """Flatten the resources of ``affected`` (None: every resource read)."""
        c = self.con
        if affected is None:  # flatten ignores the extra columns
            c.execute("ALTER TABLE dres RENAME TO res")
            flatten_resources(c)
            self.flattened = True
            return
        c.execute("CREATE OR REPLACE TEMP TABLE aff (pid VARCHAR)")
        if affected:
            c.executemany("INSERT INTO aff VALUES (?)", [(p,) for p in sorted(affected)])
        c.execute(f"""
            CREATE OR REPLACE TEMP TABLE res AS
            SELECT x.rt, x.id, x.r, x.pref FROM (SELECT rt, id, r, pref, p0 FROM sres
                                                 UNION ALL SELECT rt, id, r, pref, p0 FROM dres) x
            LEFT JOIN pident ON pident.k = qkey(x.p0)
            WHERE x.rt IN {self.shared} OR {_pid("x", "pident")} IN (SELECT pid FROM aff)
        """)
        flatten_resources(c)
        self.flattened = True

    def merge(self) -> None:
        """The staged tables with the affected patients' rows replaced by the new ones (views:
        :func:`~plugin.population.scan.stage` copies them straight to the new Parquet)."""
        c = self.con
        for name in TABLES:
            c.execute(f"ALTER TABLE {name} RENAME TO n_{name}")
            c.execute(f"CREATE OR REPLACE TEMP VIEW o_{name} AS SELECT * EXCLUDE (bucket) FROM "
                      f"read_parquet({lit(str(self.sdir / name / '*' / '*.parquet'))}, "
                      "hive_partitioning = true)")  # fmt: skip
        top = c.execute("SELECT coalesce(max(eid), 0) FROM o_events").fetchone()
        off = int(top[0]) if top else 0
        c.execute("CREATE OR REPLACE TEMP TABLE gone_eid AS SELECT eid FROM o_events "
                  "WHERE pid IN (SELECT pid FROM aff)")  # fmt: skip
        c.execute(f"CREATE TEMP VIEW events AS SELECT * FROM o_events WHERE pid NOT IN "
                  f"(SELECT pid FROM aff) UNION ALL BY NAME "
                  f"SELECT * REPLACE (eid + {off} AS eid) FROM n_events")  # fmt: skip
        for name in ("codes", "text_concepts"):
            c.execute(f"CREATE TEMP VIEW {name} AS SELECT * FROM o_{name} WHERE eid NOT IN "
                      f"(SELECT eid FROM gone_eid) UNION ALL BY NAME "
                      f"SELECT * REPLACE (eid + {off} AS eid) FROM n_{name}")  # fmt: skip
        c.execute(
            "CREATE TEMP VIEW patients AS SELECT * FROM o_patients WHERE pid NOT IN "
            "(SELECT pid FROM aff) UNION ALL BY NAME SELECT * FROM n_patients"
        )

    def write(self, manifest: dict[str, Any]) -> None:
        """Stage the tables (when re-flattened) next to the old ones, then swap them in."""
        if not self.flattened:
            (self.sdir / "manifest.json").write_text(json.dumps(manifest, indent=1))
            return
        nxt = self.sdir / ".next"
        shutil.rmtree(nxt, ignore_errors=True)
        stage(self.con, nxt, manifest)
        old = self.sdir / ".old"
        shutil.rmtree(old, ignore_errors=True)
        old.mkdir()
        for name in (*TABLES, "manifest.json"):
            if (self.sdir / name).exists():
                (self.sdir / name).rename(old / name)
            (nxt / name).rename(self.sdir / name)
        shutil.rmtree(old)
        nxt.rmdir()

    def load_all(self) -> None:
        views = {r[0] for r in self.con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
        for name in TABLES:
            self.con.execute(f"DROP {'VIEW' if name in views else 'TABLE'} IF EXISTS {name}")
            self.con.execute(
                f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT * EXCLUDE (bucket) FROM "
                f"read_parquet({lit(str(self.sdir / name / '*' / '*.parquet'))}, "
                "hive_partitioning = true)"
            )

    def count_patients(self) -> int:
        n = self.con.execute(
            f"SELECT count(*) FROM read_parquet("
            f"{lit(str(self.sdir / 'patients' / '*' / '*.parquet'))}, hive_partitioning = true)"
        ).fetchone()
        return int(n[0]) if n else 0


def _pid(alias: str, pident: str) -> str:
    """A resource's patient as flatten resolves it (``_patients_of``), NULL when none."""
    return (
        f"(CASE WHEN {alias}.p0 IS NULL OR {alias}.p0 = '' THEN NULL "
        f"WHEN starts_with({alias}.p0, '?') THEN {pident}.pid ELSE {alias}.p0 END)"
    )


def _rules_id(plan: Plan, gaps: dict[str, Any]) -> str:
    """The compiled plan's SQL and the data-gap decisions: equal means equal candidates."""
    h = hashlib.sha256()
    for compiled in plan.compiled:
        h.update(compiled.to_sql("duckdb").encode())
    h.update(repr(sorted((k, repr(v)) for k, v in gaps.items())).encode())
    return h.hexdigest()


def _visible(candidates: list[Finding], as_of: datetime, gaps: dict[str, Any]) -> list[Finding]:
    """The findings at ``as_of``: absence candidates once their window has closed."""
    out = []
    for c in candidates:
        if c.extra.get("type") == "absence" and c.window_end > as_of:
            continue
        gap = gaps.get(c.rule_id)  # on a copy: the candidate stays without the gap note
        out.append(replace(c, extra={**c.extra, "data_gap": gap.reason}) if gap is not None else c)
    return out


def _encode(f: Finding) -> dict[str, Any]:
    data: dict[str, Any] = {k: getattr(f, k) for k in Finding.__dataclass_fields__}
    for k in ("index_start", "index_end", "window_end"):
        data[k] = data[k].isoformat() if data[k] is not None else None
    return data


def _decode(data: dict[str, Any]) -> Finding:
    values = dict(data)
    for k in ("index_start", "index_end", "window_end"):
        values[k] = datetime.fromisoformat(values[k]) if values[k] is not None else None
    values["evidence"] = tuple(values["evidence"])
    values["reasons"] = tuple(values["reasons"])
    values["missed_dx"] = tuple((str(d), float(p)) for d, p in values["missed_dx"])
    values["extra"] = dict(values["extra"])
    return Finding(**values)


def _digest(f: Finding) -> str:
    return hashlib.sha256(orjson.dumps(_encode(f), option=orjson.OPT_SORT_KEYS)).hexdigest()


def _load_state(sdir: Path) -> dict[str, Any] | None:
    path = sdir / STATE
    if not path.exists():
        if (sdir / "manifest.json").exists():
            raise StageMismatch(
                f"{sdir}: staged without --incremental; scan the full "
                "export into an empty --stage directory with --incremental"
            )
        return None
    state: dict[str, Any] = orjson.loads(path.read_bytes())
    manifest = json.loads((sdir / "manifest.json").read_text())
    if state.get("schema") != _SCHEMA_ID:
        raise StageMismatch(f"{path}: staged by another dxsafety version; scan the full export "
                            "into an empty --stage directory with --incremental")  # fmt: skip
    if manifest.get("files") not in (state["files"], state["files"] + state.get("pending", [])):
        raise StageMismatch(f"{sdir}/manifest.json: the tables were staged again without "
                            "--incremental; scan the full export into an empty --stage "
                            "directory with --incremental")  # fmt: skip
    return state


def _save_state(sdir: Path, state: dict[str, Any]) -> None:
    tmp = sdir / f".{STATE}.tmp"
    tmp.write_bytes(orjson.dumps(state))
    tmp.replace(sdir / STATE)  # never a half-written state
