"""Ranker scores for a SQL-engine scan: features for the flagged patients only (issue 12).

The compiled rules give findings without timelines; the ranker's features are functions of a
:class:`~plugin.timeline.model.Timeline` (:mod:`plugin.rank.features`). Rather than a second
feature pipeline in SQL (two definitions of ~150 features that would drift), the timelines of
the *flagged* patients only are built by the Python engine's own reader and builder, and
scored exactly as :func:`plugin.scan.scan_population` scores them:

1. **Select** (DuckDB): one pass over the NDJSON files keeps the lines that can belong to a
   flagged patient: a Patient whose id, or a resource whose ``subject``/``patient``/
   ``beneficiary`` reference ends in a flagged id (a superset of
   :func:`plugin.fhir.stage.patient_of`, which then decides exactly), plus every Location and
   Medication (joined by reference, as staging does), every Bundle line and every conditional
   ``Patient?identifier=`` reference. DuckDB parses only the five paths it filters on; the
   other ~85 % of the lines never reach Python. ``.json`` files (Bundles) that may hold such
   resources (:func:`_needed`) and NDJSON files starting with a byte order mark are read by
   the Python reader itself.
2. **Build**: each flagged patient's resources, in the order the Python engine reads them,
   go through the staging module's own dedup, validation and timeline builder
   (:func:`plugin.fhir.stage._validated`), in worker processes when there are many.
3. **Score** in the Python engine's patient order (staging bucket, then id) and batches
   (``batch_size`` findings, as :func:`plugin.scan.scan_population` flushes), since the
   ranker explains the top findings of each batch: scores, missed diagnoses and reasons are
   the ones ``scan --engine python --model`` gives for the same finding keys.
4. **Snapshot** (with a worklist store): where a timeline is built, its findings' case
   snapshots are made too, so a timeline is built once for the score and the store.

The kept lines stay in DuckDB, sorted by batch, and a batch's are read when it is sent to
a worker, a few batches ahead of the results: memory holds a few batches, not every
flagged patient's lines.
"""

# ruff: noqa: S608 - this module builds SQL; every literal goes through lit()

from __future__ import annotations

import gzip
import os
import tempfile
import zlib
from collections import defaultdict, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import duckdb
import orjson

from plugin.fhir.parse import TIMELINE_TYPES
from plugin.fhir.read import ReadReport, display, iter_resources, list_input_files
from plugin.fhir.stage import (
    _PATIENT_KEYS,
    _SHARED_TYPES,
    _dump,
    _identifier_keys,
    _load,
    _query_key,
    _Shared,
    _validated,
    choose_buckets,
    patient_of,
)
from plugin.fhir.validate import Mode
from plugin.population.vocab import in_list, lit
from plugin.scan import FindingScorer
from plugin.timeline.model import Finding, Timeline

JSON = dict[str, Any]
# (where, raw, assigned): an NDJSON line as read (the worker parses it and keeps it only if
# it belongs to the patient), or a resource already assigned to the patient (``_dump`` bytes)
Item = tuple[str, bytes, bool]
_BOM = b"\xef\xbb\xbf"
# Fewer flagged patients than this: build in this process. A worker starts with cold caches
# (the UCUM registry alone takes ~2.5 s; this process has it from the scan) and builds ~7 ms
# a patient: measured on 599 flagged patients, in-process 6-7 s, two workers 8-11 s.
_POOL_MIN = 1000
_REF_PATHS = tuple(f"$.{k}.reference" for k in _PATIENT_KEYS)


@dataclass(slots=True)
class _Selected:
    """The flagged patients' lines (kept in DuckDB by batch), the shared resources and the
    items read in Python (Bundles, ``.json`` files, conditional references)."""

    lines: dict[str, list[tuple[tuple[int, int], Item]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    shared: list[JSON] = field(default_factory=list)
    deferred: list[tuple[str, str, JSON]] = field(default_factory=list)  # query, where, res
    # (read position, identifier key, patient id) of every Patient read
    identifiers: list[tuple[tuple[int, int], str, str]] = field(default_factory=list)
    # the conditional references resolved to a flagged patient: after its lines
    late: dict[str, list[Item]] = field(default_factory=lambda: defaultdict(list))
    # ``kept_lines(b, pid, fi, r, raw)``: each NDJSON line of batch b's patients, sorted by b
    con: Any = None
    files: list[tuple[int, str]] = field(default_factory=list)  # by fi: (read seq, name)


def score_flagged(
    findings: Sequence[Finding],
    sources: str | Path | Sequence[str | Path],
    model: FindingScorer,
    *,
    validate: Mode = "fast",
    workers: int | None = None,
    batch_size: int = 500,
    rule_order: Sequence[str] = (),
    memory_limit: str | None = None,
) -> list[Finding]:
    """``findings`` (of a SQL scan of ``sources``) scored by ``model`` from their patients'
    timelines; see the module doc and :func:`flagged_batches`. Findings come back in the
    Python engine's scan order (callers sort them with :func:`plugin.scan.rank_key`)."""
    return [f for batch, _snaps in flagged_batches(
        findings, sources, model, validate=validate, workers=workers, batch_size=batch_size,
        rule_order=rule_order, memory_limit=memory_limit)
        for f in batch]  # fmt: skip


Snapshots = dict[str, dict[str, Any]]  # finding key -> the worklist's timeline snapshot


def flagged_batches(
    findings: Sequence[Finding],
    sources: str | Path | Sequence[str | Path],
    model: FindingScorer | None = None,
    *,
    snapshots: bool = False,
    validate: Mode = "fast",
    workers: int | None = None,
    batch_size: int = 500,
    rule_order: Sequence[str] = (),
    memory_limit: str | None = None,
) -> Iterator[tuple[list[Finding], Snapshots]]:
    """The flagged patients' timelines, built once, put to work in batches: ``findings``
    (of a SQL scan of ``sources``) scored by ``model`` when one is given, and with
    ``snapshots`` each finding's worklist snapshot (:func:`plugin.worklist.snapshot.
    snapshot`), made where its timeline was built (a timeline is too costly to ship back).

    ``workers`` processes (default ``os.cpu_count()``; 1: this process) build the timelines.
    ``rule_order`` is the rule ids in ruleset order (the Python engine's order of a patient's
    findings at one index time). Batches come in the Python engine's patient order and
    batches (``batch_size`` findings, as :func:`plugin.scan.scan_population` flushes: the
    ranker explains the top findings of each batch), each patient's findings in one batch."""
    if not findings:
        return
    roots = [Path(sources)] if isinstance(sources, str | Path) else [Path(s) for s in sources]
    by_pid: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        by_pid[f.patient_id].append(f)
    buckets = choose_buckets(roots)  # the Python engine's patient order: bucket, then id
    order = sorted(by_pid, key=lambda p: (zlib.crc32(p.encode()) % buckets, p))
    plan: list[list[str]] = [[]]  # the Python engine's batches: flushed at batch_size
    size = 0
    for pid in order:
        plan[-1].append(pid)
        size += len(by_pid[pid])
        if size >= batch_size:
            plan.append([])
            size = 0
    plan = [b for b in plan if b]
    setup = (model, validate, {rid: i for i, rid in enumerate(rule_order)}, snapshots)
    n = min(workers if workers is not None else (os.cpu_count() or 1), len(plan))
    if n <= 1 or len(order) < _POOL_MIN:
        with _selection(roots, plan, memory_limit) as selected:
            _init_worker(*setup)
            for k, b in enumerate(plan):
                yield _work_batch(_task(k, b, by_pid, selected))
        return
    # Not fork: this process may hold DuckDB's and LightGBM's (OpenMP) threads, which a
    # forked child must not use. A fork server imports the modules once (~4 s a process
    # when spawned) and forks the workers from a process that never ran either.
    ctx = get_context("forkserver")
    ctx.set_forkserver_preload([__name__, "plugin.rank.ranker"])
    with ProcessPoolExecutor(n, ctx, _init_worker, setup) as pool:
        for _ in range(n):  # start and warm the workers now, while the select runs
            pool.submit(_ready)
        with _selection(roots, plan, memory_limit) as selected:
            # a batch's lines are read when it is sent, a few batches ahead of the results
            # (Executor.map would take every batch's lines at once: 3 GB at 100,000)
            ahead: deque[Future[tuple[list[Finding], Snapshots]]] = deque()
            for k, b in enumerate(plan):
                ahead.append(pool.submit(_work_batch, _task(k, b, by_pid, selected)))
                if len(ahead) > 2 * n:
                    yield ahead.popleft().result()
            while ahead:
                yield ahead.popleft().result()


Task = tuple[list[JSON], list[tuple[str, list[Finding], list[Item]]]]


def _task(k: int, pids: list[str], by_pid: dict[str, list[Finding]], selected: _Selected) -> Task:
    items = _items(selected, k, pids)
    return selected.shared, [(pid, by_pid[pid], items.get(pid, [])) for pid in pids]


def _ready() -> None:
    """Warm the worker while this process selects: the UCUM unit registry is built on first
    use (:mod:`plugin.normalize.units`)."""
    from plugin.normalize.units import is_known

    is_known("mg/dL")


def _python_order(found: list[Finding], tl: Timeline, rank: dict[str, int]) -> list[Finding]:
    """A patient's findings in :func:`plugin.rules.evaluate` order: index time, rule id, then
    (a stable sort over rules in ruleset order, each rule's hits in timeline order) rule
    position and index event position."""
    position: dict[str, int] = {}
    for i, e in enumerate(tl.events):
        position.setdefault(e.source, i)
    return sorted(
        found,
        key=lambda f: (f.index_start, f.rule_id, rank.get(f.rule_id, len(rank)),
                       position.get(f.index_ref, len(position)), f.key),
    )  # fmt: skip


def _files(roots: list[Path]) -> list[Path]:
    return [f for root in roots for f in list_input_files(root)]


def _has_bom(file: Path) -> bool:
    try:
        opener = gzip.open if file.name.lower().endswith(".gz") else open
        with opener(file, "rb") as fh:
            return bool(fh.read(3) == _BOM)
    except (OSError, EOFError):
        return True  # let the Python reader meet (and skip) what it cannot read


@contextmanager
def _selection(
    roots: list[Path], plan: list[list[str]], memory_limit: str | None
) -> Iterator[_Selected]:
    """Step 1 of the module doc: what the flagged patients' timelines can be built from, for
    the batches of patients in ``plan`` (:func:`_items` gives one batch's)."""
    out = _Selected()
    flagged = {pid for batch in plan for pid in batch}
    files = _files(roots)
    ndjson: list[tuple[int, Path]] = []
    others: list[tuple[int, Path]] = []
    for seq, f in enumerate(files):
        name = f.name.lower()
        if name in ("log.ndjson", "log.ndjson.gz"):
            continue
        if name.endswith((".ndjson", ".ndjson.gz")) and not _has_bom(f):
            ndjson.append((seq, f))
        else:
            others.append((seq, f))
    # Bundles and the odd file: the Python reader, item by item, in the files that may hold
    # a flagged patient's resources
    for seq, f in _needed(others, flagged, memory_limit) if others else []:
        for i, item in enumerate(iter_resources(f)):
            if item.resource is not None:
                _route(out, (seq, i), display(f), item.resource, flagged)
    with _connection(memory_limit) as con:
        if ndjson:
            out.con = con
            _select_ndjson(out, ndjson, plan, flagged)
        _resolve(out, flagged)
        yield out


def _items(selected: _Selected, k: int, pids: list[str]) -> dict[str, list[Item]]:
    """Batch ``k``'s patients' (``pids``) items in the read order: their NDJSON lines (read
    from DuckDB now, not held for every batch at once), the items read in Python, then
    their conditional references."""
    rows: dict[str, list[tuple[tuple[int, int], Item]]] = {
        pid: selected.lines.pop(pid, []) for pid in pids
    }
    if selected.con is not None:
        for pid, fi, r, raw in selected.con.execute(
            "SELECT pid, fi, r, raw FROM kept_lines WHERE b = ?", [k]
        ).fetchall():
            seq, name = selected.files[fi]
            rows[pid].append(((seq, r), (name, raw, False)))
    return {pid: [it for _, it in sorted(v, key=lambda x: x[0])] + selected.late.pop(pid, [])
            for pid, v in rows.items()}  # fmt: skip


def _needed(
    files: list[tuple[int, Path]], flagged: set[str], memory_limit: str | None
) -> list[tuple[int, Path]]:
    """The ``.json`` files (a Bundle, a resource, or NDJSON) that can hold a flagged patient's
    resources: those naming a flagged id as a resource id, a ``fullUrl`` uuid or the id of a
    patient reference (a superset: the Python reader aliases ``urn:uuid:`` references to
    entry ids), or holding a Location, a Medication, a nested Bundle or a conditional
    reference. A file DuckDB cannot read is kept, for the Python reader to report."""
    paths = "[" + ", ".join(lit(str(f)) for _, f in files) + "]"
    entries = "$.entry[*].resource"

    def path(p: str) -> str:  # a list either way: one value, or one per Bundle entry
        return f"json_extract_string(json, {lit(p) if '[*]' in p else '[' + lit(p) + ']'})"

    ids = " || ".join(
        [
            path("$.id"),
            path(f"{entries}.id"),
            f"list_transform({path('$.entry[*].fullUrl')}, lambda u: substr(u, 10))",
        ]
    )
    refs = " || ".join(path(f"{w}.{k}.reference") for w in ("$", entries) for k in _PATIENT_KEYS)
    types = f"{path('$.resourceType')} || {path(f'{entries}.resourceType')}"
    always = "[" + ", ".join(lit(t) for t in sorted({"Bundle", *_SHARED_TYPES})) + "]"
    with _connection(memory_limit) as con:
        con.execute("CREATE TABLE flagged AS SELECT unnest(?::VARCHAR[]) AS pid", [sorted(flagged)])
        con.execute(f"""
            CREATE TABLE o AS
            SELECT file_index AS fi, {ids} AS ids, {refs} AS refs, {types} AS types
            FROM read_json_objects({paths}, format = 'unstructured', ignore_errors = true,
                                   maximum_object_size = 536870912)
        """)  # fmt: skip
        keep = con.execute(f"""
            SELECT fi FROM o
            WHERE list_has_any(list_slice(types, 2, NULL), {always})
               OR types[1] IN {in_list(sorted(_SHARED_TYPES))}
               OR list_bool_or(list_transform(refs, lambda r: starts_with(r, 'Patient?')))
            UNION
            SELECT fi FROM (SELECT fi, unnest(ids || list_transform(refs, lambda r:
                                                                    {_candidate("r")})) AS p
                            FROM o)
            WHERE p IN (SELECT pid FROM flagged)
            UNION
            SELECT k FROM range({len(files)}) t(k) WHERE k NOT IN (SELECT fi FROM o)
        """).fetchall()  # fmt: skip
    wanted = {int(k) for (k,) in keep}
    return [sf for k, sf in enumerate(files) if k in wanted]


@contextmanager
def _connection(memory_limit: str | None) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB database, bounded memory, spilling to a temporary folder (a
    database file would write every table there, needed or not: half the select's time)."""
    with tempfile.TemporaryDirectory(prefix="dxsafety-rank-") as tmp:
        con = duckdb.connect(":memory:")
        try:
            if memory_limit:
                con.execute(f"SET memory_limit = {lit(memory_limit)}")
            con.execute("SET enable_progress_bar = false")
            con.execute(f"SET temp_directory = {lit(str(Path(tmp) / 'spill'))}")
            # rowid follows each file's line order: the per-patient order staging reads in
            con.execute("SET preserve_insertion_order = true")
            yield con
        finally:
            con.close()


def _route(out: _Selected, at: tuple[int, int], where: str, r: JSON, flagged: set[str]) -> None:
    """One resource read in Python, placed as :func:`plugin.fhir.stage._partition` does."""
    rtype = r["resourceType"]
    if rtype in _SHARED_TYPES:
        out.shared.append(r)
        return
    if rtype not in TIMELINE_TYPES:
        return
    pid = patient_of(r)
    if not pid or "\t" in pid or "\n" in pid:
        return
    if pid.startswith("?"):
        out.deferred.append((pid, where, r))
        return
    if rtype == "Patient":
        out.identifiers += [(at, k, pid) for k in _identifier_keys(r)]
    if pid in flagged:
        out.lines[pid].append((at, (where, _dump(r), True)))


def _candidate(ref: str) -> str:
    """SQL for the one id :func:`patient_of` can take from a reference: the value after
    ``urn:uuid:``, else the last path segment (after dropping ``/_history/v``)."""
    return (
        f"CASE WHEN starts_with({ref}, 'urn:uuid:') THEN substr({ref}, 10) "
        f"ELSE regexp_extract(regexp_replace({ref}, '/_history/[^/]*$', ''), '[^/]*$') END"
    )


def _select_ndjson(
    out: _Selected, ndjson: list[tuple[int, Path]], plan: list[list[str]], flagged: set[str]
) -> None:
    con = out.con
    con.execute("CREATE TABLE flagged AS SELECT unnest(?::VARCHAR[]) AS pid", [sorted(flagged)])
    con.execute("CREATE TABLE batch_of (pid VARCHAR, b INTEGER)")
    con.executemany("INSERT INTO batch_of VALUES (?, ?)",
                    [(pid, k) for k, batch in enumerate(plan) for pid in batch])  # fmt: skip
    paths = "[" + ", ".join(lit(str(f)) for _, f in ndjson) + "]"
    keys = "['$.resourceType', '$.id', " + ", ".join(f"'{p}'" for p in _REF_PATHS) + "]"
    cands = ["CASE WHEN x[1] = 'Patient' THEN x[2] END"] + [
        _candidate(f"x[{i}]") for i in range(3, 3 + len(_REF_PATHS))
    ]
    # a semi-join per candidate (hash joins: fast; a list test per row is not)
    hit = " OR ".join(f"({c}) IN (SELECT pid FROM flagged)" for c in cands)
    conditional = " OR ".join(
        f"coalesce(starts_with(x[{i}], 'Patient?'), false)"
        for i in range(3, 3 + len(_REF_PATHS))
    )
    always = in_list(sorted({"Bundle", *_SHARED_TYPES}))
    con.execute(f"""
        CREATE TABLE kept AS
        SELECT file_index AS fi, json::VARCHAR AS j, [{", ".join(cands)}] AS c,
               coalesce(x[1] IN {always} OR {conditional}, false) AS loose
        FROM (SELECT file_index, json, json_extract_string(json, {keys}) AS x
              FROM read_json_objects({paths}, format = 'newline_delimited',
                                     ignore_errors = true,
                                     maximum_object_size = 67108864))
        WHERE x[1] IN {always} OR {conditional} OR {hit}
    """)
    out.files = [(seq, display(f)) for seq, f in ndjson]
    # a kept line once per flagged patient it may belong to (the worker parses it and keeps
    # it only for its own), with that patient's batch, sorted by batch so that a batch's
    # read skips the others' row groups; rowid is the line order (preserve_insertion_order)
    con.execute("""
        CREATE TABLE kept_lines AS
        SELECT bo.b, x.p AS pid, x.fi, x.r, encode(x.j) AS raw
        FROM (SELECT fi, rowid AS r, j, unnest(list_distinct(c)) AS p FROM kept
              WHERE NOT loose) x JOIN batch_of bo ON bo.pid = x.p
        ORDER BY bo.b
    """)
    # Bundle lines, shared resources and conditional references: read here
    rows = con.execute("SELECT fi, rowid, encode(j) FROM kept WHERE loose ORDER BY fi, rowid")
    while chunk := rows.fetchmany(10_000):
        for fi, rowid, raw in chunk:
            seq, name = out.files[fi]
            _take_loose(out, (seq, rowid), name, raw, flagged)
    con.execute("DROP TABLE kept")
    if out.deferred:  # conditional references: every Patient's identifiers
        _all_identifiers(out, con, paths, [seq for seq, _ in ndjson])


def _take_loose(
    out: _Selected, at: tuple[int, int], where: str, raw: bytes, flagged: set[str]
) -> None:
    """A Bundle line, a shared resource or a conditional reference: read here."""
    from plugin.fhir.read import _items_from_bytes

    for k, item in enumerate(_items_from_bytes(raw, where)):
        if item.resource is not None and item.resource["resourceType"] != "OperationOutcome":
            _route(out, (at[0], at[1] * 100_000 + k), where, item.resource, flagged)


def _all_identifiers(out: _Selected, con: Any, paths: str, seqs: list[int]) -> None:
    rows = con.execute(f"""
        SELECT file_index, json::VARCHAR FROM read_json_objects({paths},
            format = 'newline_delimited', ignore_errors = true,
            maximum_object_size = 67108864)
        WHERE json_extract_string(json, '$.resourceType') = 'Patient'
    """).fetchall()
    for n, (fi, j) in enumerate(rows):  # a filtered scan keeps each file's line order
        r = orjson.loads(j)
        pid = r.get("id")
        if isinstance(pid, str) and r.get("resourceType") == "Patient":
            out.identifiers += [((seqs[fi], n), k, pid) for k in _identifier_keys(r)]


def _resolve(selected: _Selected, flagged: set[str]) -> None:
    """Conditional references resolved against the Patients' identifiers after all
    (:func:`plugin.fhir.stage._resolve_deferred`): a flagged owner's go after its lines."""
    if not selected.deferred:
        return
    found: dict[str, str] = {}
    for _, key, pid in sorted(selected.identifiers, key=lambda x: x[0]):
        found.setdefault(key, pid)
    for query, where, r in selected.deferred:
        wanted = _query_key(query)
        owner = found.get(wanted) if wanted else None
        if owner is not None and owner in flagged:
            selected.late[owner].append((where, _dump(r), True))


_WORKER: dict[str, Any] = {}  # set by _init_worker, in each worker (or this process)


def _init_worker(
    model: FindingScorer | None, mode: Mode, rank: dict[str, int], snapshots: bool = False
) -> None:
    _WORKER.update(model=model, mode=mode, rank=rank, snapshots=snapshots)


def _work_batch(task: Task) -> tuple[list[Finding], Snapshots]:
    """One batch of :func:`plugin.scan.scan_population`: its patients' timelines, their
    findings in the engine's order, scored together; and their snapshots when asked."""
    from plugin.worklist.snapshot import snapshot

    shared, batch = task
    store = _Shared()  # Locations and Medications, joined by reference as staging does
    for r in shared:
        store.add(r)
    store.finish()
    found: list[Finding] = []
    timelines: dict[str, Timeline] = {}
    for pid, findings, items in batch:
        tl = _build(pid, items, store)
        found += _python_order(findings, tl, _WORKER["rank"])
        timelines[pid] = tl
    if _WORKER["model"] is not None:
        found = _WORKER["model"].score_findings(found, timelines)
    snaps: Snapshots = {}
    if _WORKER["snapshots"]:
        snaps = {f.key: snapshot(f, timelines[f.patient_id]) for f in found}
    return found, snaps


def _build(pid: str, raw_items: list[Item], shared: _Shared) -> Timeline:
    """One patient's timeline from its items, through staging's own steps."""
    from plugin.fhir.read import _items_from_bytes

    resources: list[tuple[str, JSON]] = []
    for where, raw, assigned in raw_items:
        if assigned:
            resources.append((where, _load(raw)))
            continue
        for item in _items_from_bytes(raw, where):
            r = item.resource
            if r is None or r["resourceType"] not in TIMELINE_TYPES:
                continue
            if patient_of(r) == pid:
                resources.append((where, r))
    patient = _validated(resources, pid, _WORKER["mode"], ReadReport(), shared)
    return patient.timeline()
