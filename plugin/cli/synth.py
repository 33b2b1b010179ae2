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
    p.add_argument("--patients", type=int, help="number of patients (required)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", type=Path, help="output directory (required)")
    p.add_argument("--as-of", default="2026-06-30",
                   help="data end well before this date so follow-up windows closed "
                   "(default 2026-06-30)")
    p.add_argument("--profile", default="default",
                   help="site profile: coding habits, care pathways, prevalence, documentation "
                   "(default: default; see `dxsafety synth --list-profiles`)")
    p.add_argument("--list-profiles", action="store_true",
                   help="print the site profiles and exit")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="worker processes (output does not depend on it; default 2)")
    p.add_argument("--spade-excess", metavar="PAIR:PER10K", default=None,
                   help="also write a SPADE cohort (<Type>.spade.ndjson) for the pair with this "
                   "planted excess per 10,000 index visits (issue 16), e.g. dizziness_stroke:25")
    p.add_argument("--spade-cohort", type=int, default=None, metavar="N",
                   help="index visits in that cohort (default: --patients)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from plugin.synth import generate
    from plugin.synth.profiles import PROFILES

    if args.list_profiles:
        for p in PROFILES.values():
            print(f"{p.name:10s} {p.description}")
        return 0
    if args.patients is None or args.out is None:
        fatal("--patients and --out are required", ExitCode.USAGE)
    if args.profile not in PROFILES:
        fatal(f"unknown --profile {args.profile!r}; known: {', '.join(PROFILES)}",
              ExitCode.USAGE)
    if args.patients < 1:
        fatal("--patients must be at least 1", ExitCode.USAGE)
    try:
        as_of = date.fromisoformat(args.as_of)
    except ValueError:
        fatal(f"--as-of must be a date YYYY-MM-DD, got {args.as_of!r}", ExitCode.USAGE)
    t0 = time.perf_counter()
    summary = generate(args.out, patients=args.patients, seed=args.seed, as_of=as_of,
                       workers=max(1, args.workers), profile=args.profile)
    secs = time.perf_counter() - t0
    total = sum(summary.resources.values())
    print(f"{summary.patients} patients, {total} resources in {len(summary.files)} files "
          f"-> {args.out} (profile {args.profile}, {secs:.1f} s)")
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
    if args.spade_excess:
        from datetime import datetime

        from plugin.synth.spade import add_planted

        try:
            pair, added = add_planted(args.out, args.spade_excess, seed=args.seed,
                                  n=args.spade_cohort or args.patients,
                                  end=datetime(as_of.year, as_of.month, as_of.day))
        except ValueError as exc:
            fatal(str(exc), ExitCode.USAGE)
        print(f"SPADE cohort for {pair.id}: {added} resources in *.spade.ndjson")
    return 0
