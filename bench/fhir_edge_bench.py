"""FHIR edge throughput: read, stage + fast timeline, stage + full (R4B) validation.

    .venv/bin/python bench/fhir_edge_bench.py                       # the shared datasets
    .venv/bin/python bench/fhir_edge_bench.py --data DIR [--buckets N]
    .venv/bin/python bench/fhir_edge_bench.py --replicate 20      # 20 renamed copies of the
                                                                   # MIMIC + Bulk NDJSON

Each measurement runs in a child process, so the peak RSS printed is that step's own. Prints
resources/s per step, by wall clock and by the process's CPU time (steadier on a shared machine),
and the full/fast ratio; no thresholds (figures vary with the machine).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DEFAULT = ["mimic-iv-demo-fhir", "synthea-r4", "bulk-ndjson-10-patients", "hl7-r4-examples"]


def one(data: Path, step: str, buckets: int | None) -> dict[str, float]:
    sys.path.insert(0, str(ROOT))
    from plugin.fhir.read import ReadReport, iter_resources
    from plugin.fhir.stage import iter_timelines

    if step == "full":  # import the R4B models before timing
        from fhir.resources.R4B import get_fhir_model_class

        for name in ("Patient", "Encounter", "Condition", "Observation", "Procedure"):
            get_fhir_model_class(name)
    report = ReadReport()
    t0 = time.perf_counter()
    c0 = time.process_time()
    patients = events = 0
    if step == "read":
        for _ in iter_resources(data, report=report):
            pass
    else:
        for timeline in iter_timelines(data, validate=step, report=report, buckets=buckets):
            patients += 1
            events += len(timeline.events)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "resources": report.read,
        "skipped": report.skipped,
        "patients": patients,
        "events": events,
        "seconds": seconds,
        "cpu": cpu,
        "rss_mib": rss,
    }


_UUID = re.compile(rb"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{8})[0-9a-f]{4}")


def replicate(copies: int, out: Path) -> Path:
    """``copies`` copies of the MIMIC and Bulk NDJSON, every UUID renamed per copy."""
    for source in ("mimic-iv-demo-fhir", "bulk-ndjson-10-patients"):
        for f in sorted((SHARED / source).glob("*.ndjson")):
            if f.name == "log.ndjson":
                continue
            raw = f.read_bytes()
            with (out / f"{source}-{f.name}").open("wb") as fh:
                for k in range(copies):
                    fh.write(_UUID.sub(rb"\g<1>%04x" % k, raw))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, action="append")
    ap.add_argument("--buckets", type=int)
    ap.add_argument("--replicate", type=int, metavar="K")
    ap.add_argument("--one", nargs=2, metavar=("DATA", "STEP"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(Path(args.one[0]), args.one[1], args.buckets)))
        return
    datasets = args.data or [SHARED / d for d in DEFAULT]
    tmp = tempfile.TemporaryDirectory(prefix="fhir-bench-")
    if args.replicate:
        datasets = [replicate(args.replicate, Path(tmp.name))]
    for data in datasets:
        print(f"{data}")
        rates = {}
        for step in ("read", "fast", "full"):
            argv = [sys.executable, __file__, "--one", str(data), step]
            if args.buckets:
                argv += ["--buckets", str(args.buckets)]
            out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
            r = json.loads(out)
            rates[step] = r["resources"] / r["cpu"]
            label = "read only" if step == "read" else f"stage + timeline, validate={step}"
            print(
                f"  {label:38s} {r['resources']:>8,} resources  "
                f"{r['resources'] / r['seconds']:>8,.0f}/s wall  {rates[step]:>8,.0f}/s CPU  "
                f"peak RSS {r['rss_mib']:,.0f} MiB  ({r['patients']} patients, "
                f"{r['skipped']} skipped)"
            )
        print(f"  full/fast CPU time ratio {rates['fast'] / rates['full']:.1f}x")


if __name__ == "__main__":
    main()
