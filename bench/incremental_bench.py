"""Incremental scan vs full rescan on a synthetic population with a ~1 % Bulk _since delta.

usage: incremental_bench.py POPULATION WORKDIR [--share 0.01]
Prints: build (first --incremental scan), the incremental scan of the delta, a full rescan
of old + new files (the floor an incremental scan must beat), their ratio, and checks that
both give the same findings by key.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import resource
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from plugin.population.incremental import scan_incremental
from plugin.population.scan import scan_sql
from plugin.rules import load_rules

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
REF = re.compile(rb'"reference":\s*"Patient/([^"]+)"')


def make_delta(src: Path, out: Path, share: float, seed: int = 0) -> tuple[int, int]:
    """Re-send every resource of ``share`` of the patients, newer, plus one new Observation
    each (a day after one of theirs)."""
    pids = [json.loads(line)["id"] for f in sorted(src.glob("Patient.*.ndjson"))
            for line in f.open("rb")]
    chosen = set(random.Random(seed).sample(pids, max(1, int(len(pids) * share))))
    out.mkdir(parents=True)
    n = 0
    extra: dict[str, dict[str, object]] = {}
    for f in sorted(src.glob("*.ndjson")):
        lines = []
        for line in f.open("rb"):
            if f.name.startswith("Patient."):
                r = json.loads(line)
                if r["id"] not in chosen:
                    continue
            else:
                m = REF.search(line)
                if not m or m.group(1).decode() not in chosen:
                    continue
                r = json.loads(line)
            r["meta"] = {"lastUpdated": "2026-10-30T00:00:00Z"}
            if r["resourceType"] == "Observation" and "effectiveDateTime" in r:
                pid = REF.search(line).group(1).decode()
                extra.setdefault(pid, {**r, "id": f"delta-{pid}"})
            lines.append(json.dumps(r))
        if lines:
            (out / f.name).write_text("\n".join(lines) + "\n")
            n += len(lines)
    (out / "Observation.delta.ndjson").write_text(
        "\n".join(json.dumps(r) for r in extra.values()) + "\n")
    return len(chosen), n + len(extra)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("population", type=Path)
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--share", type=float, default=0.01)
    ap.add_argument("--memory-limit", default="1500MB")
    a = ap.parse_args()
    shutil.rmtree(a.workdir, ignore_errors=True)
    a.workdir.mkdir(parents=True)
    rules = load_rules(Path(__file__).resolve().parents[1] / "rules")
    patients, resources = make_delta(a.population, a.workdir / "delta", a.share)
    print(f"delta: {patients} patients, {resources} resources")
    stage = a.workdir / "stage"
    t = time.perf_counter()
    built = scan_incremental(a.population, rules, as_of=AS_OF, stage_dir=stage,
                             memory_limit=a.memory_limit)
    t_build = time.perf_counter() - t
    print(f"build (first --incremental scan): {t_build:.1f} s, "
          f"{built.result.summary.patients} patients, {len(built.result.findings)} findings")
    t = time.perf_counter()
    inc = scan_incremental(a.workdir / "delta", rules, as_of=AS_OF, stage_dir=stage,
                           memory_limit=a.memory_limit)
    t_inc = time.perf_counter() - t
    print(f"incremental scan: {t_inc:.1f} s, re-flattened {inc.reflattened} patients, "
          f"{len(inc.changed)} new/changed, {len(inc.gone)} gone")
    t = time.perf_counter()
    full = scan_sql([a.population, a.workdir / "delta"], rules, as_of=AS_OF,
                    memory_limit=a.memory_limit)
    t_full = time.perf_counter() - t
    print(f"full rescan of old + new (floor): {t_full:.1f} s, {len(full.findings)} findings")
    same = sorted(f.key for f in full.findings) == sorted(f.key for f in inc.result.findings)
    print(f"same findings by key: {same}")
    print(f"ratio full / incremental: {t_full / t_inc:.1f}x")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
