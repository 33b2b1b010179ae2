"""Queue ranking and filters, the review workflow, optimistic locking (both databases)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from plugin.errors import ConflictError, StoreError
from plugin.worklist import cases, tables
from plugin.worklist.saferdx import ReviewInput
from plugin.worklist.store import Store
from tests.worklist.factories import T0, finding

MOD = ReviewInput(items=[5] * 12 + [6], harm="moderate", missed_dx="stroke")
NO_MOD = ReviewInput(items=[2] * 12 + [2], harm="none")


def _id(store: Store, key: str) -> int:
    found = cases.find_id(store, key)
    assert found is not None
    return found


def _version(store: Store, key: str) -> int:
    case = cases.get_case(store, key)
    assert case is not None
    return int(case.finding["version"])


def test_queue_ranks_by_score_then_level(store: Store) -> None:
    store.upsert_findings(
        [
            finding("low-noscore", level="low"),
            finding("crit-noscore", level="critical"),
            finding("s20", score=0.2, level="low"),
            finding("s90", score=0.9, level="low"),
            finding("high-noscore", level="high"),
        ]
    )
    rows = cases.queue(store, cases.QueueFilter()).rows
    assert [r["key"] for r in rows] == [
        finding(p).key for p in ("s90", "s20", "crit-noscore", "high-noscore", "low-noscore")
    ]


def test_queue_filters_and_pages(store: Store, users) -> None:
    store.upsert_findings(
        [finding(f"a{i}", rule="rule-a", start=T0 + timedelta(days=i)) for i in range(30)]
        + [finding(f"b{i}", rule="rule-b", level="low") for i in range(5)]
    )
    assert cases.queue(store, cases.QueueFilter()).total == 35
    by_rule = cases.queue(store, cases.QueueFilter(rule="rule-b"))
    assert by_rule.total == 5 and {r["rule_id"] for r in by_rule.rows} == {"rule-b"}
    assert cases.queue(store, cases.QueueFilter(level="low")).total == 5
    dated = cases.QueueFilter(since=T0 + timedelta(days=10), until=T0 + timedelta(days=20))
    assert cases.queue(store, dated).total == 10
    page1 = cases.queue(store, cases.QueueFilter(page_size=25))
    page2 = cases.queue(store, cases.QueueFilter(page_size=25, page=2))
    assert page1.pages == 2 and len(page1.rows) == 25 and len(page2.rows) == 10
    assert not {r["key"] for r in page1.rows} & {r["key"] for r in page2.rows}
    key = finding("a3", rule="rule-a").key
    cases.assign(store, _id(store, key), users["rev1"].id, by=users["admin"], version=1)
    mine = cases.queue(store, cases.QueueFilter(assignee=users["rev1"].id))
    assert [r["key"] for r in mine.rows] == [key]
    assert mine.rows[0]["status"] == "in_review" and mine.rows[0]["assignee"] == "bob"
    assert cases.queue(store, cases.QueueFilter(assignee=0)).total == 34
    assert cases.queue(store, cases.QueueFilter(status="in_review")).total == 1
    assert cases.queue(store, cases.QueueFilter(status="new")).total == 34


def test_no_mod_first_review_closes(store: Store, users) -> None:
    f = finding("p1")
    store.upsert_findings([f])
    assert cases.save_review(store, _id(store, f.key), NO_MOD, by=users["rev1"], version=1) == (
        "closed"
    )
    case = cases.get_case(store, f.key)
    assert case is not None and case.final_mod is False
    with pytest.raises(StoreError, match="closed"):
        cases.save_review(store, _id(store, f.key), MOD, by=users["rev2"], version=2)


def test_mod_goes_to_second_reviewer_and_agreement_closes(store: Store, users) -> None:
    f = finding("p1")
    store.upsert_findings([f])
    case_id = _id(store, f.key)
    assert cases.save_review(store, case_id, MOD, by=users["rev1"], version=1) == "second_review"
    with pytest.raises(StoreError, match="already reviewed"):
        cases.save_review(store, case_id, MOD, by=users["rev1"], version=2)
    assert cases.save_review(store, case_id, MOD, by=users["rev2"], version=2) == "closed"
    case = cases.get_case(store, f.key)
    assert case is not None and case.final_mod is True
    assert [r["round"] for r in case.reviews] == [1, 2]


def test_disagreement_goes_to_third_reviewer(store: Store, users) -> None:
    f = finding("p1")
    store.upsert_findings([f])
    case_id = _id(store, f.key)
    cases.save_review(store, case_id, MOD, by=users["rev1"], version=1)
    assert cases.save_review(store, case_id, NO_MOD, by=users["rev2"], version=2) == (
        "third_review"
    )
    assert cases.save_review(store, case_id, NO_MOD, by=users["admin"], version=3) == "closed"
    case = cases.get_case(store, f.key)
    assert case is not None and case.final_mod is False and len(case.reviews) == 3


def test_two_conflicting_saves_never_overwrite(store: Store, users) -> None:
    """Both reviewers opened version 1; the second save is refused, nothing is lost."""
    f = finding("p1")
    store.upsert_findings([f])
    case_id = _id(store, f.key)
    seen_by_both = _version(store, f.key)
    cases.save_review(store, case_id, MOD, by=users["rev1"], version=seen_by_both)
    with pytest.raises(ConflictError):
        cases.save_review(store, case_id, NO_MOD, by=users["rev2"], version=seen_by_both)
    case = cases.get_case(store, f.key)
    assert case is not None
    assert [(r["reviewer"], r["judgement"]) for r in case.reviews] == [("bob", 6)]
    assert case.finding["status"] == "second_review"
    # with the fresh version the second reviewer's save becomes the second review
    cases.save_review(store, case_id, NO_MOD, by=users["rev2"], version=case.finding["version"])
    case = cases.get_case(store, f.key)
    assert case is not None and case.finding["status"] == "third_review"


def test_assignment_bumps_version_so_stale_review_conflicts(store: Store, users) -> None:
    f = finding("p1")
    store.upsert_findings([f])
    case_id = _id(store, f.key)
    cases.assign(store, case_id, users["rev2"].id, by=users["admin"], version=1)
    with pytest.raises(ConflictError):
        cases.save_review(store, case_id, MOD, by=users["rev1"], version=1)


def test_reopen_is_admin_only_and_feeds_agreement(store: Store, users) -> None:
    f = finding("p1")
    store.upsert_findings([f])
    case_id = _id(store, f.key)
    cases.save_review(store, case_id, NO_MOD, by=users["rev1"], version=1)
    with pytest.raises(StoreError, match="admin"):
        cases.reopen_for_review(store, case_id, by=users["rev2"], version=2)
    cases.reopen_for_review(store, case_id, by=users["admin"], version=2)
    assert cases.save_review(store, case_id, NO_MOD, by=users["rev2"], version=3) == "closed"


def test_views_and_changes_are_audited_without_patient_data(store: Store, users) -> None:
    f = finding("patient-secret-42")
    store.upsert_findings([f])
    case_id = _id(store, f.key)
    cases.get_case(store, f.key, users["rev1"])
    cases.assign(store, case_id, users["rev1"].id, by=users["rev1"], version=1)
    cases.save_review(store, case_id, MOD, by=users["rev1"], version=2)
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(tables.audit_log).order_by(tables.audit_log.c.id)).all()
    actions = [(r.action, r.username) for r in rows if r.finding_id == case_id]
    # the second review is handed to carol by the workflow itself (no user as actor)
    assert actions == [("case.view", "bob"), ("case.assign", "bob"), ("review.save", "bob"),
                       ("case.assign", None)]  # fmt: skip
    assert rows[-1].detail == {"assignee_id": users["rev2"].id, "status": "second_review",
                               "automatic": True}  # fmt: skip
    dumped = " ".join(str(tuple(r)) for r in rows)
    assert "patient-secret-42" not in dumped and "stroke" not in dumped


def test_simultaneous_saves_one_wins_the_rest_conflict(store: Store, password_hash) -> None:
    """Four reviewers press save at the same moment on the same version."""
    import threading

    from tests.worklist.conftest import add_user

    f = finding("p1")
    store.upsert_findings([f])
    case_id = _id(store, f.key)
    reviewers = [add_user(store, f"r{i}", "reviewer", password_hash) for i in range(4)]
    barrier = threading.Barrier(len(reviewers))
    outcomes: list[str] = []

    def save(user) -> None:
        barrier.wait()
        try:
            cases.save_review(store, case_id, MOD, by=user, version=1)
            outcomes.append("saved")
        except ConflictError:
            outcomes.append("conflict")
        except Exception as exc:  # anything else (e.g. 'database is locked') is a failure
            outcomes.append(f"error: {exc!r}")

    threads = [threading.Thread(target=save, args=(u,)) for u in reviewers]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(outcomes) == ["conflict", "conflict", "conflict", "saved"]
    case = cases.get_case(store, f.key)
    assert case is not None and len(case.reviews) == 1 and case.finding["version"] == 2
