"""Wilson intervals, Cohen's kappa and the per-rule figures."""

from __future__ import annotations

import math

import pytest

from plugin.worklist import cases, stats
from plugin.worklist.saferdx import ReviewInput
from plugin.worklist.store import Store
from tests.worklist.factories import finding


def test_wilson_matches_the_closed_form() -> None:
    # Singh 2012 PC-3: 141/674; reference interval computed by hand from the Wilson formula
    lo, hi = stats.wilson(141, 674) or (0, 0)
    p, n, z = 141 / 674, 674, 1.959963984540054
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    assert (lo, hi) == pytest.approx((centre - half, centre + half))
    assert (round(lo, 3), round(hi, 3)) == (0.180, 0.242)
    assert stats.wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert stats.wilson(0, 0) is None


def test_kappa() -> None:
    assert stats.cohen_kappa([(True, True), (False, False)] * 5) == pytest.approx(1.0)
    pairs = [(True, True)] * 20 + [(True, False)] * 5 + [(False, True)] * 10 + [(False, False)] * 15
    # po = 35/50; pe = 0.5*0.6 + 0.5*0.4 = 0.5 -> kappa 0.4
    assert stats.cohen_kappa(pairs) == pytest.approx(0.4)
    assert stats.cohen_kappa([(True, True)] * 4) is None  # chance agreement 1: undefined
    assert stats.cohen_kappa([]) is None


def test_rule_stats_count_only_final_judgements(store: Store, users) -> None:
    findings = [finding(f"a{i}", rule="rule-a") for i in range(5)] + [finding("b0", rule="rule-b")]
    store.upsert_findings(findings)
    mod = ReviewInput(items=[4] * 12 + [7], harm="severe")
    no = ReviewInput(items=[1] * 13, harm="none", miscoded=True)
    ids = [cases.find_id(store, f.key) for f in findings]
    cases.save_review(store, ids[0], mod, by=users["rev1"], version=1)  # -> second review
    cases.save_review(store, ids[0], mod, by=users["rev2"], version=2)  # agree -> closed MOD
    cases.save_review(store, ids[1], no, by=users["rev1"], version=1)  # closed, no MOD
    cases.save_review(store, ids[2], mod, by=users["rev1"], version=1)  # still open
    per_rule = {s.rule_id: s for s in stats.rule_stats(store, {"rule-a": (0.31, 398)})}
    a = per_rule["rule-a"]
    assert (a.flagged, a.reviewed, a.confirmed, a.in_progress, a.miscoded) == (5, 2, 1, 1, 1)
    assert a.ppv == pytest.approx(0.5)
    assert a.ci == pytest.approx(stats.wilson(1, 2))
    assert (a.published_ppv, a.published_n) == (0.31, 398)
    assert a.pairs == [(True, True)]
    assert per_rule["rule-b"].ppv is None and per_rule["rule-b"].published_ppv is None


def test_feedback_stats(store: Store) -> None:
    for i, outcome in enumerate(["accepted", "overridden", "overridden", "accepted"]):
        reason = {"reason": {"code": "fp", "display": "Already worked up"}} if i == 1 else None
        store.record_feedback(
            service_id="svc",
            card_id=f"c{i}",
            outcome=outcome,
            outcome_timestamp=f"2024-01-0{i + 1}T00:00:00Z",
            override_reason=reason,
            accepted_suggestions=[],
        )
    fb = stats.feedback_stats(store)
    assert fb.total == 4
    assert fb.by_service["svc"] == {"accepted": 2, "overridden": 2}
    assert fb.override_reasons == {"Already worked up": 1, "(no reason given)": 1}
