"""Scan engines compared in one run: throughput, peak RSS, ratios, and a per-trigger floor.

    .venv/bin/python bench/scan_bench.py --patients 20000            # generates var/bench/pop-20000
    .venv/bin/python bench/scan_bench.py --data DIR --engines duckdb,python

Each engine runs ``dxsafety scan DIR --engine E`` in a child process (peak RSS is the scan's
own): ``python`` (the per-patient engine), ``duckdb`` from NDJSON (flatten + stage + rules),
``duckdb`` again from the staged Parquet (re-scan), and ``spark`` (local[2], over the staged
Parquet). It prints resources/s, peak RSS and each engine's time as a ratio of the DuckDB
one, and checks the findings files agree by key.

Floor: for SP-1 and ED-1 the compiled rule query is timed against a hand-written DuckDB query
of the same trigger over the same staged tables (the least SQL that can answer it), as a
ratio (target: within 2x). TR-1 is listed too: its index uses result semantics
(``positive``/``abnormal``), which the compiler hands to the Python engine, so its floor
ratio is the Python fallback's.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DXS = str(ROOT / ".venv" / "bin" / "dxsafety")
AS_OF = "2026-11-01"

# Hand-written floors over the staged tables (events, codes, ev_set): the least SQL that
# answers the trigger, without the general compiler's condition machinery.
FLOORS = {
    "SP-1": """
        WITH dx AS (SELECT eid, set_id FROM ev_set WHERE role = 'dx'),
        idx AS (
            SELECT e.pid, e.eid, coalesce(e.te, e.t) AS a FROM events e
            WHERE e.kind = 'encounter' AND e.setting = 'ED' AND e.released
              AND e.eid IN (SELECT eid FROM dx WHERE set_id IN ({benign}))
              AND e.eid NOT IN (SELECT eid FROM dx WHERE set_id IN ({stroke})))
        SELECT i.pid, i.eid, min(o.seq) FROM idx i JOIN events o ON o.pid = i.pid
          AND o.t > i.a AND o.t <= i.a + 2592000000000 AND o.kind = 'encounter'
          AND o.setting IN ('IP', 'OBS')
          AND o.eid IN (SELECT eid FROM ev_set WHERE set_id IN ({stroke})
                        AND role IN ('dx', 'pr'))
        GROUP BY i.pid, i.eid""",
    "ED-1": """
        WITH idx AS (
            SELECT e.pid, e.eid, e.source, coalesce(e.te, e.t) AS a FROM events e
            WHERE e.kind = 'encounter' AND e.setting = 'ED' AND e.released)
        SELECT i.pid, i.eid, min(o.seq) FROM idx i JOIN events o ON o.pid = i.pid
          AND o.t > i.a AND o.t <= i.a + 259200000000 AND o.kind = 'encounter'
          AND o.setting IN ('IP', 'OBS') AND NOT o.planned
          AND coalesce(o.admit_source, '') <> 'elective' AND o.source <> i.source
        GROUP BY i.pid, i.eid""",
}


def count_resources(folder: Path) -> int:
    total = 0
    for f in folder.glob("*.ndjson"):
        with f.open("rb") as fh:
            total += sum(1 for _ in fh)
    return total


def run_child(argv: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(argv)}\n{proc.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    note = "" if peak > before else " (RSS not above an earlier child's: an upper bound)"
    return seconds, max(peak, before) / 1024 if note == "" else float("nan")


def keys(path: Path) -> set[str]:
    with path.open(newline="", encoding="utf-8") as fh:
        return {row["key"] for row in csv.DictReader(fh)}


def floors(stage: Path) -> None:
    """Compiled rule query vs the hand-written floor, per trigger, on the staged tables."""
    from plugin.population.compile import compile_rules
    from plugin.population.engine import DuckRunner
    from plugin.population.flatten import connect
    from plugin.population.scan import load_staged
    from plugin.rules import load_rules

    rs = load_rules(ROOT / "rules")
    con = connect()
    load_staged(con, stage)
    as_of = datetime.fromisoformat(AS_OF).replace(tzinfo=UTC)
    plan = compile_rules(rs.rules, rs.valuesets, as_of=as_of)
    runner = DuckRunner(con)
    runner.prepare(plan)
    ids = {sid for sid, *_ in plan.sets.rows}
    print("per trigger, compiled query vs hand-written floor (same staged tables):")
    for trigger in ("SP-1", "ED-1", "TR-1"):
        rules = rs.find(trigger)
        compiled = [c for c in plan.compiled if c.rule in rules]
        if not compiled:
            why = plan.not_compiled.get(rules[0].id)
            print(f"  {trigger}: not compiled ({why}); runs in Python")
            continue
        c = compiled[0]
        t0 = time.perf_counter()
        n = len(runner.query(c.to_sql("duckdb")))
        t_rule = time.perf_counter() - t0
        floor_sql = FLOORS[trigger].format(
            benign=", ".join(f"'{s}'" for s in sorted(ids)),  # superset: the floor is a bound
            stroke=", ".join(f"'{s}'" for s in sorted(ids)),
        )
        t0 = time.perf_counter()
        m = len(con.execute(floor_sql).fetchall())
        t_floor = time.perf_counter() - t0
        print(f"  {trigger}: rule {t_rule:.2f} s ({n} findings), floor {t_floor:.2f} s "
              f"({m} rows), ratio {t_rule / max(t_floor, 1e-6):.2f}x")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--data", type=Path)
    ap.add_argument("--engines", default="python,duckdb,parquet,spark")
    ap.add_argument("--memory-limit", default="1500MB")
    args = ap.parse_args()
    data = args.data or ROOT / "var" / "bench" / f"pop-{args.patients}"
    if args.data is None and not (data / "labels.csv").exists():
        print(f"generating {args.patients} patients into {data} …")
        t0 = time.perf_counter()
        subprocess.run([DXS, "synth", "--patients", str(args.patients), "--seed",
                        str(args.seed), "--out", str(data)], check=True)  # fmt: skip
        print(f"  synth: {time.perf_counter() - t0:.1f} s")
    n_res = count_resources(data)
    print(f"population: {data} ({n_res:,} resources), cpu count {os.cpu_count()}")
    stage = ROOT / "var" / "bench" / f"stage-{data.name}"
    results: dict[str, float] = {}
    found: dict[str, set[str]] = {}
    for engine in args.engines.split(","):
        out = ROOT / "var" / "bench" / f"findings-{engine}.csv"
        argv = [DXS, "scan", str(data), "--out", str(out), "--as-of", AS_OF]
        if engine == "python":
            argv += ["--engine", "python"]
        elif engine == "duckdb":
            if stage.exists():
                subprocess.run(["rm", "-rf", str(stage)], check=True)
            argv += ["--engine", "duckdb", "--stage", str(stage),
                     "--memory-limit", args.memory_limit]  # fmt: skip
        elif engine == "parquet":  # re-scan: the staged Parquet of the duckdb run
            argv += ["--engine", "duckdb", "--stage", str(stage),
                     "--memory-limit", args.memory_limit]  # fmt: skip
        elif engine == "spark":
            argv += ["--engine", "spark", "--stage", str(stage)]
        seconds, rss = run_child(argv)
        results[engine] = seconds
        found[engine] = keys(out)
        peak = "n/a (not above an earlier child's)" if rss != rss else f"{rss:,.0f} MiB"
        print(f"{engine:8s} {seconds:8.1f} s  {n_res / seconds:12,.0f} resources/s  "
              f"peak RSS {peak}  {len(found[engine])} findings")  # fmt: skip
    base = "duckdb" if "duckdb" in results else next(iter(results))
    for engine, seconds in results.items():
        same = (
            "same findings"
            if found[engine] == found[base]
            else (f"DIFFERENT findings ({len(found[engine] ^ found[base])} keys differ)")
        )
        print(f"  {engine}/{base} time ratio {seconds / results[base]:.2f}x, {same}")
    if stage.exists():
        floors(stage)


if __name__ == "__main__":
    main()
