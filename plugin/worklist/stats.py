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
    """Card id -> rule title, for cards about stored findings: cards sent since issue 14 carry
    a fresh uuid per call, recorded with its finding in ``cds_cards``; older cards carried an
    id derived from the finding key (``card_id_of``), kept so their feedback still joins."""
    f, c = t.findings, t.cds_cards
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(f.c.key, f.c.rule_title))
        out = {card_id_of(row.key): row.rule_title for row in rows}
        issued = conn.execute(
            sa.select(c.c.card_id, f.c.rule_title).join(f, f.c.key == c.c.finding_key)
        )
        out.update({row.card_id: row.rule_title for row in issued})
        return out


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


# --- issue 13: PPV from the sampled cases only (design-based), ranked-triage yield apart ------
def wilson_eff(p: float, n_eff: float, z: float = Z95) -> tuple[float, float] | None:
    """Wilson interval at an effective sample size (Korn & Graubard's use of the design
    effect): for a simple random sample it is the ordinary Wilson interval."""
    if n_eff <= 0:
        return None
    denom = 1 + z * z / n_eff
    centre = (p + z * z / (2 * n_eff)) / denom
    half = z * math.sqrt(p * (1 - p) / n_eff + z * z / (4 * n_eff * n_eff)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True, slots=True, kw_only=True)
class SampledCase:
    stratum: str  # one draw's stratum (draw time + score band): weights are per draw
    inclusion_prob: float
    verdict: bool | None  # None: drawn, not yet judged


def design_ppv(cases: Sequence[SampledCase]) -> tuple[float, tuple[float, float], int] | None:
    """Stratified (Hajek) estimate of PPV from sampled cases: (PPV, 95 % CI, n judged).

    Stratum sizes are estimated from every drawn case (Σ 1/π), the stratum's PPV from its
    judged cases (drawn cases not yet judged are taken as missing at random within their
    stratum). The variance is Σ W_h² p_h (1 − p_h) / n_h · (1 − f_h); the interval is Wilson's
    at the effective sample size p(1 − p)/Var, so it stays inside [0, 1] and is the plain
    Wilson interval for one simple random sample.
    """
    by: dict[str, list[SampledCase]] = defaultdict(list)
    for c in cases:
        by[c.stratum].append(c)
    size: dict[str, float] = {}
    judged: dict[str, list[bool]] = {}
    for h, cs in by.items():
        yes = [bool(c.verdict) for c in cs if c.verdict is not None]
        if yes:
            size[h] = sum(1 / c.inclusion_prob for c in cs)
            judged[h] = yes
    total = sum(size.values())
    n = sum(len(v) for v in judged.values())
    if not n or total <= 0:
        return None
    p = var = 0.0
    for h, yes in judged.items():
        w = size[h] / total
        ph = sum(yes) / len(yes)
        f = min(1.0, len(yes) / size[h])
        p += w * ph
        var += w * w * ph * (1 - ph) / len(yes) * (1 - f)
    n_eff = p * (1 - p) / var if var > 0 and 0 < p < 1 else float(n)
    ci = wilson_eff(p, n_eff) or (0.0, 1.0)
    return p, ci, n


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopStats:
    """Per rule: the sampled PPV (design-based) beside the ranked-triage yield."""

    rule_id: str
    title: str
    flagged: int
    mode: str | None  # sampling mode set for the rule, if any
    drawn: int  # cases drawn by samples
    sampled_ppv: float | None
    sampled_ci: tuple[float, float] | None
    sampled_judged: int
    triage_reviewed: int  # closed cases picked from the ranked queue (not by a sample)
    triage_confirmed: int
    models: dict[str, int] = field(default_factory=dict)  # model version -> open cases


    @property
    def triage_yield(self) -> float | None:
        return self.triage_confirmed / self.triage_reviewed if self.triage_reviewed else None


def loop_stats(store: Store, modes: Mapping[str, str] | None = None) -> list[LoopStats]:
    """Per rule. Cases a sample drew (selection random|stratified, with an inclusion
    probability) are the only ones that enter the PPV; ranked-triage and CDS-feedback reviews
    are counted as the triage yield, which is not an estimate of PPV."""
    f, r = t.findings, t.reviews
    with store.engine.connect() as conn:
        cases = conn.execute(sa.select(
            f.c.id, f.c.rule_id, f.c.rule_title, f.c.status, f.c.selection, f.c.inclusion_prob,
            f.c.sample_stratum, f.c.sampled_at, f.c.model_version, f.c.extra)).all()  # fmt: skip
        reviews = conn.execute(sa.select(r.c.finding_id, r.c.is_mod).order_by(r.c.id)).all()
    by_case: dict[int, list[bool]] = defaultdict(list)
    for rev in reviews:
        by_case[rev.finding_id].append(bool(rev.is_mod))
    acc: dict[str, dict[str, Any]] = {}
    for c in cases:
        s = acc.setdefault(c.rule_id, {"title": c.rule_title, "flagged": 0, "sampled": [],
                                       "tri_n": 0, "tri_k": 0, "models": Counter()})  # fmt: skip
        s["flagged"] += 1
        if c.status != "closed":
            # the re-score's column, else the version the scan stored with the score
            version = c.model_version or (c.extra or {}).get("model_version") or "unscored"
            s["models"][version] += 1
        verdict = final_judgement(by_case.get(c.id, []), c.status)
        if c.selection in ("random", "stratified") and c.inclusion_prob:
            stratum = f"{c.sampled_at}|{c.sample_stratum}"
            s["sampled"].append(SampledCase(stratum=stratum, inclusion_prob=c.inclusion_prob,
                                            verdict=verdict))  # fmt: skip
        elif verdict is not None:
            s["tri_n"] += 1
            s["tri_k"] += int(verdict)
    out = []
    for rule_id in sorted(acc, key=lambda k: (-acc[k]["flagged"], k)):
        s = acc[rule_id]
        est = design_ppv(s["sampled"])
        out.append(LoopStats(
            rule_id=rule_id, title=s["title"], flagged=s["flagged"],
            mode=(modes or {}).get(rule_id), drawn=len(s["sampled"]),
            sampled_ppv=est[0] if est else None, sampled_ci=est[1] if est else None,
            sampled_judged=est[2] if est else 0, triage_reviewed=s["tri_n"],
            triage_confirmed=s["tri_k"], models=dict(s["models"])))  # fmt: skip
    return out
