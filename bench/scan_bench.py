"""Scan throughput and peak memory on a Bulk-layout NDJSON population.

    .venv/bin/python bench/scan_bench.py --patients 100000          # generates var/bench/pop-100000
    .venv/bin/python bench/scan_bench.py --data DIR                 # or an existing NDJSON folder

Runs `dxsafety scan` in a child process (so peak RSS is the scan's own) for each
validation mode, and prints resources/s, patients/s and peak RSS.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DXS = str(ROOT / ".venv" / "bin" / "dxsafety")


def count_lines(folder: Path) -> int:
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
    if peak <= before:
        print("  (peak RSS not above an earlier child's; figure is an upper bound)")
    print("  " + proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "")
    return seconds, max(peak, before) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--data", type=Path)
    ap.add_argument("--modes", default="fast,full")
    args = ap.parse_args()
    data = args.data or ROOT / "var" / "bench" / f"pop-{args.patients}"
    if args.data is None and not (data / "labels.csv").exists():
        print(f"generating {args.patients} patients into {data} …")
        t0 = time.perf_counter()
        subprocess.run(
            [
                DXS,
                "synth",
                "--patients",
                str(args.patients),
                "--seed",
                str(args.seed),
                "--out",
                str(data),
            ],
            check=True,
        )
        print(f"  synth: {time.perf_counter() - t0:.1f} s")
    n_res = count_lines(data)
    print(f"population: {data} ({n_res:,} resources)")
    results = {}
    for mode in args.modes.split(","):
        out = ROOT / "var" / "bench" / f"findings-{mode}.csv"
        seconds, rss = run_child(
            [DXS, "scan", str(data), "--validate", mode, "--out", str(out), "--as-of", "2026-11-01"]
        )
        results[mode] = seconds
        print(
            f"scan --validate {mode}: {seconds:.1f} s, {n_res / seconds:,.0f} resources/s, "
            f"peak RSS {rss:,.0f} MiB"
        )
    if "fast" in results and "full" in results:
        print(f"full/fast time ratio: {results['full'] / results['fast']:.2f}x")
    print(f"cpu count: {os.cpu_count()}")


if __name__ == "__main__":
    main()
