"""Throughput of ``dxsafety synth`` and (``--ppv``) rules-only PPV on the generated data.

    .venv/bin/python bench/synth_bench.py --patients 20000 --workers 2
    .venv/bin/python bench/synth_bench.py --patients 20000 --seed 99 --ppv

Prints patients/s, resources/s and MB written, an extrapolation to 100,000 patients, and
with ``--ppv`` the PPV of each trigger rule measured with the real FHIR edge and rule engine
(seed different from the one used to train the ranker) next to the published value.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

from plugin.synth import generate
from plugin.synth.check import format_report, measure


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patients", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=99)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, help="keep the population here (default: temp dir)")
    ap.add_argument("--ppv", action="store_true", help="also measure rules-only PPV")
    ap.add_argument("--rules", type=Path, default=Path("rules"))
    args = ap.parse_args()
    tmp = None if args.out else Path(tempfile.mkdtemp(prefix="synth-bench-"))
    out = args.out or tmp
    assert out is not None
    try:
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        summary = generate(
            out,
            patients=args.patients,
            seed=args.seed,
            as_of=date(2026, 6, 30),
            workers=args.workers,
        )
        wall = time.perf_counter() - t0
        total = sum(summary.resources.values())
        size = sum(p.stat().st_size for p in out.iterdir() if p.is_file()) / 1e6
        print(f"patients      {args.patients:,} (seed {args.seed}, {args.workers} workers)")
        print(
            f"resources     {total:,} ({total / args.patients:.1f} per patient): "
            + ", ".join(f"{k} {v:,}" for k, v in summary.resources.most_common())
        )
        print(f"written       {size:,.0f} MB ({size / args.patients * 1000:.1f} kB per patient)")
        print(f"wall time     {wall:.1f} s (main-process CPU {time.process_time() - cpu0:.1f} s)")
        print(
            f"rate          {args.patients / wall:,.0f} patients/s, {total / wall:,.0f} "
            f"resources/s, {size / wall:.1f} MB/s"
        )
        print(
            f"100,000 pts   ~{100_000 / (args.patients / wall):.0f} s extrapolated "
            f"(~{size / args.patients * 100:.1f} GB)"
        )
        print(
            f"labels        {len(summary.labels):,} rows, {len(summary.excluded):,} "
            "rule-excluded plants"
        )
        if args.ppv:
            t1 = time.perf_counter()
            report = measure(out, rules_dir=args.rules)
            print(format_report(report))
            print(f"PPV check     {time.perf_counter() - t1:.1f} s")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
