"""PNG plots for the evaluation report (matplotlib, Agg backend, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from plugin.rank import metrics as m


def _roc(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-p, kind="stable")
    ys = y[order]
    tpr = np.r_[0.0, np.cumsum(ys) / max(ys.sum(), 1)]
    fpr = np.r_[0.0, np.cumsum(1 - ys) / max((1 - ys).sum(), 1)]
    return fpr, tpr


def plot_all(out: Path, curves: dict[str, Any], result: dict[str, Any]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = np.asarray(curves["y"], dtype=int)
    p = np.asarray(curves["p"], dtype=float)
    level = np.asarray(curves["level"])
    files = []

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    fpr, tpr = _roc(y, p)
    ax.plot(fpr, tpr, label=f"ranker (AUROC {result['auroc']:.3f})")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="chance")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "roc.png", dpi=100)
    plt.close(fig)
    files.append("roc.png")

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    order = np.argsort(-p, kind="stable")
    tp = np.cumsum(y[order])
    ax.plot(
        tp / max(y.sum(), 1),
        tp / np.arange(1, len(y) + 1),
        label=f"ranker (AUPRC {result['auprc']:.3f})",
    )
    ax.axhline(y.mean(), ls="--", color="grey", label=f"prevalence {y.mean():.3f}")
    ax.set(xlabel="recall", ylabel="precision", title="Precision–recall", ylim=(0, 1.02))
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(out / "pr.png", dpi=100)
    plt.close(fig)
    files.append("pr.png")

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    rel = m.reliability(y, p)
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.plot(
        [r[0] for r in rel],
        [r[1] for r in rel],
        "o-",
        label=f"ranker (Brier {result['brier']:.3f})",
    )
    ax.set(xlabel="mean predicted P(MOD)", ylabel="observed MOD rate", title="Reliability")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=100)
    plt.close(fig)
    files.append("reliability.png")

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ks = np.unique(np.linspace(1, len(y), num=min(len(y), 60)).astype(int))
    ax.plot(ks, [m.ppv_at_k(y, p, k) for k in ks], label="ranker")
    ax.plot(ks, [m.baseline_ppv_at_k(y, level, k) for k in ks], label="rules only (by level)")
    ax.axvline(int(y.sum()), ls=":", color="grey", label="k = number of MODs")
    ax.set(
        xlabel="review budget k (findings reviewed)",
        ylabel="PPV@k",
        title="PPV at budget",
        ylim=(0, 1.02),
    )
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(out / "ppv_at_k.png", dpi=100)
    plt.close(fig)
    files.append("ppv_at_k.png")
    return files
