"""``dxsafety train`` and ``dxsafety evaluate``: fit the LightGBM ranker on labelled FHIR
data, and judge a model on another labelled population (report.md + PNG plots)."""

from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from plugin.cli.ruleargs import add_rules_arguments, load_ruleset, roots_of
from plugin.errors import ExitCode, ModelError, fatal


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    t = sub.add_parser("train", help="train the ranker on labelled FHIR data (dxsafety synth)")
    _common(t)
    t.add_argument("--out", type=Path, required=True, help="model directory to write")
    t.add_argument("--seed", type=int, default=0, help="LightGBM seed (default 0)")
    t.add_argument("--n-estimators", type=int, default=300, help="boosting rounds (default 300)")
    t.set_defaults(handler=run_train)
    e = sub.add_parser("evaluate", help="judge a model on labelled data: report.md + plots")
    _common(e)
    e.add_argument("--model", type=Path, required=True, help="model directory (dxsafety train)")
    e.add_argument("--out", type=Path, required=True, help="report directory to write")
    e.add_argument("--bootstrap", type=int, default=500, help="bootstrap resamples (default 500)")
    e.set_defaults(handler=run_evaluate)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        action="append",
        help="directory or file of FHIR NDJSON (Bulk layout); may be repeated",
    )
    p.add_argument("--labels", type=Path, required=True, help="labels.csv (dxsafety synth)")
    add_rules_arguments(p)
    p.add_argument("--as-of", help="time that closes absence windows (default now, UTC)")


def _as_of(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _load(args: argparse.Namespace, rule_triggers: dict[str, str] | None = None) -> Any:
    """Rules, labels and collected rows for ``args``."""
    from plugin.rank.dataset import collect_population
    from plugin.rank.labels import read_labels
    from plugin.rules import evaluate

    for path in [*args.data, args.labels, *args.rules]:
        if not path.exists():
            fatal(f"{path}: not found", ExitCode.INPUT_NOT_FOUND)
    ruleset = load_ruleset(args)
    try:
        labels = read_labels(args.labels)
    except ModelError as exc:
        fatal(str(exc), ExitCode.INPUT_UNREADABLE)
    as_of = _as_of(args.as_of)
    triggers = dict(rule_triggers or {}) | {r.id: r.trigger for r in ruleset.rules if r.trigger}
    data = collect_population(
        args.data,
        lambda tl: evaluate(ruleset, tl, as_of=as_of),
        labels,
        rule_triggers=triggers,
    )
    for line in data.report.summary_lines():
        print(line, file=sys.stderr)
    return ruleset, triggers, as_of, data


def run_train(args: argparse.Namespace) -> int:
    import lightgbm
    import numpy
    import sklearn

    from plugin.rank.dataset import fingerprint
    from plugin.rank.ranker import save_model
    from plugin.rank.training import TrainConfig, model_card, train_heads

    started = time.perf_counter()
    ruleset, triggers, as_of, data = _load(args)
    cfg = TrainConfig(seed=args.seed, n_estimators=args.n_estimators)
    try:
        heads, metrics = train_heads(data, cfg)
    except ModelError as exc:
        fatal(str(exc), ExitCode.MODEL_INVALID)
    meta = {
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "fingerprint": fingerprint([*args.data, args.labels, *roots_of(args)]),
        "data_fingerprint": fingerprint(args.data),
        "inputs": {
            "data": [str(p) for p in args.data],
            "labels": str(args.labels),
            "rules": [str(root) for root in roots_of(args)],
            "as_of": as_of.isoformat(),
        },
        "rule_triggers": triggers,
        "rules": len(ruleset.rules),
        "patients": data.patients,
        "config": {
            "seed": cfg.seed,
            "n_estimators": cfg.n_estimators,
            "learning_rate": cfg.learning_rate,
            "num_leaves": cfg.num_leaves,
            "min_child_samples": cfg.min_child_samples,
            "num_threads": cfg.num_threads,
        },
        "versions": {
            "lightgbm": lightgbm.__version__,
            "numpy": numpy.__version__,
            "scikit-learn": sklearn.__version__,
            "python": platform.python_version(),
        },
        "label_join": "(patient_id, index_ref, trigger), else (patient_id, index_ref); "
        "a finding with no label row is a non-MOD",
    }
    save_model(args.out, heads, meta, metrics, model_card(meta, metrics))
    rows = metrics["rows"]["review"]
    print(
        f"trained on {data.patients} patients: {rows['train']} findings "
        f"({rows['mod_train']} MOD), validation {rows['validation']} "
        f"({rows['mod_validation']} MOD); {data.findings_unlabelled} findings without a "
        f"label row (non-MOD); heads: {', '.join(heads)}"
    )
    val = metrics.get("review_validation")
    if val:
        print(
            f"validation (held-out patients): AUROC {val['auroc']:.3f}, AUPRC "
            f"{val['auprc']:.3f}, PPV@{val['k']} {val['ppv_at_k']:.3f} vs rules-only "
            f"{val['rules_only_ppv_at_k']:.3f}"
        )
    print(f"model written to {args.out} in {time.perf_counter() - started:.1f} s")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from plugin.rank import load_model
    from plugin.rank.dataset import fingerprint
    from plugin.rank.report import evaluate, write_report

    try:
        ranker = load_model(args.model)
    except ModelError as exc:
        fatal(str(exc), ExitCode.MODEL_INVALID)
    _, _, _, data = _load(args, ranker.rule_triggers)
    result = evaluate(ranker, data, n_boot=args.bootstrap)
    result["same_data_as_training"] = fingerprint(args.data) == ranker.meta.get("data_fingerprint")
    if result["same_data_as_training"]:
        print("warning: evaluating on the training data; figures are optimistic", file=sys.stderr)
    report = write_report(args.out, result, args.model)
    if "error" in result:
        print(f"{report}: {result['error']}")
        return 0
    print(
        f"{result['findings']} findings, {result['mod']} MOD: AUROC {result['auroc']:.3f} "
        f"({result['auroc_ci'][0]:.3f}-{result['auroc_ci'][1]:.3f}), AUPRC "
        f"{result['auprc']:.3f}, Brier {result['brier']:.3f}"
    )
    for b in result["budgets"]:
        print(
            f"{b['budget']} (k={b['k']}): ranker PPV {b['ranker_ppv']:.3f}, rules-only "
            f"{b['rules_only_ppv']:.3f}, ratio {b['ratio']:.2f}"
        )
    print(f"report: {report}")
    return 0
