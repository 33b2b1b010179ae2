"""``dxsafety train``, ``dxsafety promote`` and ``dxsafety evaluate``: fit the LightGBM
ranker on labelled FHIR data (synthetic truth or reviewed labels with design weights),
promote it only when it is not worse than the current model on a fixed validation set, and
judge a model on another labelled population (report.md + PNG plots).

    dxsafety train --data DIR --labels reviewed.csv --base PRIOR_MODEL --out NEW \
        --promote-to CURRENT --validation-data VDIR --validation-labels VLABELS

writes NEW, compares it with CURRENT on the validation set
(:func:`plugin.rank.promote.compare`) and copies it over CURRENT only when it is not worse;
exit code 0 either way, the decision is printed and stored in NEW/PROMOTION.json.
"""

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
    t.add_argument("--base", type=Path, metavar="MODEL",
                   help="start from this model (the synthetic prior): the review head boosts "
                   "--base-rounds more rounds on the labels; heads the labels cannot train "
                   "are kept")
    t.add_argument("--base-rounds", type=int, default=100,
                   help="rounds added to --base (default 100)")
    t.add_argument("--site", action="append", default=[],
                   help="site name(s) of the training data, for the model card")
    t.add_argument("--gate-data", type=Path, action="append", default=[],
                   help="another site's FHIR data: the real-time card gate is decided there "
                   "(cross-site) instead of on the held-out patients")
    _promotion_arguments(t, required=False)
    t.set_defaults(handler=run_train)
    pr = sub.add_parser("promote", help="promote a trained model when it is not worse than "
                        "the current one on a fixed validation set")
    pr.add_argument("candidate", type=Path, help="model directory (dxsafety train)")
    add_rules_arguments(pr)
    pr.add_argument("--as-of", help="time that closes absence windows (default now, UTC)")
    _promotion_arguments(pr, required=True)
    pr.set_defaults(handler=run_promote)
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


def _promotion_arguments(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--promote-to", type=Path, metavar="DIR", required=required,
                   help="the current model directory: replaced only when the new model is not "
                   "worse on the validation set")
    p.add_argument("--validation-data", type=Path, action="append", default=[],
                   help="FHIR data of the fixed validation set (repeat; pairs with "
                   "--validation-labels in order)")
    p.add_argument("--validation-labels", type=Path, action="append", default=[],
                   help="labels of the validation set: a held-out reviewed sample and/or "
                   "synthetic labels.csv")
    p.add_argument("--margin", type=float, default=0.005,
                   help="AUROC the new model may lose and still be promoted (default 0.005)")


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

    from plugin.rank import load_model
    from plugin.rank.dataset import collect_population, fingerprint
    from plugin.rank.ranker import save_model
    from plugin.rank.training import TrainConfig, card_gate, model_card, train_heads

    started = time.perf_counter()
    if args.promote_to is not None:
        _check_validation(args)
    base = None
    if args.base is not None:
        try:
            base = load_model(args.base)
        except ModelError as exc:
            fatal(str(exc), ExitCode.MODEL_INVALID)
    ruleset, triggers, as_of, data = _load(args, base.rule_triggers if base else None)
    cfg = TrainConfig(seed=args.seed, n_estimators=args.n_estimators,
                      base_rounds=args.base_rounds)
    try:
        heads, metrics = train_heads(data, cfg, base=base)
    except ModelError as exc:
        fatal(str(exc), ExitCode.MODEL_INVALID)
    if args.gate_data and "realtime" in heads:
        for path in args.gate_data:
            if not path.exists():
                fatal(f"{path}: not found", ExitCode.INPUT_NOT_FOUND)
        other = collect_population(args.gate_data, lambda tl: [], {})
        metrics["cards"] = {"realtime": card_gate(
            heads["realtime"], other.realtime, None,
            basis="cross-site: " + ", ".join(str(p) for p in args.gate_data))}
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
        "label_join": "reviewed labels: key, else (patient_id, rule_id, index_ref); a "
        "finding with no row is unlabelled and left out"
        if data.reviewed
        else "(patient_id, index_ref, trigger), else (patient_id, index_ref); "
        "a finding with no label row is a non-MOD",
        "training_data": _training_data(args, data, base),
    }
    save_model(args.out, heads, meta, metrics, model_card(meta, metrics))
    rows = metrics["rows"]["review"]
    what = "unreviewed, left out" if data.reviewed else "non-MOD"
    print(
        f"trained on {data.patients} patients: {rows['train']} findings "
        f"({rows['mod_train']} MOD), validation {rows['validation']} "
        f"({rows['mod_validation']} MOD); {data.findings_unlabelled} findings without a "
        f"label row ({what}); heads: {', '.join(heads)}"
    )
    gate = metrics.get("cards", {}).get("realtime")
    if gate:
        print(f"real-time card gate: {gate['status']} ({gate['basis']})")
    val = metrics.get("review_validation")
    if val:
        print(
            f"validation (held-out patients): AUROC {val['auroc']:.3f}, AUPRC "
            f"{val['auprc']:.3f}, PPV@{val['k']} {val['ppv_at_k']:.3f} vs rules-only "
            f"{val['rules_only_ppv_at_k']:.3f}"
        )
    print(f"model written to {args.out} in {time.perf_counter() - started:.1f} s")
    if args.promote_to is not None:
        _decide(args, args.out)
    return 0


def _training_data(args: argparse.Namespace, data: Any, base: Any) -> dict[str, Any]:
    from plugin.rank.labels import read_labels

    out: dict[str, Any] = {
        "kind": "reviewed" if data.reviewed else "synthetic",
        "sites": list(args.site),
        "findings": len(data.review),
        "unlabelled": data.findings_unlabelled,
    }
    if data.reviewed:
        labels = read_labels(args.labels)
        rows = [r for rs in labels.values() for r in rs]
        dates = sorted(r.reviewed_at for r in rows if r.reviewed_at)
        by: dict[str, int] = {}
        for r in rows:
            by[r.selection] = by.get(r.selection, 0) + 1
        out |= {
            "reviewed_findings": len(data.review),
            "label_rows": len(rows),
            "by_selection": by,
            "reviewed_from": dates[0] if dates else "",
            "reviewed_to": dates[-1] if dates else "",
        }
    if base is not None:
        out["base"] = {
            "model_version": base.version,
            "path": str(args.base),
            "training_data": base.meta.get("training_data", {"kind": "synthetic"}),
            "patients": base.meta.get("patients"),
        }
        out["base_rounds"] = args.base_rounds
    return out


def _check_validation(args: argparse.Namespace) -> None:
    if not args.validation_data or len(args.validation_data) != len(args.validation_labels):
        fatal("--promote-to needs --validation-data and --validation-labels in pairs",
              ExitCode.USAGE)
    for path in [*args.validation_data, *args.validation_labels]:
        if not path.exists():
            fatal(f"{path}: not found", ExitCode.INPUT_NOT_FOUND)


def _decide(args: argparse.Namespace, candidate: Path) -> None:
    from plugin.rank import load_model
    from plugin.rank.dataset import collect_population
    from plugin.rank.labels import read_labels
    from plugin.rank.promote import compare, merge, promote
    from plugin.rules import evaluate

    ruleset = load_ruleset(args)
    as_of = _as_of(args.as_of)
    try:
        triggers = load_model(candidate).rule_triggers
    except ModelError as exc:
        fatal(str(exc), ExitCode.MODEL_INVALID)
    triggers = triggers | {r.id: r.trigger for r in ruleset.rules if r.trigger}
    parts = []
    for data, labels_path in zip(args.validation_data, args.validation_labels, strict=True):
        try:
            labels = read_labels(labels_path)
        except ModelError as exc:
            fatal(str(exc), ExitCode.INPUT_UNREADABLE)
        parts.append(collect_population([data], lambda tl: evaluate(ruleset, tl, as_of=as_of),
                                        labels, rule_triggers=triggers, realtime=False))
    try:
        decision = compare(candidate, args.promote_to, merge(parts), margin=args.margin)
    except ModelError as exc:
        fatal(str(exc), ExitCode.MODEL_INVALID)
    promote(candidate, args.promote_to, decision)
    c = decision.candidate
    print(f"candidate {c.model_version}: AUROC {c.auroc:.3f}, Brier {c.brier:.3f} on "
          f"{c.n} validation findings ({c.n_mod} MOD)")
    if decision.current is not None:
        cur = decision.current
        print(f"current {cur.model_version}: AUROC {cur.auroc:.3f}, Brier {cur.brier:.3f}")
    verdict = "PROMOTED" if decision.promoted else "NOT PROMOTED"
    print(f"{verdict} -> {args.promote_to}: {decision.reason}")


def run_promote(args: argparse.Namespace) -> int:
    _check_validation(args)
    if not (args.candidate / "model.json").is_file():
        fatal(f"{args.candidate}: not a model directory", ExitCode.INPUT_NOT_FOUND)
    _decide(args, args.candidate)
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
