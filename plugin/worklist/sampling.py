"""Sampling mode per rule: which cases are reviewed so that PPV can be estimated honestly.

Ranked triage (the queue's order) finds misses fast but says nothing about a rule's PPV: the
top of a ranked queue is richer than the rule's population. A **sample** is drawn from all of
a rule's cases not sampled before, independently of the score (``random``: simple random
sample, inclusion probability n/N) or within score bands (``stratified``: n_h/N_h in band h,
so low-score cases are not starved). Each drawn case records ``selection``,
``inclusion_prob`` and its band; cases already reviewed through triage keep their review (a
review does not depend on how the case was picked) and count for the sample once drawn.

Successive draws sample the cases not drawn before; each draw is a valid design of the
remaining cases, and the estimator weights each case by its own draw's 1/π (see
:mod:`plugin.worklist.stats`).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from plugin.errors import SamplingError
from plugin.worklist import tables as t
from plugin.worklist.store import Store, now

SELECTIONS = ("ranked", "random", "stratified", "cds")
MODES = ("random", "stratified")
DEFAULT_BANDS = (0.2, 0.5)  # score cut points: bands [0, .2), [.2, .5), [.5, 1]


@dataclass(frozen=True, slots=True, kw_only=True)
class Mode:
    rule_id: str
    mode: str
    size: int | None
    fraction: float | None
    bands: tuple[float, ...] = DEFAULT_BANDS


def set_mode(store: Store, mode: Mode, *, user_id: int | None, username: str) -> None:
    """Set (or replace) a rule's sampling mode; an audited admin action."""
    if mode.mode not in MODES:
        raise SamplingError(f"mode must be one of {', '.join(MODES)}")
    if (mode.size is None) == (mode.fraction is None):
        raise SamplingError("give a sample size or a fraction, not both")
    if mode.size is not None and mode.size < 1:
        raise SamplingError("the sample size must be at least 1")
    if mode.fraction is not None and not 0 < mode.fraction <= 1:
        raise SamplingError("the fraction must be in (0, 1]")
    if list(mode.bands) != sorted(set(mode.bands)) or any(not 0 < b < 1 for b in mode.bands):
        raise SamplingError("score bands must be increasing cut points between 0 and 1")
    sm = t.sampling_modes
    values = {"mode": mode.mode, "size": mode.size, "fraction": mode.fraction,
              "bands": list(mode.bands), "updated_by": username, "updated_at": now()}  # fmt: skip
    with store.engine.begin() as conn:
        if conn.execute(sa.select(sm.c.rule_id).where(sm.c.rule_id == mode.rule_id)).first():
            conn.execute(sm.update().where(sm.c.rule_id == mode.rule_id).values(**values))
        else:
            conn.execute(sm.insert().values(rule_id=mode.rule_id, **values))
        Store.audit(conn, "sampling_mode", user_id=user_id, username=username,
                    rule_id=mode.rule_id, mode=mode.mode, size=mode.size,
                    fraction=mode.fraction, bands=list(mode.bands))  # fmt: skip


def get_modes(store: Store) -> dict[str, Mode]:
    sm = t.sampling_modes
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(sm)).all()
    return {r.rule_id: Mode(rule_id=r.rule_id, mode=r.mode, size=r.size, fraction=r.fraction,
                            bands=tuple(r.bands)) for r in rows}  # fmt: skip


def band_of(score: float | None, bands: Sequence[float]) -> str:
    if score is None:
        return "unscored"
    lo = 0.0
    for cut in bands:
        if score < cut:
            return f"{lo:g}-{cut:g}"
        lo = cut
    return f"{lo:g}-1"


def _allocate(sizes: dict[str, int], n: int) -> dict[str, int]:
    """Proportional allocation of ``n`` over strata, at least 1 per non-empty stratum when
    n allows (largest remainder)."""
    total = sum(sizes.values())
    raw = {h: n * s / total for h, s in sizes.items()}
    least = 1 if n >= len(sizes) else 0
    out = {h: min(sizes[h], max(least, math.floor(v))) for h, v in raw.items()}
    rest = sorted(sizes, key=lambda h: raw[h] - math.floor(raw[h]), reverse=True)
    i = 0
    while sum(out.values()) < min(n, total) and i < 10 * len(rest) + n:
        h = rest[i % len(rest)]
        if out[h] < sizes[h]:
            out[h] += 1
        i += 1
    return out


def draw(store: Store, rule_id: str, *, user_id: int | None, username: str,
         rng: random.Random | None = None) -> int:  # fmt: skip
    """Draw the rule's sample now, by its mode; returns how many cases were drawn. Audited."""
    mode = get_modes(store).get(rule_id)
    if mode is None:
        raise SamplingError(f"no sampling mode set for rule {rule_id}")
    rng = rng or random.SystemRandom()
    f = t.findings
    with store.engine.begin() as conn:
        frame = conn.execute(
            sa.select(f.c.id, f.c.score).where(f.c.rule_id == rule_id)
            .where(f.c.selection.in_(("ranked", "cds"))).where(f.c.sampled_at.is_(None))
            .order_by(f.c.id)).all()  # fmt: skip
        if not frame:
            raise SamplingError(f"rule {rule_id} has no cases left to sample")
        n = mode.size if mode.size is not None else max(1, round(mode.fraction * len(frame)))  # type: ignore[operator]
        n = min(n, len(frame))
        strata: dict[str, list[int]] = defaultdict(list)
        for row in frame:
            key = band_of(row.score, mode.bands) if mode.mode == "stratified" else "all"
            strata[key].append(row.id)
        take = _allocate({h: len(ids) for h, ids in strata.items()}, n)
        at = now()
        drawn = 0
        for h, ids in strata.items():
            k = take.get(h, 0)
            if not k:
                continue
            chosen = rng.sample(ids, k)
            conn.execute(f.update().where(f.c.id.in_(chosen)).values(
                selection=mode.mode, inclusion_prob=k / len(ids),
                sample_stratum=h, sampled_at=at))  # fmt: skip
            drawn += k
        Store.audit(conn, "sample_draw", user_id=user_id, username=username, rule_id=rule_id,
                    mode=mode.mode, drawn=drawn, frame=len(frame),
                    strata={h: [take.get(h, 0), len(v)] for h, v in strata.items()})  # fmt: skip
    return drawn
