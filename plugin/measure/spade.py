"""SPADE estimators: look-forward observed − expected with a 95 % CI, daily curves, strata,
funnel; look-back shares against expected.

**Look-forward.** ``O`` = index visits (with the whole window observed) whose first outcome
admission fell on days 1..W. Expected:

* temporal comparator (days a..b of the same cohort): the baseline rate ``λ = B / T_c``
  (``B`` first outcomes on days a..b, ``T_c`` index-days at risk there), ``E = λ · T_w``
  with ``T_w`` the index-days at risk on days 1..W (an index stops being at risk at its first
  outcome). The expected daily curve is ``λ`` × the number at risk that day.
* comparator cohort (renal colic, back pain): ``E = N · O_c / N_c``, its daily curve scaled
  the same way.

**CI.** ``O − E`` is a difference of two independent Poisson counts (``O`` and the
comparator count scaled by ``r = T_w / T_c`` or ``N / N_c``), so ``Var = O + r² · B``; the
95 % interval is ``(O − E) ± 1.96 √Var`` per 10,000 index visits, widened where the exact
(Garwood) Poisson interval of ``O`` minus ``E`` is wider (small counts). Chosen over a bootstrap
because it is closed-form (strata and 100-seed tests stay fast) and the comparator's own
uncertainty enters explicitly; its coverage is checked by simulation in
``tests/measure/test_recovery.py``. For small counts the rate ratio ``O / E`` also gets an
exact interval (conditional binomial, Clopper–Pearson), which holds at any count.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from scipy.stats import beta, chi2

from plugin.measure.cohorts import Collected, IndexRecord
from plugin.measure.pairs import Benchmark, Pair

Z95 = 1.959963984540054
PER = 10_000
CURVE_DAYS = 90  # days of the daily curve drawn (the window is usually 7-30 d)


def _finite(x: float) -> float | None:
    return round(x, 3) if math.isfinite(x) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Estimate:
    n: int  # index visits with the whole window observed
    observed: int
    expected: float
    var: float
    rr_ci: tuple[float, float] | None

    @property
    def excess_per_10k(self) -> float:
        return (self.observed - self.expected) / self.n * PER if self.n else 0.0

    @property
    def ci(self) -> tuple[float, float]:
        """Wald on O − E, widened to the exact (Garwood) Poisson interval of O minus E where
        that is wider: at small counts (O = 0 gives Var = 0) Wald alone would be too short."""
        if not self.n:
            return (0.0, 0.0)
        half = Z95 * math.sqrt(self.var)
        o_lo = chi2.ppf(0.025, 2 * self.observed) / 2 if self.observed else 0.0
        o_hi = chi2.ppf(0.975, 2 * self.observed + 2) / 2
        lo = min(self.observed - self.expected - half, o_lo - self.expected)
        hi = max(self.observed - self.expected + half, o_hi - self.expected)
        return float(lo) / self.n * PER, float(hi) / self.n * PER

    @property
    def observed_per_10k(self) -> float:
        return self.observed / self.n * PER if self.n else 0.0

    @property
    def rate_ratio(self) -> float | None:
        return self.observed / self.expected if self.expected > 0 else None

    def as_dict(self) -> dict[str, object]:
        lo, hi = self.ci
        return {"n": self.n, "observed": self.observed, "expected": round(self.expected, 3),
                "excess_per_10k": round(self.excess_per_10k, 2), "ci95": [round(lo, 2),
                round(hi, 2)], "observed_per_10k": round(self.observed_per_10k, 2),
                "rate_ratio": None if self.rate_ratio is None else round(self.rate_ratio, 3),
                "rate_ratio_ci95": None if self.rr_ci is None else  # JSON has no infinity
                [_finite(self.rr_ci[0]), _finite(self.rr_ci[1])]}  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class Stratum:
    dimension: str
    value: str
    estimate: Estimate


@dataclass(frozen=True, slots=True, kw_only=True)
class FunnelPoint:
    site: str
    n: int
    rate_per_10k: float  # observed window outcomes per 10,000 index visits
    outside_95: bool
    outside_998: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class PairResult:
    pair: Pair
    total: Estimate
    comparator: str  # plain-language description of where "expected" came from
    days: list[int]
    daily_observed: list[int]
    daily_expected: list[float]
    strata: list[Stratum]
    funnel: list[FunnelPoint]
    funnel_rate_per_10k: float
    cases: list[IndexRecord]  # the index visits counted in "observed"
    censored: int  # index visits dropped because the window was not fully observed
    benchmarks: tuple[Benchmark, ...] = field(default=())


def exact_rr(o: int, b: int, t_w: float, t_c: float) -> tuple[float, float] | None:
    """Exact 95 % CI of the rate ratio: ``O | O + B ~ Bin(O + B, π)``, ``π = RR·t_w /
    (RR·t_w + t_c)`` (Clopper–Pearson on π)."""
    n = o + b
    if n == 0 or t_w <= 0 or t_c <= 0:
        return None
    lo = beta.ppf(0.025, o, n - o + 1) if o > 0 else 0.0
    hi = beta.ppf(0.975, o + 1, n - o) if o < n else 1.0
    scale = t_c / t_w
    return float(lo / (1 - lo) * scale), (float(hi / (1 - hi) * scale) if hi < 1 else math.inf)


def _followup(r: IndexRecord, data_end: datetime) -> int:
    return int((data_end - r.start).total_seconds() // 86400)


def _temporal(recs: Sequence[IndexRecord], pair: Pair, data_end: datetime,
              days: int) -> tuple[Estimate, list[int], list[float]]:  # fmt: skip
    a, b = pair.temporal or (pair.window + 1, pair.horizon)
    w = pair.window
    o = bcount = 0
    t_w = t_c = 0.0
    at_risk = [0] * (days + 1)
    daily = [0] * (days + 1)
    for r in recs:
        fu = min(_followup(r, data_end), b)
        od = r.outcome_day
        stop = min(fu, od) if od is not None else fu  # last day at risk
        t_w += min(w, stop)
        if od is not None and od <= w:
            o += 1
        if stop >= a:
            t_c += min(stop, b) - a + 1
            if od is not None and a <= od <= fu:
                bcount += 1
        for d in range(1, min(stop, days) + 1):
            at_risk[d] += 1
        if od is not None and od <= min(fu, days):
            daily[od] += 1
    lam = bcount / t_c if t_c else 0.0
    r_ = t_w / t_c if t_c else 0.0
    est = Estimate(n=len(recs), observed=o, expected=lam * t_w, var=o + r_ * r_ * bcount,
                   rr_ci=exact_rr(o, bcount, t_w, t_c))  # fmt: skip
    return est, daily[1:], [lam * at_risk[d] for d in range(1, days + 1)]


def _vs_cohort(recs: Sequence[IndexRecord], comp: Sequence[IndexRecord], pair: Pair,
               days: int) -> tuple[Estimate, list[int], list[float]]:  # fmt: skip
    w = pair.window
    o = sum(1 for r in recs if r.outcome_day is not None and r.outcome_day <= w)
    oc = sum(1 for r in comp if r.outcome_day is not None and r.outcome_day <= w)
    n, m = len(recs), len(comp)
    scale = n / m if m else 0.0
    daily = [0] * (days + 1)
    cdaily = [0] * (days + 1)
    for r in recs:
        if r.outcome_day is not None and r.outcome_day <= days:
            daily[r.outcome_day] += 1
    for r in comp:
        if r.outcome_day is not None and r.outcome_day <= days:
            cdaily[r.outcome_day] += 1
    est = Estimate(n=n, observed=o, expected=oc * scale, var=o + scale * scale * oc,
                   rr_ci=exact_rr(o, oc, n, m))  # fmt: skip
    return est, daily[1:], [c * scale for c in cdaily[1:]]


def age_band(age: int | None) -> str:
    if age is None:
        return "unknown"
    for hi, label in ((17, "<18"), (44, "18-44"), (64, "45-64"), (79, "65-79")):
        if age <= hi:
            return label
    return "80+"


def quarter(t: datetime) -> str:
    return f"{t.year}Q{(t.month - 1) // 3 + 1}"


DIMENSIONS: dict[str, Callable[[IndexRecord], str]] = {
    "quarter": lambda r: quarter(r.start),
    "year": lambda r: str(r.start.year),
    "site": lambda r: r.site,
    "age": lambda r: age_band(r.age),
    "sex": lambda r: r.sex or "unknown",
}


def look_forward(pair: Pair, got: Collected, *, by: Sequence[str] = ("quarter", "site", "age",
                 "sex"), data_end: datetime | None = None) -> PairResult:  # fmt: skip
    """The look-forward measure of one pair over what :func:`collect` gathered."""
    end = data_end or got.last
    days = min(CURVE_DAYS, pair.horizon)
    all_recs = got.index[pair.id]
    recs = [r for r in all_recs if end is not None and _followup(r, end) >= pair.window]
    comp = [r for r in got.index.get(f"{pair.id}#comparator", [])
            if end is not None and _followup(r, end) >= pair.window]  # fmt: skip

    def estimate(rs: Sequence[IndexRecord]) -> tuple[Estimate, list[int], list[float]]:
        if pair.temporal is not None and end is not None:
            return _temporal(rs, pair, end, days)
        return _vs_cohort(rs, comp, pair, days)

    total, daily, expected = estimate(recs)
    strata = []
    for dim in by:
        key = DIMENSIONS[dim]
        groups: dict[str, list[IndexRecord]] = defaultdict(list)
        for r in recs:
            groups[key(r)].append(r)
        for value in sorted(groups):
            strata.append(Stratum(dimension=dim, value=value, estimate=estimate(groups[value])[0]))
    funnel, overall = _funnel(recs, pair.window)
    if pair.temporal is not None:
        a, b = pair.temporal
        comparator = (f"the same patients' own baseline on days {a}-{b} after the visit "
                      "(temporal comparator)")
    else:
        name = pair.comparator.name if pair.comparator else "comparator"
        comparator = (f"{len(comp):,} {name} treat-and-release visits "
                      "(comparator cohort)")
    cases = [r for r in recs if r.outcome_day is not None and r.outcome_day <= pair.window]
    return PairResult(pair=pair, total=total, comparator=comparator, days=list(range(1, days + 1)),
                      daily_observed=daily, daily_expected=expected, strata=strata,
                      funnel=funnel, funnel_rate_per_10k=overall, cases=cases,
                      censored=len(all_recs) - len(recs),
                      benchmarks=pair.published)  # fmt: skip


def _funnel(recs: Sequence[IndexRecord], window: int) -> tuple[list[FunnelPoint], float]:
    """Sites' observed window rate against the overall rate, with binomial control limits."""
    by_site: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in recs:
        s = by_site[r.site]
        s[0] += 1
        s[1] += int(r.outcome_day is not None and r.outcome_day <= window)
    n_all = sum(v[0] for v in by_site.values())
    p = sum(v[1] for v in by_site.values()) / n_all if n_all else 0.0
    out = []
    for site, (n, k) in sorted(by_site.items()):
        sd = math.sqrt(p * (1 - p) / n) if n else 0.0
        rate = k / n if n else 0.0
        out.append(FunnelPoint(site=site, n=n, rate_per_10k=rate * PER,
                               outside_95=abs(rate - p) > Z95 * sd,
                               outside_998=abs(rate - p) > 3.09 * sd))  # fmt: skip
    return out, p * PER


@dataclass(frozen=True, slots=True, kw_only=True)
class LookBackRow:
    disease: str
    symptom: str
    admissions: int
    with_prior: int  # admissions with a symptom treat-and-release visit in days 1..W before
    expected: float  # from the same admissions' visits on days 31..365 before, per W days
    window: int

    @property
    def share(self) -> float:
        return self.with_prior / self.admissions if self.admissions else 0.0

    @property
    def expected_share(self) -> float:
        return self.expected / self.admissions if self.admissions else 0.0

    @property
    def ratio(self) -> float | None:
        return self.with_prior / self.expected if self.expected > 0 else None

    @property
    def excess(self) -> float:
        return self.with_prior - self.expected

    @property
    def ci(self) -> tuple[float, float]:
        """95 % CI of the excess share (Poisson, same construction as look-forward)."""
        ctrl = self.expected * (365 - 30) / self.window
        r = self.window / (365 - 30)
        half = Z95 * math.sqrt(self.with_prior + r * r * ctrl)
        n = self.admissions or 1
        return (self.excess - half) / n, (self.excess + half) / n


def look_back(got: Collected, symptoms: Sequence[str], *, window: int = 30) -> list[LookBackRow]:
    """For each disease and symptom cohort: the share of admissions preceded by a symptom
    treat-and-release visit within ``window`` days, against the same admissions' rate of such
    visits on days 31-365 before (per ``window`` days). Admissions in the data's first year are
    left out (their year before is not observed). Ranked by excess, most first."""
    control = 365 - 30
    tally: dict[tuple[str, str], list[float]] = {}
    diseases = sorted({a.disease for a in got.admissions})
    counted: dict[str, int] = defaultdict(int)
    for a in got.admissions:
        if got.first is not None and (a.start - got.first).days < 365:
            continue
        counted[a.disease] += 1
        for s in symptoms:
            t = tally.setdefault((a.disease, s), [0, 0])
            days = [d for name, d in a.prior if name == s]
            t[0] += int(any(d <= window for d in days))
            t[1] += sum(1 for d in days if 31 <= d <= 365)
    rows = [LookBackRow(disease=d, symptom=s, admissions=counted[d],
                        with_prior=int(tally.get((d, s), [0, 0])[0]),
                        expected=tally.get((d, s), [0, 0])[1] * window / control, window=window)
            for d in diseases for s in symptoms]  # fmt: skip
    return sorted(rows, key=lambda r: (-(r.excess / r.admissions if r.admissions else 0),
                                       r.disease, r.symptom))  # fmt: skip
