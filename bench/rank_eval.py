"""The issue-level ranker evaluation: train on one synthetic population, judge on another.

    .venv/bin/python bench/rank_eval.py --train 15000 --test 10000

Generates both populations (different seeds), trains, evaluates, and prints AUROC,
AUPRC, PPV@k against the rules-only baseline and the per-trigger rules-only PPV.
The full report (Markdown + PNG plots) is in OUT/report/.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DXS = str(ROOT / ".venv" / "bin" / "dxsafety")


def step(*argv: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([DXS, *argv], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=15000)
    ap.add_argument("--test", type=int, default=10000)
    ap.add_argument("--out", type=Path, default=ROOT / "var" / "eval")
    args = ap.parse_args()
    out: Path = args.out
    for name, n, seed in (("train", args.train, 1), ("test", args.test, 2)):
        if not (out / name / "labels.csv").exists():
            secs = step(
                "synth", "--patients", str(n), "--seed", str(seed), "--out", str(out / name)
            )
            print(f"synth {name}: {secs:.0f} s")
    if not (out / "model" / "MODEL_CARD.md").exists():
        secs = step(
            "train",
            "--data",
            str(out / "train"),
            "--labels",
            str(out / "train" / "labels.csv"),
            "--out",
            str(out / "model"),
        )
        print(f"train: {secs:.0f} s")
    secs = step(
        "evaluate",
        "--model",
        str(out / "model"),
        "--data",
        str(out / "test"),
        "--labels",
        str(out / "test" / "labels.csv"),
        "--out",
        str(out / "report"),
    )
    print(f"evaluate: {secs:.0f} s")
    m = json.loads((out / "report" / "metrics.json").read_text())
    print(
        json.dumps(
            {k: m[k] for k in m if k in ("auroc", "auprc", "brier", "budgets", "findings", "mods")},
            indent=1,
        )[:4000]
    )


if __name__ == "__main__":
    main()
