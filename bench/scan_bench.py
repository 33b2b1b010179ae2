"""Scan engines compared in one run: throughput, peak RSS, ratios, and per-trigger floors.

    .venv/bin/python bench/scan_bench.py --patients 20000          # generates var/bench/pop-20000
    .venv/bin/python bench/scan_bench.py --data DIR --engines duckdb,parquet,spark
    .venv/bin/python bench/scan_bench.py --from /tmp/synth20k --scale 50 --gzip \\
        --pop /tmp/pop1m --engines duckdb,parquet                  # 1,000,000 patients

Population: ``--data DIR`` as it is; or ``--from DIR --scale K`` makes (once; reused when its
manifest matches) K rewritten copies of DIR with ``bench/make_population.py`` (``--gzip``,
``--shift-days``); or ``--patients N`` runs ``dxsafety synth``.

Engines, each ``dxsafety scan DIR --engine E`` in a child process: ``python`` (per-patient),
``duckdb`` from the NDJSON (flatten + stage Parquet + rules, ``--memory-limit`` passed on),
``parquet`` (the duckdb engine again, re-scanning the Parquet staged by the ``duckdb`` run)
and ``spark`` (local[2] over the staged Parquet). ``E+model`` and ``E+store`` run engine
``E``'s scan again with ``--model DIR`` (the ranker on the flagged patients) and/or
``--store`` (a fresh SQLite worklist), and print their time as a ratio of ``E``'s.

Per engine: wall time, resources/s, peak RSS of the scan process (``wait4``: exact for that
process and the children it waited for) and the peak summed RSS of its process tree sampled
every 0.2 s (this includes Spark's JVM), its time as a ratio of the duckdb run's and its
resources/s as a ratio of the raw-parse floor, and whether its findings equal the duckdb
run's by key. On a population made by ``make_population.py`` it also checks that every
copy's findings are copy 0's, with the copy's id prefix and date shift undone. Also its CPU
seconds (``wait4``, every thread) and, for the SQL engines (run with ``-v``), each step's
wall and CPU seconds (:mod:`plugin.population.steps`) with CPU-microseconds per resource,
against the budget the issue's target leaves on this machine's cores (200,000 resources/s
from NDJSON, 1,000,000 from Parquet: 10 and 2 CPU-us per resource on two cores).

Floors, measured in the same run:

* **raw parse**: DuckDB ``read_json_objects`` counting the lines of the same NDJSON files in
  a child process (the least any JSON reader of these files can do on this machine);
* **per trigger**: for SP-1, ED-1 (both windows) and TR-1 (the FOBT/FIT arm), the compiled
  rule query against a hand-written DuckDB query of the same rule over the same staged
  tables (``events``, ``codes``, ``patients`` and ``ev_set``, the code-set matches both read;
  built once by the engine's ``prepare``, timed apart; the staged Parquet is first loaded
  into DuckDB tables, as the NDJSON scan has them, so neither side decodes Parquet). Each
  floor must return the same (patient, index, outcome) rows as the rule, or it says so; the
  ratio is rule time / floor time (best of ``--floor-repeats`` runs each).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DXS = str(ROOT / ".venv" / "bin" / "dxsafety")
PY = str(ROOT / ".venv" / "bin" / "python")
AS_OF = "2026-11-01"
DAY = 86_400_000_000  # microseconds: the staged times are epoch microseconds UTC
PAGE = os.sysconf("SC_PAGE_SIZE")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_population  # noqa: E402 - a sibling script, not a package

from plugin.population.steps import LINE as STEP_LINE  # noqa: E402

# ---------------------------------------------------------------- hand-written floors
# The least SQL that answers each rule over the staged tables: plain filters, EXISTS on
# ev_set for code sets, one windowed join. {name} placeholders are code-set ids (quoted).


@dataclass(frozen=True)
class Floor:
    trigger: str
    pick: Callable[[Any], bool]  # which rules of the trigger this floor answers
    sets: dict[str, list[str]]  # placeholder -> the rule's code references
    sql: str  # placeholders: the sets, {within}, {as_of}


_PRINCIPAL = "s.role = CASE WHEN coalesce(o.has_pr, FALSE) THEN 'pr' ELSE 'dx' END"
_SEQUENCE_TAIL = """
SELECT i.pid, i.eid AS ieid, arg_min(o.eid, o.seq) AS oeid
FROM idx i JOIN outc o ON o.pid = i.pid AND o.t > i.a AND o.t <= i.a + {within}
  AND o.source <> i.source
GROUP BY i.pid, i.eid"""

FLOORS = (
    Floor(
        "SP-1",
        lambda r: True,
        {
            "index_dx": ["valueset:dizziness", "valueset:headache_benign"],
            "stroke": ["valueset:stroke"],
        },
        """
WITH idx AS (
  SELECT e.pid, e.eid, e.source, coalesce(e.te, e.t) AS a FROM events e
  WHERE e.kind = 'encounter' AND e.setting = 'ED' AND e.released
    AND EXISTS (SELECT 1 FROM ev_set s WHERE s.eid = e.eid AND s.role = 'dx'
                AND s.set_id = {index_dx})
    AND NOT EXISTS (SELECT 1 FROM ev_set s WHERE s.eid = e.eid AND s.role = 'dx'
                    AND s.set_id = {stroke})),
outc AS (
  SELECT o.pid, o.eid, o.seq, o.t, o.source FROM events o
  WHERE o.kind = 'encounter' AND o.setting IN ('IP', 'OBS')
    AND EXISTS (SELECT 1 FROM ev_set s WHERE s.eid = o.eid AND s.set_id = {stroke}
                AND """
        + _PRINCIPAL
        + "))"
        + _SEQUENCE_TAIL,
    ),
    Floor(
        "ED-1",
        lambda r: True,
        {"excluded_dx": ["valueset:injury_trauma", "valueset:psychiatric_admission_dx"]},
        """
WITH idx AS (
  SELECT e.pid, e.eid, e.source, coalesce(e.te, e.t) AS a FROM events e
  WHERE e.kind = 'encounter' AND e.setting = 'ED' AND e.released),
outc AS (
  SELECT o.pid, o.eid, o.seq, o.t, o.source FROM events o
  WHERE o.kind = 'encounter' AND o.setting IN ('IP', 'OBS') AND NOT o.planned
    AND coalesce(lower(o.admit_source), '') <> 'elective'
    AND NOT EXISTS (SELECT 1 FROM ev_set s WHERE s.eid = o.eid AND s.set_id = {excluded_dx}
                    AND """
        + _PRINCIPAL
        + "))"
        + _SEQUENCE_TAIL,
    ),
    Floor(
        "TR-1",
        lambda r: "fobt_fit" in str(getattr(r, "path", "")),
        {
            "fit": ["valueset:fobt_fit"],
            "colonoscopy": ["valueset:colonoscopy"],
            "gi": ["valueset:gastroenterology_visit"],
            "crc": ["valueset:colorectal_cancer"],
            "colectomy": ["valueset:colectomy"],
            "hospice": ["valueset:hospice_palliative"],
            "cancers": ["valueset:other_advanced_cancers"],
            "ugib": ["valueset:upper_gi_bleed"],
        },
        # one join of each candidate to its patient's coded events decides every exclusion
        # and the follow-up at once (d = event time - index time)
        """
WITH idx AS (
  SELECT e.pid, e.eid, e.t AS a, e.ty, e.tmd FROM events e
  WHERE e.kind = 'observation'
    AND (e.status IS NULL OR e.status NOT IN ('cancelled', 'entered-in-error'))
    AND e.t + {within} <= {as_of}
    AND EXISTS (SELECT 1 FROM ev_set s WHERE s.eid = e.eid AND s.role = 'own'
                AND s.set_id = {fit})
    AND (coalesce(e.positive, FALSE) OR coalesce(e.abnormal = 'high', FALSE)
         OR EXISTS (SELECT 1 FROM codes c WHERE c.eid = e.eid AND c.role = 'interp'
                    AND c.code IN ('POS', 'DET', 'A', 'AA', 'H', 'HH', 'ABN')))),
cand AS (
  SELECT i.* FROM idx i LEFT JOIN patients p ON p.pid = i.pid
  WHERE (p.by IS NULL
         OR i.ty - p.by - CASE WHEN i.tmd < p.bmd THEN 1 ELSE 0 END BETWEEN 40 AND 75)
    AND NOT coalesce(p.deceased BETWEEN i.a AND i.a + 60 * 86400000000, FALSE)),
hit AS (
  SELECT c.eid FROM cand c JOIN events x ON x.pid = c.pid
  JOIN ev_set s ON s.eid = x.eid AND s.role = 'own'
  WHERE (s.set_id = {crc} AND x.kind = 'condition'
         AND x.t BETWEEN c.a - 365 * 86400000000 AND c.a)
     OR (s.set_id = {colectomy} AND x.kind IN ('procedure', 'condition')
         AND x.t <= c.a + 60 * 86400000000)
     OR (s.set_id = {hospice} AND x.kind IN ('condition', 'encounter', 'procedure')
         AND x.t BETWEEN c.a - 365 * 86400000000 AND c.a + 60 * 86400000000)
     OR (s.set_id = {cancers} AND x.kind = 'condition'
         AND x.t BETWEEN c.a - 365 * 86400000000 AND c.a + 60 * 86400000000)
     OR (s.set_id = {ugib} AND x.kind = 'condition'
         AND x.t BETWEEN c.a - 182 * 86400000000 AND c.a)
     OR (s.set_id = {colonoscopy} AND x.kind = 'procedure'
         AND x.t BETWEEN c.a - 1095 * 86400000000 AND c.a - 86400000000)
     OR (s.set_id = {colonoscopy} AND x.kind = 'procedure'
         AND x.t BETWEEN c.a AND c.a + {within})
     OR (s.set_id = {gi} AND x.kind = 'encounter' AND x.t BETWEEN c.a AND c.a + {within}))
SELECT c.pid, c.eid AS ieid, CAST(NULL AS BIGINT) AS oeid FROM cand c
WHERE c.eid NOT IN (SELECT eid FROM hit)""",
    ),
)


# ---------------------------------------------------------------- population


def population(args: argparse.Namespace) -> Path:
    if args.data is not None:
        return Path(args.data)
    if args.scale is not None:
        src = Path(args.source) if args.source else synth(args.patients, args.seed)
        out = Path(
            args.pop
            or ROOT / "var" / "bench" / f"pop-{src.name}-x{args.scale}{'-gz' if args.gzip else ''}"
        )
        have = make_population.read_manifest(out)
        if (
            have
            and have.get("copies") == args.scale
            and have.get("gzip") == args.gzip
            and have.get("shift_days") == args.shift_days
        ):
            print(f"population: reusing {out} ({have['seconds']} s to make)")
            return out
        print(f"making {args.scale} copies of {src} into {out} …", flush=True)
        m = make_population.make_population(
            src, out, args.scale, shift_days=args.shift_days, gz=args.gzip, workers=args.workers
        )
        print(f"  make_population: {m['seconds']} s, {m['bytes'] / 1e9:.2f} GB")
        return out
    return synth(args.patients, args.seed)


def synth(patients: int, seed: int) -> Path:
    data = ROOT / "var" / "bench" / f"pop-{patients}"
    if not (data / "labels.csv").exists():
        print(f"generating {patients} patients into {data} …", flush=True)
        t0 = time.perf_counter()
        subprocess.run(
            [DXS, "synth", "--patients", str(patients), "--seed", str(seed), "--out", str(data)],
            check=True,
        )
        print(f"  synth: {time.perf_counter() - t0:.1f} s")
    return data


def ndjson_files(folder: Path) -> list[Path]:
    from plugin.fhir.read import list_input_files

    return [
        f
        for f in list_input_files(folder)
        if f.name.endswith((".ndjson", ".ndjson.gz"))
        and f.name not in ("log.ndjson", "log.ndjson.gz")
    ]


def count_resources(folder: Path) -> tuple[int, int]:
    """(resources, bytes of input): from make_population's manifest, else by counting lines."""
    files = ndjson_files(folder)
    size = sum(f.stat().st_size for f in files)
    m = make_population.read_manifest(folder)
    if m is not None:
        return int(m["resources"]), size
    total = 0
    for f in files:
        opener = gzip.open if f.name.endswith(".gz") else open
        with opener(f, "rb") as fh:
            total += sum(1 for line in fh if line.strip())
    return total, size


# ---------------------------------------------------------------- child processes


def _tree_rss(root: int) -> int:
    """Summed resident bytes of ``root`` and its descendants (from /proc)."""
    parent: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat", "rb") as fh:
                    stat = fh.read()
                parent[int(d)] = int(stat[stat.rindex(b")") + 2 :].split()[1])
            except (OSError, ValueError):
                continue
    tree, grew = {root}, True
    while grew:
        more = {p for p, pp in parent.items() if pp in tree} - tree
        grew = bool(more)
        tree |= more
    total = 0
    for p in tree:
        try:
            with open(f"/proc/{p}/statm", "rb") as fh:
                total += int(fh.read().split()[1]) * PAGE
        except (OSError, ValueError, IndexError):
            continue
    return total


@dataclass
class ChildRun:
    seconds: float
    rss_mib: float  # wait4 ru_maxrss of the child
    tree_mib: float  # sampled peak of the summed process tree
    stdout: str
    cpu_s: float = 0.0  # wait4 user + system seconds of the child (all its threads)
    stderr: str = ""


def run_child(argv: list[str], stdin: str | None = None) -> ChildRun:
    """Run one child; its wall time, its own peak RSS and its tree's sampled peak."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    peak = [0]
    done = threading.Event()
    out: dict[str, bytes] = {}

    def sample() -> None:
        while not done.wait(0.2):
            peak[0] = max(peak[0], _tree_rss(proc.pid))

    def drain(name: str, pipe: Any) -> None:  # so a chatty child never blocks on a full pipe
        out[name] = pipe.read()

    threads = [
        threading.Thread(target=sample, daemon=True),
        threading.Thread(target=drain, args=("out", proc.stdout)),
        threading.Thread(target=drain, args=("err", proc.stderr)),
    ]
    for t in threads:
        t.start()
    if stdin and proc.stdin:
        proc.stdin.write(stdin.encode())
        proc.stdin.close()
    # wait4, not communicate(): only the reaping call gets the child's own rusage
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    done.set()
    for t in threads:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = out.get("err", b"").decode(errors="replace")
        sys.exit(f"failed ({proc.returncode}): {' '.join(argv)}\n{err[-3000:]}")
    stdout = out.get("out", b"").decode(errors="replace")
    stderr = out.get("err", b"").decode(errors="replace")
    cpu = usage.ru_utime + usage.ru_stime
    return ChildRun(seconds, usage.ru_maxrss / 1024, peak[0] / 2**20, stdout, cpu, stderr)


RAW_PARSE = """
import json, sys, duckdb
files, memory_limit = json.load(sys.stdin)
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")  # a long count draws one on stdout
if memory_limit:
    con.execute(f"SET memory_limit = '{memory_limit}'")
n = con.execute("SELECT count(*) FROM read_json_objects(?, format = 'newline_delimited', "
                "ignore_errors = true, maximum_object_size = 67108864)", [files]).fetchone()[0]
print(n)
"""


def raw_parse(folder: Path, memory_limit: str | None) -> tuple[ChildRun, int]:
    files = [str(f) for f in ndjson_files(folder)]
    run = run_child([PY, "-c", RAW_PARSE], stdin=json.dumps([files, memory_limit]))
    return run, int(run.stdout.strip() or 0)


def keys(path: Path) -> set[str]:
    with path.open(newline="", encoding="utf-8") as fh:
        return {row["key"] for row in csv.DictReader(fh)}


def copies_agree(path: Path, manifest: dict[str, Any]) -> str:
    """Whether every copy of a make_population population has copy 0's findings, with the
    copy's id prefix and date shift undone (each copy is the same patients)."""
    copies, shift = int(manifest["copies"]), int(manifest["shift_days"])
    by_copy: dict[int, set[tuple[str, ...]]] = {k: set() for k in range(copies)}
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            m = re.match(r"c(\d+)-", row["patient_id"])
            # an original id may itself start "c<digits>-" (a UUID: c + 7 digits, far more
            # than the copies): only a copy number below the count is a copy prefix
            k = int(m.group(1)) if m and 0 < int(m.group(1)) < copies else 0
            pre = make_population.prefix(k)
            ref = row["index_ref"]
            off = make_population.ref_id_offset(ref.encode())
            if pre and off is not None and ref[off:].startswith(pre):
                ref = ref[:off] + ref[off + len(pre) :]
            start = datetime.fromisoformat(row["index_start"])
            start += timedelta(days=make_population.shift_of(k, shift))
            key = (row["patient_id"][len(pre) :], row["rule_id"], ref, start.isoformat())
            by_copy.setdefault(k, set()).add(key)
    base = by_copy[0]
    differ = [k for k, got in by_copy.items() if got != base]
    if not differ:
        return f"all {copies} copies have copy 0's {len(base):,} findings"
    return f"{len(differ)} of {copies} copies differ from copy 0 (e.g. copy {differ[0]})"


# ---------------------------------------------------------------- per-trigger floors


def floors(stage: Path, memory_limit: str | None, repeats: int) -> list[str]:
    """Compiled rule query vs the hand-written floor, per rule, on the staged tables."""
    from plugin.population.compile import compile_rules
    from plugin.population.engine import DuckRunner
    from plugin.population.flatten import connect
    from plugin.population.scan import TABLES, load_staged
    from plugin.rules import load_rules
    from plugin.rules.selectors import resolve_codes

    rs = load_rules(ROOT / "rules")
    spill = tempfile.TemporaryDirectory(prefix="scan-bench-")
    con = connect(memory_limit=memory_limit, temp_dir=Path(spill.name))
    con.execute("SET enable_progress_bar = false")
    load_staged(con, stage)
    # as the NDJSON scan has them: DuckDB tables (spilling to the database file), so neither
    # side is timed decoding Parquet
    t0 = time.perf_counter()
    for name in TABLES:
        con.execute(f"CREATE OR REPLACE TABLE {name}_t AS SELECT * FROM {name}")
        con.execute(f"DROP VIEW {name}")
        con.execute(f"ALTER TABLE {name}_t RENAME TO {name}")
    print(f"staged Parquet loaded into DuckDB tables: {time.perf_counter() - t0:.2f} s")
    as_of = datetime.fromisoformat(AS_OF).replace(tzinfo=UTC)
    plan = compile_rules(rs.rules, rs.valuesets, as_of=as_of)
    runner = DuckRunner(con)
    t0 = time.perf_counter()
    runner.prepare(plan)
    print(
        f"per trigger (prepare, the plan's shared tables: {time.perf_counter() - t0:.2f} s"
        f", shared by rule and floor; best of {repeats}):"
    )
    known = {sid for sid, *_ in plan.sets.rows}
    as_of_us = int((as_of - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 1_000_000
    lines = []

    def best(sql: str) -> tuple[float, set[tuple[Any, ...]]]:
        times, rows = [], set()
        for _ in range(repeats):
            t = time.perf_counter()
            rows = {tuple(r[:3]) for r in con.execute(sql).fetchall()}
            times.append(time.perf_counter() - t)
        return min(times), rows

    for fl in FLOORS:
        for rule in (r for r in rs.find(fl.trigger) if fl.pick(r)):
            compiled = [c for c in plan.compiled if c.rule is rule]
            label = f"{fl.trigger} {rule.within.days}d"
            if not compiled:
                lines.append(f"{label}: not compiled ({plan.not_compiled.get(rule.id)})")
                print(f"  {lines[-1]}")
                continue
            ids = {k: plan.sets.add(resolve_codes(v, rs.valuesets)) for k, v in fl.sets.items()}
            missing = sorted(k for k, sid in ids.items() if sid not in known)
            within = rule.within.days * DAY + rule.within.seconds * 1_000_000
            sql = fl.sql.format(
                within=within, as_of=as_of_us, **{k: f"'{sid}'" for k, sid in ids.items()}
            )
            t_rule, got = best(compiled[0].to_sql("duckdb"))
            t_floor, want = best(sql)
            same = (
                "same rows"
                if got == want
                else (f"ROWS DIFFER ({len(got ^ want)}; floor sets not in the plan: {missing})")
            )
            lines.append(
                f"{label}: rule {t_rule:.3f} s, floor {t_floor:.3f} s, ratio "
                f"{t_rule / max(t_floor, 1e-6):.2f}x, {len(got)} findings, {same}"
            )
            print(f"  {lines[-1]}", flush=True)
    con.close()
    spill.cleanup()
    return lines


# ---------------------------------------------------------------- main


# the 2-core CPU budget of the throughput targets, printed beside the figures
TARGETS = {"duckdb": 200_000, "parquet": 1_000_000}


def steps_of(stderr: str) -> dict[str, tuple[int, float, float]]:
    """(calls, wall s, cpu s) per step from a ``dxsafety -v scan``'s stderr."""
    out: dict[str, tuple[int, float, float]] = {}
    for m in re.finditer(STEP_LINE, stderr):
        n, w, c = out.get(m["name"], (0, 0.0, 0.0))
        out[m["name"]] = (n + 1, w + float(m["wall"]), c + float(m["cpu"]))
    return out


def print_steps(spec: str, run: ChildRun, n_res: int) -> None:
    """Where the scan's time went: each step's wall and CPU seconds and CPU-us per
    resource, then what no step covers (interpreter start, imports, argument parsing)."""
    steps = steps_of(run.stderr)
    if not steps:
        return
    cores = os.cpu_count() or 1
    print(f"  {spec} steps (calls, wall s, cpu s, cpu-us/resource):")
    for name, (calls, wall, cpu) in sorted(steps.items(), key=lambda kv: -kv[1][2]):
        print(f"    {name:18s} {calls:4d} {wall:8.2f} {cpu:8.2f} {cpu * 1e6 / n_res:8.2f}")
    wall = run.seconds - sum(w for _n, w, _c in steps.values())
    cpu = run.cpu_s - sum(c for _n, _w, c in steps.values())
    print(f"    {'(no step)':18s} {'':4s} {wall:8.2f} {cpu:8.2f} {cpu * 1e6 / n_res:8.2f}")
    used = run.cpu_s / run.seconds
    print(f"    {'total':18s} {'':4s} {run.seconds:8.2f} {run.cpu_s:8.2f} "
          f"{run.cpu_s * 1e6 / n_res:8.2f}  ({used:.2f} of {cores} cores)")  # fmt: skip
    target = TARGETS.get(spec)
    if target:
        budget = cores * 1e6 / target
        print(f"    target {target:,} resources/s on {cores} cores = at most {budget:.2f} "
              f"cpu-us/resource with every core busy: {run.cpu_s * 1e6 / n_res / budget:.2f}x "
              "that budget")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=20000, help="synth size (no --data)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--data", type=Path, help="an existing population folder")
    ap.add_argument(
        "--from",
        dest="source",
        type=Path,
        help="with --scale: the population to copy (default: synth --patients)",
    )
    ap.add_argument("--scale", type=int, help="K copies of --from (bench/make_population.py)")
    ap.add_argument("--pop", type=Path, help="with --scale: where the copies go")
    ap.add_argument("--gzip", action="store_true", help="with --scale: write .ndjson.gz")
    ap.add_argument("--shift-days", type=int, default=7, help="with --scale (default 7)")
    ap.add_argument("--workers", type=int, default=2, help="with --scale: processes")
    ap.add_argument("--engines", default="python,duckdb,parquet,spark",
                    help="comma-separated; +model / +store add --model DIR / a worklist "
                    "store to that engine's scan (parquet+model: the re-scan, ranked)")
    ap.add_argument("--model", type=Path, help="a model directory for the +model engines")
    ap.add_argument("--memory-limit", default="1500MB", help="DuckDB memory_limit (passed on)")
    ap.add_argument("--partitions", type=int,
                    help="patient partitions of the duckdb run (default: by input size)")
    ap.add_argument("--stage", type=Path, help="Parquet stage (default var/bench/stage-<pop>)")
    ap.add_argument("--no-raw", action="store_true", help="skip the raw-parse floor")
    ap.add_argument("--no-floors", action="store_true", help="skip the per-trigger floors")
    ap.add_argument("--floor-repeats", type=int, default=2)
    args = ap.parse_args()
    data = population(args)
    n_res, size = count_resources(data)
    print(
        f"population: {data} ({n_res:,} resources, {size / 1e9:.2f} GB on disk), "
        f"cpu count {os.cpu_count()}, memory limit {args.memory_limit}",
        flush=True,
    )
    stage = args.stage or ROOT / "var" / "bench" / f"stage-{data.name}"
    table: list[tuple[str, ...]] = []
    raw_rate = None
    if not args.no_raw:
        run, lines = raw_parse(data, args.memory_limit)
        raw_rate = lines / run.seconds
        note = "" if lines == n_res else f" (NOT the {n_res:,} resources counted)"
        print(
            f"raw parse floor: {run.seconds:.1f} s, {raw_rate:,.0f} lines/s{note}, "
            f"{size / 1e6 / run.seconds:,.0f} MB/s, peak RSS {run.rss_mib:,.0f} MiB",
            flush=True,
        )
        table.append(
            (
                "raw parse (read_json_objects count)",
                f"{run.seconds:.1f}",
                f"{raw_rate:,.0f}",
                "1.00",
                f"{run.rss_mib:,.0f}",
                "-",
            )
        )
    results: dict[str, float] = {}
    found: dict[str, set[str]] = {}
    for spec in args.engines.split(","):
        engine, *extras = spec.split("+")
        out = ROOT / "var" / "bench" / f"findings-{spec}.csv"
        # -v: the SQL engines log each step's wall and CPU seconds (plugin.population.steps)
        verbose = ["-v"] if engine != "python" else []
        argv = [DXS, *verbose, "scan", str(data), "--out", str(out), "--as-of", AS_OF]
        limit = ["--memory-limit", args.memory_limit] if args.memory_limit else []
        for extra in extras:  # the same scan with the ranker and/or the worklist store
            if extra == "model" and args.model is not None:
                argv += ["--model", str(args.model)]
            elif extra == "store":
                db = ROOT / "var" / "bench" / f"store-{spec}.db"
                db.unlink(missing_ok=True)
                argv += ["--store", f"sqlite:///{db}"]
            else:
                sys.exit(f"unknown engine option {extra!r} (+model needs --model DIR)")
        if engine == "python":
            argv += ["--engine", "python"]
        elif engine == "duckdb":
            if stage.exists():  # a fresh flatten: the stage must not be reused
                subprocess.run(["rm", "-rf", str(stage)], check=True)
            parts = ["--partitions", str(args.partitions)] if args.partitions else []
            argv += ["--engine", "duckdb", "--stage", str(stage), *limit, *parts]
        elif engine == "parquet":  # re-scan: the staged Parquet of the duckdb run
            if not (stage / "manifest.json").exists():
                sys.exit("parquet needs the duckdb engine's stage: list duckdb first")
            parts = ["--partitions", str(args.partitions)] if args.partitions else []
            argv += ["--engine", "duckdb", "--stage", str(stage), *limit, *parts]
        elif engine == "spark":
            argv += ["--engine", "spark", "--stage", str(stage), *limit]
        else:
            sys.exit(f"unknown engine {engine!r}")
        run = run_child(argv)
        results[spec] = run.seconds
        found[spec] = keys(out)
        rate = n_res / run.seconds
        vs_raw = f"{rate / raw_rate:.2f}x raw parse" if raw_rate else ""
        print(
            f"{spec:8s} {run.seconds:8.1f} s {rate:12,.0f} resources/s {vs_raw}  peak RSS "
            f"{run.rss_mib:,.0f} MiB (tree {run.tree_mib:,.0f} MiB)  "
            f"{len(found[spec])} findings, cpu {run.cpu_s:.1f} s",
            flush=True,
        )
        print_steps(spec, run, n_res)
        table.append(
            (
                spec,
                f"{run.seconds:.1f}",
                f"{rate:,.0f}",
                f"{rate / raw_rate:.2f}" if raw_rate else "-",
                f"{run.rss_mib:,.0f} (tree {run.tree_mib:,.0f})",
                str(len(found[engine])),
            )
        )
    base = "duckdb" if "duckdb" in results else next(iter(results), None)
    for engine, seconds in results.items():
        assert base is not None
        diff = found[engine] ^ found[base]
        same = "same findings" if not diff else f"DIFFERENT findings ({len(diff)} keys differ)"
        print(f"  {engine}/{base} time ratio {seconds / results[base]:.2f}x, {same}")
    for spec, seconds in results.items():  # the ranker's and the store's cost (item 6: < 2x)
        plain = spec.split("+")[0]
        if spec != plain and plain in results:
            print(f"  {spec}/{plain} time ratio {seconds / results[plain]:.2f}x")
    made = make_population.read_manifest(data)
    if base is not None and made and int(made.get("copies", 1)) > 1:
        agree = copies_agree(ROOT / "var" / "bench" / f"findings-{base}.csv", made)
        print(f"  copies ({base}): {agree}")
    print("\n| engine | s | resources/s | x raw parse | peak RSS MiB | findings |")
    print("|---|---|---|---|---|---|")
    for row in table:
        print("| " + " | ".join(row) + " |")
    if not args.no_floors and (stage / "manifest.json").exists():
        print()
        floors(stage, args.memory_limit, args.floor_repeats)


if __name__ == "__main__":
    main()
