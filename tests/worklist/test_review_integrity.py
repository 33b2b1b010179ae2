"""Review integrity (issue 15, items 1-5): adjudication by majority, enforced assignment,
drafts, dissent, versioned snapshots on re-scan, findings a later scan no longer produces,
episodes. Store level, on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
import sqlalchemy as sa

from plugin.errors import Forbidden, StoreError
from plugin.worklist import cases, tables
from plugin.worklist.saferdx import Adjudication, ReviewInput
from plugin.worklist.store import Store
from tests.worklist.conftest import add_user
from tests.worklist.factories import T0, finding, key_for, timeline

MOD6 = ReviewInput(items=[5] * 12 + [6], harm="moderate", missed_dx="stroke")
MOD5 = ReviewInput(items=[5] * 12 + [5], harm="mild")
NO2 = ReviewInput(items=[2] * 12 + [2], harm="none")


def _case(store: Store, key: str) -> cases.Case:
    case = cases.get_case(store, key)
    assert case is not None
    return case


def _audit(store: Store, action: str) -> list[sa.Row]:
    a = tables.audit_log
    with store.engine.connect() as conn:
        return conn.execute(sa.select(a).where(a.c.action == action).order_by(a.c.id)).all()


def test_one_later_review_cannot_overturn_two_that_agreed(store: Store, users, password_hash):
    """Reviews 6 and 5 (MOD), reopened, then a single 2: still MOD by majority."""
    dave = add_user(store, "dave", "reviewer", password_hash)
    f = finding("p1")
    store.upsert_findings([f])
    fid = cases.find_id(store, f.key) or 0
    assert cases.save_review(store, fid, MOD6, by=users["rev1"], version=1) == "second_review"
    assert cases.save_review(store, fid, MOD5, by=users["rev2"], version=2) == "closed"
    cases.reopen_for_review(store, fid, by=users["admin"], version=3)
    case = _case(store, f.key)
    # reopened for a third reviewer, assigned at once to one who has not reviewed it
    assert case.finding["status"] == "third_review" and case.assignee == "dave"
    status = cases.save_review(store, fid, NO2, by=dave, version=case.finding["version"])
    assert status == "closed"
    assert _case(store, f.key).final_mod is True


def test_a_tie_goes_to_the_named_adjudicator_only(store: Store, users) -> None:
    rule = Adjudication(rule="adjudicator", adjudicator="alice")
    f = finding("p1")
    store.upsert_findings([f])
    fid = cases.find_id(store, f.key) or 0
    cases.save_review(store, fid, MOD6, by=users["rev1"], version=1, rule=rule)
    assert cases.save_review(store, fid, NO2, by=users["rev2"], version=2, rule=rule) == (
        "third_review"
    )
    case = _case(store, f.key)
    assert case.assignee == "alice"
    assert "adjudicator (alice)" in rule.describe()
    status = cases.save_review(store, fid, NO2, by=users["admin"], version=3, rule=rule)
    assert status == "closed" and _case(store, f.key).final_mod is False


def test_adjudicator_rule_refuses_anyone_else(store: Store, users, password_hash) -> None:
    dave = add_user(store, "dave", "reviewer", password_hash)
    rule = Adjudication(rule="adjudicator", adjudicator="alice")
    f = finding("p1")
    store.upsert_findings([f])
    fid = cases.find_id(store, f.key) or 0
    cases.save_review(store, fid, MOD6, by=users["rev1"], version=1, rule=rule)
    cases.save_review(store, fid, NO2, by=users["rev2"], version=2, rule=rule)
    cases.assign(store, fid, None, by=users["admin"], version=3)
    with pytest.raises(Forbidden, match="adjudicator"):
        cases.save_review(store, fid, MOD6, by=dave, version=4, rule=rule)


def test_reviewer_cannot_take_over_unassign_or_review_a_colleagues_case(store: Store, users):
    f = finding("p1")
    store.upsert_findings([f])
    fid = cases.find_id(store, f.key) or 0
    cases.assign(store, fid, users["rev2"].id, by=users["admin"], version=1)
    with pytest.raises(Forbidden):
        cases.assign(store, fid, users["rev1"].id, by=users["rev1"], version=2)
    with pytest.raises(Forbidden):
        cases.assign(store, fid, None, by=users["rev1"], version=2)
    with pytest.raises(Forbidden):
        cases.save_review(store, fid, MOD6, by=users["rev1"], version=2)
    case = _case(store, f.key)
    assert case.assignee == "carol" and not case.reviews
    # the assignee can give it back, then anyone may take it
    cases.assign(store, fid, None, by=users["rev2"], version=case.finding["version"])
    again = case.finding["version"] + 1
    cases.assign(store, fid, users["rev1"].id, by=users["rev1"], version=again)


def test_second_review_is_assigned_and_the_assignee_sees_it(store: Store, users) -> None:
    f = finding("p1")
    store.upsert_findings([f])
    fid = cases.find_id(store, f.key) or 0
    cases.save_review(store, fid, MOD6, by=users["rev1"], version=1)
    mine = cases.queue(store, cases.QueueFilter(status="open", assignee=users["rev2"].id))
    assert [r["key"] for r in mine.rows] == [f.key]
    assert [r.detail["automatic"] for r in _audit(store, "case.assign")] == [True]


def test_drafts_are_per_reviewer_and_become_the_review(store: Store, users) -> None:
    f = finding("p1")
    store.upsert_findings([f])
    fid = cases.find_id(store, f.key) or 0
    cases.save_draft(store, fid, {"item1": "3", "notes": "half way", "evil": "x"}, by=users["rev1"])
    cases.save_draft(store, fid, {"item1": "4", "notes": "further"}, by=users["rev1"])
    assert cases.get_case(store, f.key, users["rev1"]).draft == {"item1": "4", "notes": "further"}
    assert cases.get_case(store, f.key, users["rev2"]).draft is None
    with pytest.raises(StoreError, match="NUL"):
        cases.save_draft(store, fid, {"notes": "a\x00b"}, by=users["rev1"])
    cases.save_review(store, fid, MOD6, by=users["rev1"], version=1)
    assert cases.get_case(store, f.key, users["rev1"]).draft is None
    review = _case(store, f.key).reviews[0]
    assert review["started_at"] is not None and review["snapshot_version"] == 1
    assert cases.workload(store)[1]["reviews"] == 1  # bob


def test_a_lost_conflict_on_a_closed_case_can_be_kept_as_dissent(store: Store, users) -> None:
    f = finding("p1")
    store.upsert_findings([f])
    fid = cases.find_id(store, f.key) or 0
    cases.save_review(store, fid, NO2, by=users["rev1"], version=1)  # closes it
    dissent_id = cases.record_dissent(store, fid, MOD6, by=users["rev2"], version=1)
    case = _case(store, f.key)
    assert case.finding["status"] == "closed" and case.final_mod is False
    assert [(d["id"], d["reviewer"], d["judgement"]) for d in case.dissents] == [
        (dissent_id, "carol", 6)
    ]
    assert _audit(store, "review.dissent")[0].username == "carol"
    with store.engine.connect() as conn, pytest.raises(sa.exc.DBAPIError):
        conn.execute(tables.review_dissents.delete())


def test_rescan_that_changes_a_reviewed_case_keeps_the_reviewed_version(store: Store, users):
    f = finding("p1", score=0.97)
    tl = timeline("p1")
    store.upsert_findings([f], {"p1": tl})
    fid = cases.find_id(store, f.key) or 0
    cases.save_review(store, fid, NO2, by=users["rev1"], version=1)
    before = _case(store, f.key).finding
    # the same scan again changes nothing
    store.upsert_findings([f], {"p1": tl})
    assert _case(store, f.key).finding["snapshot_version"] == 1
    # a re-scan with fewer events and another score
    fewer = replace(tl, events=tl.events[:3])
    store.upsert_findings([replace(f, score=0.04)], {"p1": fewer})
    case = _case(store, f.key)
    after = case.finding
    assert after["snapshot_version"] == 2 and after["changed_since_review"] is True
    assert after["version"] == before["version"] + 1
    assert after["score"] == pytest.approx(0.04) and len(after["snapshot"]["events"]) == 3
    kept = cases.snapshot_version(store, fid, 1)
    assert kept is not None and kept["score"] == pytest.approx(0.97)
    assert kept["snapshot"] == before["snapshot"]
    assert [v["version"] for v in case.versions] == [1]
    entry = _audit(store, "case.rescan_changed")[-1]
    assert entry.finding_id == fid and set(entry.detail["fields"]) >= {"snapshot", "score"}
    assert entry.detail["kept_version"] == 1


def test_rescan_of_an_unreviewed_case_just_refreshes_it(store: Store) -> None:
    f = finding("p1", score=0.9)
    store.upsert_findings([f], {"p1": timeline("p1")})
    store.upsert_findings([replace(f, score=0.1)])
    case = _case(store, f.key)
    assert case.finding["snapshot_version"] == 1 and not case.finding["changed_since_review"]
    assert case.finding["score"] == pytest.approx(0.1)


def test_findings_no_later_scan_produces_are_marked_and_leave_the_open_queue(store: Store):
    a, b = finding("p1"), finding("p2")
    store.upsert_findings([a, b])
    assert store.mark_gone([a.key]) == 1
    assert store.mark_gone([a.key]) == 0  # already marked
    open_keys = [r["key"] for r in cases.queue(store, cases.QueueFilter(status="open")).rows]
    assert open_keys == [b.key]
    everything = cases.queue(store, cases.QueueFilter()).rows
    assert {r["key"]: bool(r["gone_at"]) for r in everything} == {a.key: True, b.key: False}
    assert len(_audit(store, "case.gone")) == 1
    store.upsert_findings([a])  # produced again
    assert not _case(store, a.key).finding["gone_at"]


def test_findings_on_one_visit_form_one_case_with_every_rule(store: Store, users) -> None:
    """ED-1 at 72 h and at 10 days on the same ED visit, SP-1 on it too: one case."""
    ed72 = finding("p1", rule="ed-72h", title="ED return within 72 h", level="medium")
    ed10 = finding("p1", rule="ed-10d", title="ED return within 10 days", level="low")
    sp1 = finding("p1", rule="rule-sp1", score=0.8)
    later = finding("p1", rule="rule-sp1", start=T0 + timedelta(days=90))  # another visit
    later = replace(later, key=key_for("p1", "rule-sp1", "later"), index_ref="Encounter/later")
    other = finding("p2", rule="ed-72h", title="ED return within 72 h")
    store.upsert_findings([ed72, other])
    fid = cases.find_id(store, ed72.key) or 0
    cases.save_review(store, fid, NO2, by=users["rev1"], version=1)
    store.upsert_findings([ed10, sp1, later])
    page = cases.queue(store, cases.QueueFilter(page_size=50))
    by_key = {r["key"]: r for r in page.rows}
    assert set(by_key) == {ed72.key, later.key, other.key}
    assert by_key[ed72.key]["rules"] == [
        "ED return within 72 h",
        "ED return within 10 days",
        "ED dizziness then stroke admission",
    ]
    case = _case(store, ed72.key)
    assert [m["rule_id"] for m in case.members] == ["ed-10d", "rule-sp1"]
    # a rule added to a reviewed case flags it
    assert case.finding["changed_since_review"] is True
    added = [e.detail.get("rule_added") for e in _audit(store, "case.rescan_changed")]
    assert added == ["ed-10d", "rule-sp1"]
    # idempotent: the same findings again join nothing new
    store.upsert_findings([ed72, ed10, sp1, later, other])
    assert cases.queue(store, cases.QueueFilter(page_size=50)).total == 3


def test_findings_in_one_batch_group_too(store: Store) -> None:
    a = finding("p1", rule="ed-72h")
    b = finding("p1", rule="ed-10d")
    store.upsert_findings([b, a])
    rows = cases.queue(store, cases.QueueFilter()).rows
    assert len(rows) == 1 and len(rows[0]["rules"]) == 2


def test_scans_are_audited(store: Store) -> None:
    store.upsert_findings([finding("p1"), finding("p2")])
    entry = _audit(store, "scan.import")[-1]
    assert entry.detail == {"new": 2, "changed_reviewed": 0, "joined_episode": 0}


def test_notes_with_nul_are_refused_by_the_form_model() -> None:
    with pytest.raises(ValueError, match="NUL"):
        ReviewInput(items=[2] * 13, harm="none", notes="bad\x00note")


def test_process_breakdown_factors_are_optional_checked_and_kept(store: Store, users) -> None:
    with pytest.raises(ValueError, match="unknown process breakdown"):
        ReviewInput(items=[5] * 13, harm="mild", factors=["astrology"])
    f = finding("p1")
    store.upsert_findings([f])
    fid = cases.find_id(store, f.key) or 0
    review = ReviewInput(items=[5] * 13, harm="mild", factors=["follow_up", "tests", "tests"])
    cases.save_review(store, fid, review, by=users["rev1"], version=1)
    assert _case(store, f.key).reviews[0]["factors"] == ["tests", "follow_up"]
