"""Ranker benchmark: training time on 1,000,000 rows, scoring throughput, explanation
cost, and the feature pipeline per finding. Prints figures; asserts nothing.

    .venv/bin/python bench/rank_bench.py [--rows 1000000] [--threads 2]

The 1M-row matrix is synthetic but has the real review feature width and categorical
columns (rule findings at that scale would take a population of millions to produce).
"""

from __future__ import annotations

import argparse
import os
import random
import time

import numpy as np

from plugin.rank.features import (
    CATEGORICAL,
    REVIEW_FEATURES,
    VOCABULARIES,
    finding_features,
    realtime_features,
)
from plugin.rank.model import MissedDxRanker
from plugin.timeline.model import Finding
from plugin.timeline.spec import timeline_from_spec


def synthetic_matrix(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(REVIEW_FEATURES)))
    for j, name in enumerate(REVIEW_FEATURES):
        if name in CATEGORICAL:
            X[:, j] = rng.integers(0, len(VOCABULARIES[name]), n)
    X[rng.random(X.shape) < 0.1] = np.nan  # missing values, as real rows have
    logit = (
        -1.5
        + 1.2 * np.nan_to_num(X[:, 0])
        - 0.8 * np.nan_to_num(X[:, 5])
        + 0.5 * (np.nan_to_num(X[:, 10]) > 0)
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def patient_spec(i: int, rng: random.Random) -> dict:
    events: list[dict] = []
    for v in range(20):  # a year or two of background care
        day = -rng.randint(10, 700)
        events.append(
            {
                "t": f"{day}d",
                "setting": rng.choice(["AMB", "AMB", "ED"]),
                "end": "1h",
                "id": f"v{v}",
                "disposition": "home",
                "diagnosis": [rng.choice(["icd10:I10", "icd10:E11.9", "icd10:J06.9"])],
            }
        )
        events.append(
            {
                "t": f"{day}d",
                "kind": "observation",
                "code": "loinc:2345-7",
                "value": rng.randint(70, 200),
                "encounter": f"v{v}",
            }
        )
    events += [
        {
            "t": "0d",
            "setting": "ED",
            "end": "4h",
            "id": "ed",
            "disposition": "home",
            "diagnosis": ["icd10:R42"],
        },
        {
            "t": "1h",
            "kind": "observation",
            "code": "loinc:8310-5",
            "value": 37.0,
            "unit": "Cel",
            "encounter": "ed",
        },
        {"t": "1h", "kind": "observation", "code": "loinc:8867-4", "value": 88, "encounter": "ed"},
        {"t": "2h", "kind": "procedure", "code": "cpt:70450", "encounter": "ed"},
        {"t": "6d", "setting": "IP", "end": "3d", "id": "adm", "diagnosis": ["icd10:I63.9"]},
    ]
    return {
        "patient": {"id": f"b{i}", "birth_date": "1950-01-01", "sex": "female"},
        "events": events,
    }


def bench_features(n: int = 300) -> tuple[float, float, int]:
    rng = random.Random(0)
    tls = [timeline_from_spec(patient_spec(i, rng)) for i in range(n)]
    findings = []
    for tl in tls:
        ed = next(e for e in tl.events if e.source == "Encounter/ed")
        adm = next(e for e in tl.events if e.source == "Encounter/adm")
        findings.append(
            Finding(
                key=tl.patient.id,
                patient_id=tl.patient.id,
                rule_id="r",
                rule_title="SP-1",
                level="high",
                index_ref=ed.source,
                index_start=ed.t,
                index_end=ed.end,
                window_end=ed.stop + (adm.t - ed.t) * 5,
                outcome_ref=adm.source,
                extra={"trigger": "SP-1"},
            )
        )
    t0 = time.perf_counter()
    for tl, f in zip(tls, findings, strict=True):
        finding_features(tl, f)
    per_finding = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for tl in tls:
        realtime_features(tl, "Encounter/ed")
    per_encounter = (time.perf_counter() - t0) / n
    return per_finding, per_encounter, len(tls[0].events)


def bench_synth_features(patients: int) -> None:
    """Feature time on a ``dxsafety synth`` population, with the real rules' findings."""
    import tempfile
    from pathlib import Path

    from plugin.cli import main as cli
    from plugin.fhir.read import ReadReport
    from plugin.fhir.stage import iter_timelines
    from plugin.rank.labels import realtime_candidates
    from plugin.rules import evaluate, load_rules

    with tempfile.TemporaryDirectory() as tmp:
        cli(["synth", "--patients", str(patients), "--seed", "7", "--out", tmp])
        tls = list(iter_timelines(Path(tmp), report=ReadReport()))
    rules = load_rules(Path(__file__).resolve().parents[1] / "rules")
    pairs = [(tl, f) for tl in tls for f in evaluate(rules, tl)]
    events = sum(len(tl.events) for tl in tls) / len(tls)
    t0 = time.perf_counter()
    for tl, f in pairs:
        finding_features(tl, f)
    per_finding = (time.perf_counter() - t0) / max(len(pairs), 1)
    encs = [(tl, e.source) for tl in tls for e in realtime_candidates(tl)]
    t0 = time.perf_counter()
    for tl, ref in encs:
        realtime_features(tl, ref)
    per_enc = (time.perf_counter() - t0) / max(len(encs), 1)
    print(
        f"feature pipeline on synth ({patients} patients, {events:.0f} events/patient): "
        f"{per_finding * 1e3:.2f} ms per finding ({len(pairs)} findings), "
        f"{per_enc * 1e3:.2f} ms per real-time encounter ({len(encs)} encounters)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--synth", type=int, default=1000, help="synth patients (0: skip)")
    args = ap.parse_args()
    print(f"cores visible: {os.cpu_count()}, LightGBM threads: {args.threads}")
    print(f"feature width: {len(REVIEW_FEATURES)} ({len(CATEGORICAL)} categorical)")

    per_finding, per_encounter, n_events = bench_features()
    print(
        f"feature pipeline: {per_finding * 1e3:.2f} ms per finding, {per_encounter * 1e3:.2f} ms "
        f"per real-time encounter (timelines of {n_events} events)"
    )
    if args.synth:
        bench_synth_features(args.synth)

    X, y = synthetic_matrix(args.rows)
    est = MissedDxRanker(
        n_estimators=args.rounds,
        feature_names=REVIEW_FEATURES,
        categorical=tuple(n for n in REVIEW_FEATURES if n in CATEGORICAL),
        num_threads=args.threads,
    )
    t0 = time.perf_counter()
    est.fit(X, y)
    train_s = time.perf_counter() - t0
    print(
        f"training: {args.rows:,} rows x {X.shape[1]} features, {args.rounds} rounds: "
        f"{train_s:.1f} s ({args.rows / train_s:,.0f} rows/s)"
    )

    t0 = time.perf_counter()
    est.predict_proba(X)
    score_s = time.perf_counter() - t0
    print(f"scoring: {args.rows:,} rows in {score_s:.1f} s = {args.rows / score_s:,.0f} rows/s")

    n_exp = min(2000, args.rows)
    t0 = time.perf_counter()
    est.contributions(X[:n_exp])
    exp_s = time.perf_counter() - t0
    print(
        f"explanations (pred_contrib): {n_exp} rows in {exp_s:.2f} s = "
        f"{exp_s / n_exp * 1e3:.3f} ms/row ({score_s / args.rows * 1e6:.1f} us/row to score: "
        f"{(exp_s / n_exp) / (score_s / args.rows):.0f}x)"
    )


if __name__ == "__main__":
    main()
