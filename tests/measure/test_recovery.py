"""The look-forward estimator recovers a planted excess: 100 seeds simulated at the visit-row
level (the same cohort and estimator code a FHIR population goes through, without FHIR), so
the statistical claim is checked in seconds. The FHIR-level path is in test_cli.py."""

from __future__ import annotations

import pytest

from plugin.measure.cohorts import collect
from plugin.measure.pairs import load_pairs
from plugin.measure.spade import look_forward
from plugin.synth.spade import plan_cohort, visits_of_plan

SEEDS = range(100)
N = 8_000  # index visits per seed: planted 25/10k is 20 excess admissions over about 13


def _run(pair_id: str, excess: float, seed: int):  # type: ignore[no-untyped-def]
    pair = next(p for p in load_pairs() if p.id == pair_id)
    plans = plan_cohort(seed, N, window=pair.window, excess_per_10k=excess)
    got = collect([pair], (visits_of_plan(p, pair) for p in plans))
    return look_forward(pair, got, by=())


@pytest.mark.parametrize("excess", [25.0, 0.0])
def test_ci_covers_the_planted_excess_in_at_least_93_of_100_seeds(excess: float) -> None:
    covered = detected = 0
    for seed in SEEDS:
        est = _run("dizziness_stroke", excess, seed).total
        lo, hi = est.ci
        covered += lo <= excess <= hi
        detected += lo > 0
    assert covered >= 93, f"{covered}/100 intervals cover {excess} per 10,000"
    if excess:
        assert detected >= 85, f"the excess was found (CI above 0) in only {detected}/100 seeds"
    else:  # no excess planted: "finds no excess" (a false alarm in at most 7 % of seeds)
        assert detected <= 7, f"an excess was 'found' in {detected}/100 null seeds"


def test_the_excess_clusters_in_the_first_days_of_the_daily_curve() -> None:
    r = _run("dizziness_stroke", 200.0, 1)
    first_week = sum(r.daily_observed[:7]) - sum(r.daily_expected[:7])
    later = sum(r.daily_observed[7:30]) - sum(r.daily_expected[7:30])
    assert first_week > 2 * max(later, 1.0)
    assert r.total.rate_ratio is not None and r.total.rr_ci is not None
    assert r.total.rr_ci[0] > 1


def test_a_window_not_yet_observed_is_left_out_not_counted_as_no_harm() -> None:
    pair = next(p for p in load_pairs() if p.id == "dizziness_stroke")
    plans = plan_cohort(5, 2_000, window=30, excess_per_10k=0)
    got = collect([pair], (visits_of_plan(p, pair) for p in plans))
    assert got.last is not None
    from datetime import timedelta

    r = look_forward(pair, got, by=(), data_end=min(r.start for r in got.index[pair.id])
                     + timedelta(days=400))  # fmt: skip
    assert r.censored > 0
    assert r.total.n + r.censored == len(got.index[pair.id])


def test_no_outcome_still_gives_an_interval_that_is_not_zero_wide() -> None:
    """O = 0 makes the Poisson variance estimate 0; the exact interval keeps the CI honest."""
    from plugin.measure.spade import Estimate

    est = Estimate(n=300, observed=0, expected=0.0, var=0.0, rr_ci=None)
    lo, hi = est.ci
    assert lo == 0.0 and hi == pytest.approx(3.689 / 300 * 10_000, rel=1e-3)
