"""In-window recall and PPV per rule on a noisy synthetic population (issue 11, must-show 3).

    nice .venv/bin/python bench/recall_bench.py                      # 20,000 noisy patients
    nice .venv/bin/python bench/recall_bench.py --patients 2000 --profile default
    nice .venv/bin/python bench/recall_bench.py --data DIR           # an existing population

Generates (or takes) a population with ``dxsafety synth --profile noisy`` (the default profile
when this checkout's synth has no ``noisy``; the output says so), scans it through the one
population pipeline (``plugin.scan.iter_findings``, every catalogue rule) and joins the findings
to ``labels.csv`` on (patient, trigger, index reference):

* **recall** per trigger: planted missed opportunities (``is_mod=1``) whose window closed before
  the data end (index time + the longest ``within`` of the trigger's rules <= as-of) that a
  rule of the trigger flagged; the target is >= 0.98 for every trigger that has planted cases;
  misses are listed by scenario;
* **PPV** per rule: flagged indexes labelled MOD / all flagged, beside the published PPV.

Floor and ratio: the same run reads every NDJSON line with ``orjson.loads`` and nothing else
(the least any scan must do); the scan's time is printed as a multiple of it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from plugin.cli import main as dxsafety  # noqa: E402
from plugin.fhir.read import ReadReport  # noqa: E402
from plugin.rules import load_rules  # noqa: E402
from plugin.scan import iter_findings  # noqa: E402
from plugin.synth.writer import read_labels  # noqa: E402

AS_OF = datetime(2026, 6, 30, tzinfo=UTC)  # dxsafety synth's default --as-of: windows closed
TARGET = 0.98


@dataclass
class RuleStats:
    trigger: str
    title: str
    published: float | None
    within: timedelta
    findings: int = 0
    mods: int = 0
    flagged: set[tuple[str, str]] = field(default_factory=set)  # (patient, index_ref)


def profiles() -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        dxsafety(["synth", "--list-profiles"])
    return out.getvalue()


def generate(data: Path, patients: int, seed: int, profile: str, workers: int) -> float:
    started = time.perf_counter()
    argv = ["synth", "--patients", str(patients), "--seed", str(seed), "--out", str(data)]
    code = dxsafety([*argv, "--profile", profile, "--workers", str(workers)])
    if code != 0:
        sys.exit(f"dxsafety synth exited {code}")
    return time.perf_counter() - started


def parse_floor(data: Path) -> tuple[float, int]:
    """Seconds to read and parse every NDJSON line, and the number of lines."""
    started = time.perf_counter()
    lines = 0
    for f in sorted(data.glob("*.ndjson")):
        with f.open("rb") as fh:
            for line in fh:
                if line.strip():
                    orjson.loads(line)
                    lines += 1
    return time.perf_counter() - started, lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=2027)
    ap.add_argument("--profile", default="noisy")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data", type=Path, help="an existing population (with labels.csv)")
    args = ap.parse_args()

    profile = args.profile
    if args.data is None:
        if not any(line.split()[:1] == [profile] for line in profiles().splitlines()):
            print(f"NOTE: dxsafety synth has no profile {profile!r}; using 'default'")
            profile = "default"
        data = ROOT / "var" / "bench" / f"recall-{profile}-{args.patients}-{args.seed}"
        if not (data / "labels.csv").exists():
            print(f"generating {args.patients} patients ({profile} profile) into {data} …")
            print(
                f"  synth: {generate(data, args.patients, args.seed, profile, args.workers):.1f} s"
            )
    else:
        data = args.data
        profile = "as given"
    labels = read_labels(data / "labels.csv")

    floor_s, lines = parse_floor(data)
    print(f"floor: orjson.loads of {lines} NDJSON lines: {floor_s:.1f} s")

    ruleset = load_rules(ROOT / "rules")
    stats: dict[str, RuleStats] = {}
    for rule in ruleset.rules:
        published = rule.published.ppv if rule.published is not None else None
        stats[rule.id] = RuleStats(rule.trigger or "", rule.title, published, rule.within)
    mod_of = {(lb.patient_id, lb.trigger, lb.index_ref): lb.is_mod for lb in labels}
    report = ReadReport()
    started = time.perf_counter()
    patients = 0
    for _timeline, findings in iter_findings(data, ruleset, as_of=AS_OF, report=report):
        patients += 1
        for f in findings:
            s = stats[f.rule_id]
            s.findings += 1
            s.mods += mod_of.get((f.patient_id, s.trigger, f.index_ref), 0)
            s.flagged.add((f.patient_id, f.index_ref))
    scan_s = time.perf_counter() - started
    print(f"scan: {patients} patients in {scan_s:.1f} s ({patients / scan_s:.0f}/s)")
    print(f"ratio: scan / parse floor = {scan_s / floor_s:.1f}x")
    for line in report.summary_lines(examples=3):
        print(f"  {line}")

    by_trigger: dict[str, list[RuleStats]] = defaultdict(list)
    for s in stats.values():
        by_trigger[s.trigger].append(s)
    print(
        f"\nin-window recall of planted missed opportunities ({profile} profile, target {TARGET})"
    )
    print(
        f"{'trigger':8s} {'planted':>7s} {'in-win':>6s} {'found':>6s} {'recall':>7s}  "
        "misses by scenario"
    )
    failing = []
    for trigger in sorted({lb.trigger for lb in labels if lb.is_mod}):
        rules = by_trigger.get(trigger, [])
        planted = [lb for lb in labels if lb.trigger == trigger and lb.is_mod]
        window = max((r.within for r in rules), default=timedelta(0))
        in_window = [
            lb
            for lb in planted
            if datetime.fromisoformat(lb.index_time.replace("Z", "+00:00")) + window <= AS_OF
        ]
        missed = [
            lb
            for lb in in_window
            if not any((lb.patient_id, lb.index_ref) in r.flagged for r in rules)
        ]
        found = len(in_window) - len(missed)
        recall = found / len(in_window) if in_window else float("nan")
        if not rules or recall < TARGET:
            failing.append(trigger)
        scenarios = Counter(lb.scenario for lb in missed).most_common(4)
        why = ", ".join(f"{n} {sc}" for sc, n in scenarios) if rules else "no rule has this trigger"
        print(f"{trigger:8s} {len(planted):7d} {len(in_window):6d} {found:6d} {recall:7.3f}  {why}")

    print("\nPPV per rule (flagged indexes labelled MOD / flagged)")
    print(f"{'trigger':8s} {'flagged':>7s} {'MOD':>5s} {'PPV':>6s} {'published':>9s}  rule")
    for s in sorted(stats.values(), key=lambda s: (s.trigger, s.title)):
        if not s.findings and s.published is None:
            continue
        ppv = f"{s.mods / s.findings:6.3f}" if s.findings else "     -"
        pub = f"{s.published:.3f}" if s.published is not None else "-"
        print(f"{s.trigger:8s} {s.findings:7d} {s.mods:5d} {ppv} {pub:>9s}  {s.title}")
    print(
        f"\nrecall >= {TARGET} on every planted trigger: "
        + ("yes" if not failing else f"NO ({', '.join(failing)})")
    )


if __name__ == "__main__":
    main()
