"""``dxsafety synth``: a synthetic FHIR population with planted missed diagnoses."""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from datetime import date
from pathlib import Path

from plugin.errors import ExitCode, fatal


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "synth",
        help="generate a synthetic FHIR R4 population with planted missed diagnoses",
        description="Write Bulk-export NDJSON (Patient.000.ndjson, ...) and labels.csv (ground "
        "truth: one row per trigger-positive index event) to OUT. Same seed, same bytes.",
    )
    p.add_argument("--patients", type=int, required=True, help="number of patients")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--as-of", default="2026-06-30",
                   help="data end well before this date so follow-up windows closed "
                   "(default 2026-06-30)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="worker processes (output does not depend on it; default 2)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from plugin.synth import generate

    if args.patients < 1:
        fatal("--patients must be at least 1", ExitCode.USAGE)
    try:
        as_of = date.fromisoformat(args.as_of)
    except ValueError:
        fatal(f"--as-of must be a date YYYY-MM-DD, got {args.as_of!r}", ExitCode.USAGE)
    t0 = time.perf_counter()
    summary = generate(args.out, patients=args.patients, seed=args.seed, as_of=as_of,
                       workers=max(1, args.workers))
    secs = time.perf_counter() - t0
    total = sum(summary.resources.values())
    print(f"{summary.patients} patients, {total} resources in {len(summary.files)} files "
          f"-> {args.out} ({secs:.1f} s)")
    n: Counter[str] = Counter()
    mods: Counter[str] = Counter()
    for row in summary.labels:
        n[row.trigger] += 1
        mods[row.trigger] += row.is_mod
    print("trigger  flagged  MOD  PPV(labels)")
    for trig in sorted(n):
        print(f"{trig:7s} {n[trig]:8d} {mods[trig]:4d}  {mods[trig] / n[trig]:.3f}")
    print(f"labels: {args.out / 'labels.csv'} ({len(summary.labels)} rows); "
          f"rule-excluded plants: {args.out / 'excluded.csv'} ({len(summary.excluded)} rows)")
    return 0
