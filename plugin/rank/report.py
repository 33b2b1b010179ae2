"""``dxsafety evaluate``: score a labelled population and write ``report.md`` + PNG plots.

The rules-only baseline is "rank by rule level, random order within a level" and its
PPV@k is the exact expectation of that random order (:func:`metrics.baseline_ppv_at_k`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from plugin.rank import metrics as m
from plugin.rank.dataset import Collected
from plugin.rank.features import SEXES
from plugin.rank.ranker import Ranker

AGE_BANDS = ((0, 45, "<45"), (45, 65, "45-64"), (65, 80, "65-79"), (80, 200, "80+"))


def _ci(stat: Callable[[np.ndarray], float], groups: list[str], n: int) -> list[float]:
    return list(m.bootstrap_ci(stat, groups, n=n, seed=1))


def _ratio(
    a: Callable[[np.ndarray], float], b: Callable[[np.ndarray], float], r: np.ndarray
) -> float:
    return a(r) / max(b(r), 1e-9)


def evaluate(ranker: Ranker, data: Collected, *, n_boot: int = 500) -> dict[str, Any]:
    rv = data.review
    y = np.asarray(rv.y, dtype=int)
    X = rv.matrix()
    p = ranker.review_probability(X)  # calibrated: the probability reviewers see
    level = np.asarray(rv.level)
    pts = rv.patient
    out: dict[str, Any] = {
        "patients": data.patients,
        "findings": len(y),
        "mod": int(y.sum()),
        "prevalence": float(y.mean()) if len(y) else float("nan"),
        "unlabelled_findings": data.findings_unlabelled,
        "baseline": "rules-only: rank by rule level, random order within a level "
        "(exact expected PPV)",
    }
    if len(y) == 0 or y.min() == y.max():
        out["error"] = "findings are all one class; ranking metrics undefined"
        return out
    out["auroc"] = m.auroc(y, p)
    out["auroc_ci"] = _ci(lambda r: m.auroc(y[r], p[r]), pts, n_boot)
    out["auprc"] = m.average_precision(y, p)
    out["auprc_ci"] = _ci(lambda r: m.average_precision(y[r], p[r]), pts, n_boot)
    out["brier"] = m.brier(y, p)
    out["brier_ci"] = _ci(lambda r: m.brier(y[r], p[r]), pts, n_boot)
    out["reliability"] = m.reliability(y, p)
    budgets = {
        "k = number of true MODs": int(y.sum()),
        "k = 10 % of findings": max(1, round(0.10 * len(y))),
    }
    out["budgets"] = []
    for name, k in budgets.items():
        frac = k / len(y)

        def rk(r: np.ndarray, frac: float = frac) -> float:
            return m.ppv_at_k(y[r], p[r], max(1, round(frac * len(r))))

        def bl(r: np.ndarray, frac: float = frac) -> float:
            return m.baseline_ppv_at_k(y[r], level[r], max(1, round(frac * len(r))))

        ranker_ppv, base_ppv = m.ppv_at_k(y, p, k), m.baseline_ppv_at_k(y, level, k)
        out["budgets"].append(
            {
                "budget": name,
                "k": k,
                "ranker_ppv": ranker_ppv,
                "ranker_ci": _ci(rk, pts, n_boot),
                "rules_only_ppv": base_ppv,
                "rules_only_ci": _ci(bl, pts, n_boot),
                "ratio": ranker_ppv / base_ppv if base_ppv > 0 else float("inf"),
                "ratio_ci": _ci(partial(_ratio, rk, bl), pts, n_boot),
            }
        )
    out["subgroups"] = _subgroups(rv.column("sex"), rv.column("age"), y, p, level)
    out["by_trigger"] = _by_trigger(rv.trigger, y, p)
    out["missed_dx"] = _missed_dx(ranker, X, y, rv.missed_dx, rv.trigger)
    out["realtime"] = _realtime(ranker, data)
    out["_curves"] = {"y": y.tolist(), "p": p.tolist(), "level": level.tolist()}
    return out


def _group_stats(y: np.ndarray, p: np.ndarray, level: np.ndarray) -> dict[str, Any]:
    k = int(y.sum())
    return {
        "n": len(y),
        "mod": k,
        "prevalence": float(y.mean()) if len(y) else None,
        "auroc": m.auroc(y, p) if len(y) else None,
        "ppv_at_k": m.ppv_at_k(y, p, k) if k else None,
        "rules_only_ppv_at_k": m.baseline_ppv_at_k(y, level, k) if k else None,
    }


def _subgroups(
    sex: np.ndarray, age: np.ndarray, y: np.ndarray, p: np.ndarray, level: np.ndarray
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, name in enumerate(SEXES):
        mask = sex == i
        if mask.any():
            out[f"sex={name}"] = _group_stats(y[mask], p[mask], level[mask])
    for lo, hi, name in AGE_BANDS:
        mask = (age >= lo) & (age < hi)
        if mask.any():
            out[f"age {name}"] = _group_stats(y[mask], p[mask], level[mask])
    return out


def _by_trigger(triggers: list[str], y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    t = np.asarray(triggers, dtype=object)
    out = {}
    for name in sorted(set(triggers)):
        mask = t == name
        out[name or "?"] = {
            "n": int(mask.sum()),
            "rules_only_ppv": float(y[mask].mean()),
            "auroc": m.auroc(y[mask], p[mask]),
        }
    return out


def _missed_dx(
    ranker: Ranker, X: np.ndarray, y: np.ndarray, dx: list[str], triggers: list[str]
) -> dict[str, Any]:
    mask = (y == 1) & (np.asarray(dx, dtype=object) != "")
    if not mask.any() or "missed_dx" not in ranker.heads:
        return {"n": int(mask.sum())}
    trig = [t for t, keep in zip(triggers, mask, strict=True) if keep]
    top = ranker.missed_dx_top3(X[mask], trig)
    ranked = [[d for d, _ in row] for row in top]
    truth = [d for d, keep in zip(dx, mask, strict=True) if keep]
    return {
        "n": int(mask.sum()),
        "top1": m.topk_accuracy(truth, ranked, 1),
        "top3": m.topk_accuracy(truth, ranked, 3),
    }


def _realtime(ranker: Ranker, data: Collected) -> dict[str, Any]:
    head = ranker.heads.get("realtime")
    rt = data.realtime
    if head is None or len(rt) == 0:
        return {}
    X = rt.matrix()
    proba = head.predict_proba(X)
    labels = np.asarray(rt.y, dtype=object)
    out: dict[str, Any] = {"encounters": len(labels)}
    for j, c in enumerate(head.classes_):
        yy = (labels == c).astype(int)
        if c != "none" and 0 < yy.sum() < len(yy):
            out[str(c)] = {
                "n_pos": int(yy.sum()),
                "auroc": m.auroc(yy, proba[:, j]),
                "brier": m.brier(yy, proba[:, j]),
            }
    return out


def write_report(out_dir: Path, result: dict[str, Any], model_dir: Path) -> Path:
    """report.md, metrics.json and the PNG plots."""
    from plugin.rank.plots import plot_all

    out_dir.mkdir(parents=True, exist_ok=True)
    curves = result.pop("_curves", None)
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    pngs = plot_all(out_dir, curves, result) if curves else []
    (out_dir / "report.md").write_text(_markdown(result, model_dir, pngs))
    return out_dir / "report.md"


def _f(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return "nan" if np.isnan(v) else f"{v:.3f}"
    return str(v)


def _ci_s(ci: list[float]) -> str:
    return f"({_f(ci[0])}–{_f(ci[1])})"


def _markdown(r: dict[str, Any], model_dir: Path, pngs: list[str]) -> str:
    lines = [
        "# Ranker evaluation",
        "",
        f"Model `{model_dir}` on {r['patients']} patients, {r['findings']} rule findings, "
        f"{r['mod']} true MODs (prevalence {_f(r['prevalence'])}); "
        f"{r['unlabelled_findings']} findings had no label row (counted as non-MOD).",
        "",
        f"Baseline: {r['baseline']}. 95 % CIs: bootstrap over patients (500 resamples).",
        "",
    ]
    if "error" in r:
        return "\n".join([*lines, f"**{r['error']}**", ""])
    lines += [
        "## Discrimination and calibration",
        "",
        "| metric | value | 95 % CI |",
        "|---|---|---|",
        f"| AUROC | {_f(r['auroc'])} | {_ci_s(r['auroc_ci'])} |",
        f"| AUPRC | {_f(r['auprc'])} | {_ci_s(r['auprc_ci'])} |",
        f"| Brier | {_f(r['brier'])} | {_ci_s(r['brier_ci'])} |",
        "",
        "## PPV at the review budget",
        "",
        "| budget | k | ranker PPV@k | rules-only PPV@k | ratio |",
        "|---|---|---|---|---|",
    ]
    for b in r["budgets"]:
        lines.append(
            f"| {b['budget']} | {b['k']} | {_f(b['ranker_ppv'])} {_ci_s(b['ranker_ci'])} | "
            f"{_f(b['rules_only_ppv'])} {_ci_s(b['rules_only_ci'])} | "
            f"{_f(b['ratio'])} {_ci_s(b['ratio_ci'])} |"
        )
    lines += [
        "",
        "## Subgroups",
        "",
        "| group | n | MOD | prevalence | AUROC | PPV@k | rules-only PPV@k |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, g in r["subgroups"].items():
        lines.append(
            f"| {name} | {g['n']} | {g['mod']} | {_f(g['prevalence'])} | "
            f"{_f(g['auroc'])} | {_f(g['ppv_at_k'])} | {_f(g['rules_only_ppv_at_k'])} |"
        )
    lines += [
        "",
        "## By trigger (rules-only PPV = share of MODs among its findings)",
        "",
        "| trigger | n | rules-only PPV | ranker AUROC within trigger |",
        "|---|---|---|---|",
    ]
    for name, g in r["by_trigger"].items():
        lines.append(f"| {name} | {g['n']} | {_f(g['rules_only_ppv'])} | {_f(g['auroc'])} |")
    md = r["missed_dx"]
    lines += [
        "",
        "## Likely missed diagnosis (true MODs)",
        "",
        f"n = {md.get('n')}, top-1 accuracy {_f(md.get('top1'))}, "
        f"top-3 accuracy {_f(md.get('top3'))}",
        "",
    ]
    rt = r.get("realtime") or {}
    if rt:
        lines += [
            "## Real-time risk (P(diagnosis within 30 d) at ED/clinic encounters)",
            "",
            f"{rt.get('encounters')} encounters.",
            "",
            "| diagnosis | positives | AUROC (one-vs-rest) | Brier |",
            "|---|---|---|---|",
        ]
        for k, v in rt.items():
            if isinstance(v, dict):
                lines.append(f"| {k} | {v['n_pos']} | {_f(v['auroc'])} | {_f(v['brier'])} |")
        lines.append("")
    lines += (
        ["## Plots", ""]
        + [f"![{p}]({p})" for p in pngs]
        + [
            "",
            "Synthetic data only: these figures say how well the ranker recovers the "
            "generator's planted signal, not how it would perform on real adjudicated cases.",
            "",
        ]
    )
    return "\n".join(lines)
