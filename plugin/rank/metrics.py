"""Ranking and calibration metrics in plain NumPy, with patient-level bootstrap CIs.

The rules-only baseline orders findings by rule level (critical first) and, within a
level, in random order; :func:`baseline_ppv_at_k` returns the **exact expected** PPV of
that random order (the level's MOD prevalence fills the partly-used level), so the
baseline needs no random seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray
from scipy.stats import rankdata

F = NDArray[np.float64]


def auroc(y: Sequence[int] | NDArray[np.int_], s: Sequence[float] | F) -> float:
    """Area under the ROC curve (Mann–Whitney, ties count half); nan if one class."""
    y_arr, s_arr = np.asarray(y, dtype=bool), np.asarray(s, dtype=float)
    pos, neg = int(y_arr.sum()), int((~y_arr).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(s_arr)
    return float((ranks[y_arr].sum() - pos * (pos + 1) / 2) / (pos * neg))


def average_precision(y: Sequence[int] | NDArray[np.int_], s: Sequence[float] | F) -> float:
    """Area under the precision–recall curve (average precision, step-wise)."""
    y_arr, s_arr = np.asarray(y, dtype=float), np.asarray(s, dtype=float)
    if y_arr.sum() == 0:
        return float("nan")
    order = np.argsort(-s_arr, kind="stable")
    ys, ss = y_arr[order], s_arr[order]
    tp = np.cumsum(ys)
    # evaluate at the last position of each group of tied scores
    last = np.r_[np.nonzero(np.diff(ss))[0], len(ss) - 1]
    precision = tp[last] / (last + 1)
    recall = tp[last] / y_arr.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def ppv_at_k(y: Sequence[int] | NDArray[np.int_], s: Sequence[float] | F, k: int) -> float:
    """Share of true MODs among the ``k`` highest scores."""
    y_arr = np.asarray(y, dtype=float)
    k = max(1, min(int(k), len(y_arr)))
    order = np.argsort(-np.asarray(s, dtype=float), kind="stable")
    return float(y_arr[order[:k]].mean())


def baseline_ppv_at_k(
    y: Sequence[int] | NDArray[np.int_], level: Sequence[int] | NDArray[np.int_], k: int
) -> float:
    """Expected PPV@k of rules-only review: by level (higher first), random within level."""
    y_arr, lv = np.asarray(y, dtype=float), np.asarray(level)
    k = max(1, min(int(k), len(y_arr)))
    left, hits = k, 0.0
    for value in sorted(set(lv.tolist()), reverse=True):
        mask = lv == value
        n = int(mask.sum())
        take = min(left, n)
        hits += take * float(y_arr[mask].mean())
        left -= take
        if left == 0:
            break
    return hits / k


def brier(y: Sequence[int] | NDArray[np.int_], p: Sequence[float] | F) -> float:
    y_arr, p_arr = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    return float(np.mean((p_arr - y_arr) ** 2))


def reliability(
    y: Sequence[int] | NDArray[np.int_], p: Sequence[float] | F, bins: int = 10
) -> list[tuple[float, float, int]]:
    """(mean predicted, observed rate, n) per equal-width probability bin (empty bins left out)."""
    y_arr, p_arr = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    idx = np.minimum((p_arr * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        if m.any():
            out.append((float(p_arr[m].mean()), float(y_arr[m].mean()), int(m.sum())))
    return out


def topk_accuracy(truth: Sequence[str], ranked: Sequence[Sequence[str]], k: int) -> float:
    if not truth:
        return float("nan")
    return float(np.mean([t in list(r)[:k] for t, r in zip(truth, ranked, strict=True)]))


def bootstrap_ci(
    stat: Callable[[NDArray[np.int_]], float],
    groups: Sequence[str],
    *,
    n: int = 500,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile CI of ``stat(row_indices)`` resampling **patients** (rows of one patient
    stay together, as the split does)."""
    rng = np.random.default_rng(seed)
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    order = np.argsort(inverse, kind="stable")  # rows grouped by patient
    counts = np.bincount(inverse)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    values = []
    for _ in range(n):
        pick = rng.integers(0, len(counts), len(counts))
        sizes = counts[pick]
        base = np.repeat(starts[pick] - np.r_[0, np.cumsum(sizes)[:-1]], sizes)
        rows = order[base + np.arange(int(sizes.sum()))]
        v = stat(rows)
        if not np.isnan(v):
            values.append(v)
    if not values:
        return float("nan"), float("nan")
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def weighted_auroc(y: Sequence[int] | NDArray[np.int_], s: Sequence[float] | F,
                   w: Sequence[float] | F | None = None) -> float:
    """AUROC with case weights (design-based: each case stands for ``w`` cases); equals
    :func:`auroc` when the weights are equal. Ties count half."""
    if w is None:
        return auroc(y, s)
    y_arr = np.asarray(y, dtype=bool)
    s_arr, w_arr = np.asarray(s, dtype=float), np.asarray(w, dtype=float)
    wp, wn = w_arr[y_arr].sum(), w_arr[~y_arr].sum()
    if wp == 0 or wn == 0:
        return float("nan")
    order = np.argsort(s_arr, kind="stable")
    s_o, y_o, w_o = s_arr[order], y_arr[order], w_arr[order]
    total = 0.0
    neg_below = 0.0
    i = 0
    while i < len(s_o):  # walk groups of tied scores
        j = i
        while j < len(s_o) and s_o[j] == s_o[i]:
            j += 1
        pos_w = w_o[i:j][y_o[i:j]].sum()
        neg_w = w_o[i:j][~y_o[i:j]].sum()
        total += pos_w * (neg_below + neg_w / 2)
        neg_below += neg_w
        i = j
    return float(total / (wp * wn))


def weighted_brier(y: Sequence[int] | NDArray[np.int_], p: Sequence[float] | F,
                   w: Sequence[float] | F | None = None) -> float:
    y_arr, p_arr = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    w_arr = np.ones(len(y_arr)) if w is None else np.asarray(w, dtype=float)
    return float(np.sum(w_arr * (p_arr - y_arr) ** 2) / np.sum(w_arr))
