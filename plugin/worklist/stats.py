"""Dashboard figures: PPV per rule with a Wilson 95 % interval, reviewer agreement (Cohen's
kappa on the MOD judgement), and CDS Hooks card outcomes."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from plugin.worklist import tables as t
from plugin.worklist.saferdx import final_judgement
from plugin.worklist.store import Store

Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for a binomial proportion (None when n == 0)."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def cohen_kappa(pairs: Sequence[tuple[bool, bool]]) -> float | None:
    """Cohen's kappa for two raters' yes/no calls; None when undefined (no pairs, or chance
    agreement is 1 because both raters gave one answer throughout)."""
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(a == b for a, b in pairs) / n
    a_yes = sum(a for a, _ in pairs) / n
    b_yes = sum(b for _, b in pairs) / n
    expected = a_yes * b_yes + (1 - a_yes) * (1 - b_yes)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1 - expected)


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleStats:
    rule_id: str
    title: str
    flagged: int
    reviewed: int  # closed cases (a final judgement exists)
    confirmed: int  # closed as a missed opportunity
    miscoded: int  # reviewed cases any reviewer flagged as miscoded
    in_progress: int
    published_ppv: float | None = None
    published_n: int | None = None
    pairs: list[tuple[bool, bool]] = field(default_factory=list)

    @property
    def ppv(self) -> float | None:
        return self.confirmed / self.reviewed if self.reviewed else None

    @property
    def ci(self) -> tuple[float, float] | None:
        return wilson(self.confirmed, self.reviewed)

    @property
    def kappa(self) -> float | None:
        return cohen_kappa(self.pairs)

    @property
    def agreement(self) -> float | None:
        return sum(a == b for a, b in self.pairs) / len(self.pairs) if self.pairs else None


def rule_stats(
    store: Store, published: Mapping[str, tuple[float | None, int | None]]
) -> list[RuleStats]:
    """Per rule; ``published`` maps rule id to (published PPV, n) from the rule metadata."""
    f, r = t.findings, t.reviews
    with store.engine.connect() as conn:
        cases = conn.execute(sa.select(f.c.id, f.c.rule_id, f.c.rule_title, f.c.status)).all()
        reviews = conn.execute(
            sa.select(r.c.finding_id, r.c.is_mod, r.c.miscoded).order_by(r.c.id)
        ).all()
    by_case: dict[int, list[Any]] = defaultdict(list)
    for rev in reviews:
        by_case[rev.finding_id].append(rev)
    acc: dict[str, dict[str, Any]] = {}
    for case in cases:
        s = acc.setdefault(case.rule_id, {"title": case.rule_title, "flagged": 0,
                                          "reviewed": 0, "confirmed": 0, "miscoded": 0,
                                          "in_progress": 0, "pairs": []})  # fmt: skip
        s["flagged"] += 1
        revs = by_case.get(case.id, [])
        verdict = final_judgement([x.is_mod for x in revs], case.status)
        if verdict is not None:
            s["reviewed"] += 1
            s["confirmed"] += int(verdict)
            s["miscoded"] += int(any(x.miscoded for x in revs))
        elif revs:
            s["in_progress"] += 1
        if len(revs) >= 2:
            s["pairs"].append((bool(revs[0].is_mod), bool(revs[1].is_mod)))
    out = []
    for rule_id in sorted(acc, key=lambda k: (-acc[k]["flagged"], k)):
        pub_ppv, pub_n = published.get(rule_id, (None, None))
        out.append(RuleStats(rule_id=rule_id, published_ppv=pub_ppv, published_n=pub_n,
                             **acc[rule_id]))  # fmt: skip
    return out


def overall_kappa(stats: Sequence[RuleStats]) -> tuple[float | None, int, float | None]:
    """(kappa, number of double-reviewed cases, raw agreement) over all rules."""
    pairs = [p for s in stats for p in s.pairs]
    agreement = sum(a == b for a, b in pairs) / len(pairs) if pairs else None
    return cohen_kappa(pairs), len(pairs), agreement


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedbackStats:
    by_service: dict[str, Counter[str]]
    override_reasons: Counter[str]
    total: int
    by_rule: dict[str, Counter[str]] = field(default_factory=dict)  # cards joined to findings


def _reason_label(reason: Any) -> str:
    if not isinstance(reason, dict):
        return "(no reason given)"
    coding = reason.get("reason", reason)
    if isinstance(coding, dict):
        return str(coding.get("display") or coding.get("code") or "(no reason given)")
    return "(no reason given)"


def card_rules(store: Store, card_id_of: Callable[[str], str]) -> dict[str, str]:
    """Card id -> rule title, for cards about stored findings (card ids derive from keys)."""
    f = t.findings
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(f.c.key, f.c.rule_title))
        return {card_id_of(row.key): row.rule_title for row in rows}


def feedback_stats(store: Store, card_rule: Mapping[str, str] | None = None) -> FeedbackStats:
    """Card outcomes per service, override reasons, and per rule where ``card_rule`` maps a
    card id to its finding's rule (cards about findings not in the worklist are skipped)."""
    fb = t.cds_feedback
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(fb.c.service_id, fb.c.card_id, fb.c.outcome, fb.c.override_reason)
        ).all()
    by_service: dict[str, Counter[str]] = defaultdict(Counter)
    by_rule: dict[str, Counter[str]] = defaultdict(Counter)
    reasons: Counter[str] = Counter()
    for row in rows:
        by_service[row.service_id][row.outcome] += 1
        rule = (card_rule or {}).get(row.card_id)
        if rule is not None:
            by_rule[rule][row.outcome] += 1
        if row.outcome == "overridden":
            reasons[_reason_label(row.override_reason)] += 1
    return FeedbackStats(by_service=dict(by_service), override_reasons=reasons, total=len(rows),
                         by_rule=dict(by_rule))  # fmt: skip
