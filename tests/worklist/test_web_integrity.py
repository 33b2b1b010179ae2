"""The web side of issue 15 (items 1-5, 9-12): NUL characters refused with a 400, the
"saved" banner, answers kept across an idle log-off and a lost conflict, audit of views and
refusals with the real actor, a paged audit page, login throttling per account and address,
the account lifecycle. Both databases."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from plugin.worklist import cases, tables
from plugin.worklist.saferdx import ReviewInput
from plugin.worklist.store import Store, now
from tests.worklist.conftest import PASSWORD, csrf_of, login
from tests.worklist.factories import finding, timeline

REVIEW = {f"item{i}": "4" for i in range(1, 13)} | {"item13": "6", "harm": "moderate"}


@pytest.fixture
def seeded(store: Store) -> list:
    fs = [finding(f"p{i}", score=i / 10) for i in range(3)]
    store.upsert_findings(fs, {f.patient_id: timeline(f.patient_id) for f in fs})
    return fs


def _audit(store: Store, action: str | None = None) -> list[sa.Row]:
    a = tables.audit_log
    query = sa.select(a).order_by(a.c.id)
    if action:
        query = query.where(a.c.action == action)
    with store.engine.connect() as conn:
        return conn.execute(query).all()


def test_nul_characters_get_a_clear_400_not_a_500(client_for, seeded) -> None:
    """On PostgreSQL each of these was an unhandled error (500) and the review was lost."""
    bob = client_for("bob")
    key = seeded[0].key
    assert bob.get("/worklist/?rule=a%00b").status_code == 400
    assert bob.get("/worklist/?q=%00").status_code == 400
    assert bob.get("/worklist/cases/ab%00cd").status_code == 400
    token = csrf_of(bob.get(f"/worklist/cases/{key}").text)
    posted = bob.post(f"/worklist/cases/{key}/review",
                      data=REVIEW | {"notes": "kept text\x00more", "version": "1",
                                     "csrf_token": token})  # fmt: skip
    assert posted.status_code == 400 and "NUL" in posted.text
    assert "kept textmore" in posted.text  # the answers are still in the form
    assert re.search(r'name="item13" value="6"[^>]*checked', posted.text)
    assigned = bob.post(
        f"/worklist/cases/{key}/assign",
        data={"assignee": "me\x00", "version": "1", "csrf_token": token},
    )
    assert assigned.status_code == 400
    draft = bob.post(f"/worklist/cases/{key}/draft",
                     data={"notes": "x\x00", "csrf_token": token})  # fmt: skip
    assert draft.status_code == 400
    anon = client_for(None)
    login_token = csrf_of(anon.get("/worklist/login").text)
    refused = anon.post("/worklist/login", data={"username": "bob\x00", "password": "x",
                                                 "csrf_token": login_token})  # fmt: skip
    assert refused.status_code == 400


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # database-agnostic
def test_saved_banner_shows_only_known_messages(client_for, seeded) -> None:
    bob = client_for("bob")
    key = seeded[0].key
    forged = bob.get(f"/worklist/cases/{key}?saved=Your+account+is+suspended,+call+555").text
    assert "suspended" not in forged and "Saved." not in forged
    assert "The case is closed" in bob.get(f"/worklist/cases/{key}?saved=closed").text


def test_answers_survive_an_idle_log_off(client_for, seeded, store: Store) -> None:
    bob = client_for("bob")
    key = seeded[0].key
    page = bob.get(f"/worklist/cases/{key}").text
    token = csrf_of(page)
    saved = bob.post(
        f"/worklist/cases/{key}/draft",
        data={"item1": "3", "notes": "first thoughts", "csrf_token": token},
    )
    assert saved.status_code == 200 and saved.json() == {"saved": True}
    with store.engine.begin() as conn:  # 31 minutes without a request
        conn.execute(tables.sessions.update().values(last_seen=now() - timedelta(minutes=31)))
    posted = bob.post(f"/worklist/cases/{key}/review",
                      data=REVIEW | {"notes": "my full review", "version": "1",
                                     "multi_factor": ["tests", "referrals"],
                                     "csrf_token": token}, follow_redirects=False)  # fmt: skip
    assert posted.status_code == 303
    assert posted.headers["location"].startswith("/worklist/login?next=") and "kept=1" in (
        posted.headers["location"])  # fmt: skip
    assert "answers were kept" in bob.get(posted.headers["location"]).text
    login(bob, "bob")
    again = bob.get(f"/worklist/cases/{key}").text
    assert "my full review" in again and re.search(r'name="item13" value="6"[^>]*checked', again)
    assert re.search(r'name="multi_factor" value="referrals"[^>]*checked', again)
    # a forged post with the lapsed cookie but another token keeps nothing
    with store.engine.begin() as conn:
        conn.execute(tables.sessions.update().values(last_seen=now() - timedelta(minutes=31)))
    forged = bob.post(f"/worklist/cases/{key}/review",
                      data=REVIEW | {"notes": "forged", "csrf_token": "x" * 43},
                      follow_redirects=False)  # fmt: skip
    assert forged.status_code == 401
    fid = cases.find_id(store, key) or 0
    with store.engine.connect() as conn:
        draft = conn.execute(
            sa.select(tables.review_drafts.c.answers).where(
                tables.review_drafts.c.finding_id == fid
            )
        ).scalar_one()
    assert draft["notes"] == "my full review"


def test_lost_conflict_on_a_closed_case_keeps_answers_and_records_dissent(
    client_for, seeded, store: Store, users
) -> None:
    key = seeded[0].key
    carol = client_for("carol")
    token = csrf_of(carol.get(f"/worklist/cases/{key}").text)
    fid = cases.find_id(store, key) or 0
    cases.save_review(
        store, fid, ReviewInput(items=[2] * 13, harm="none"), by=users["rev1"], version=1
    )  # bob closes it meanwhile
    mine = REVIEW | {"notes": "Carol disagrees: missed dissection", "version": "1",
                     "csrf_token": token}  # fmt: skip
    lost = carol.post(f"/worklist/cases/{key}/review", data=mine)
    assert lost.status_code == 409
    assert 'id="save-dissent"' in lost.text and "Carol disagrees" in lost.text
    assert re.search(r'name="item13" value="6"[^>]*checked', lost.text)
    kept = carol.post(f"/worklist/cases/{key}/dissent", data=mine)
    assert kept.status_code == 200 and "recorded as a dissent" in kept.text
    case = cases.get_case(store, key)
    assert case is not None and case.final_mod is False
    assert [(d["reviewer"], d["notes"]) for d in case.dissents] == [
        ("carol", "Carol disagrees: missed dissection")
    ]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # database-agnostic
def test_views_refusals_and_user_creation_are_audited_with_the_real_actor(
    client_for, seeded, store: Store
) -> None:
    bob, alice = client_for("bob"), client_for("alice")
    bob.get("/worklist/?q=p1")
    bob.get("/worklist/dashboard")
    assert bob.get("/worklist/admin/audit").status_code == 403
    token = csrf_of(alice.get("/worklist/admin/users").text)
    alice.post(
        "/worklist/admin/users",
        data={
            "username": "dave",
            "password": "a fine passphrase",
            "role": "reviewer",
            "csrf_token": token,
        },
    )
    alice.get("/worklist/admin/audit")
    queue = _audit(store, "queue.view")[-1]
    assert queue.username == "bob" and queue.detail["searched"] is True
    assert "p1" not in str(queue.detail)  # a searched patient id is not written down
    assert _audit(store, "dashboard.view")[-1].username == "bob"
    denied = _audit(store, "access.denied")[-1]
    assert denied.username == "bob" and denied.detail["path"] == "/worklist/admin/audit"
    made = _audit(store, "user.create")[-1]
    assert made.username == "alice" and made.detail["new_username"] == "dave"
    assert _audit(store, "audit.view")[-1].username == "alice"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # database-agnostic
def test_failed_logins_never_store_what_was_typed(client_for, store: Store) -> None:
    anon = client_for(None)
    token = csrf_of(anon.get("/worklist/login").text)
    anon.post("/worklist/login", data={"username": "Tr0ub4dor&3-typed-as-name", "password": "x",
                                       "csrf_token": token})  # fmt: skip
    anon.post("/worklist/login", data={"username": "bob", "password": "wrong",
                                       "csrf_token": token})  # fmt: skip
    failed = _audit(store, "login.failed")
    assert [(r.username, r.detail["unknown_account"]) for r in failed] == [
        (None, True),
        ("bob", False),
    ]
    with store.engine.connect() as conn:
        everything = " ".join(str(tuple(r)) for t in (tables.audit_log, tables.login_failures)
                              for r in conn.execute(sa.select(t)))  # fmt: skip
    assert "Tr0ub4dor" not in everything


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # database-agnostic
def test_throttling_is_per_account_and_address(app: FastAPI, users, store: Store) -> None:
    attacker = TestClient(app, client=("203.0.113.9", 4000))
    token = csrf_of(attacker.get("/worklist/login").text)
    for _ in range(5):
        attacker.post("/worklist/login", data={"username": "alice", "password": "guess",
                                               "csrf_token": token})  # fmt: skip
    blocked = attacker.post(
        "/worklist/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token}
    )
    assert blocked.status_code == 429
    # alice at her own desk is not locked out by the attacker
    desk = TestClient(app, client=("10.1.2.3", 5000))
    login(desk, "alice")
    # an admin unlock forgets the failures everywhere
    from plugin.worklist import users as accounts

    accounts.unlock(store, users["admin"].id, by=users["admin"])
    assert not accounts.throttled(store, "alice", "203.0.113.9")
    attacker.close()
    desk.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # database-agnostic
def test_account_lifecycle(client_for, users, store: Store) -> None:
    bob, alice = client_for("bob"), client_for("alice")
    token = csrf_of(alice.get("/worklist/admin/users").text)
    bob_id = users["rev1"].id

    def act(action: str, **data: str) -> str:
        response = alice.post(f"/worklist/admin/users/{bob_id}/{action}",
                              data={"csrf_token": token, **data})  # fmt: skip
        assert response.status_code in (200, 400), response.text
        return response.text

    assert "1 session(s) ended" in act("revoke")
    assert bob.get("/worklist/", follow_redirects=False).status_code == 303  # logged out
    assert "common or breached" in act("reset", password="password1234")
    assert "reset" in act("reset", password="a brand new passphrase")
    login(bob, "bob", "a brand new passphrase")
    act("deactivate")
    assert bob.get("/worklist/", follow_redirects=False).status_code == 303
    anon = client_for(None)
    page = anon.get("/worklist/login")
    refused = anon.post(
        "/worklist/login",
        data={
            "username": "bob",
            "password": "a brand new passphrase",
            "csrf_token": csrf_of(page.text),
        },
    )
    assert refused.status_code == 401
    act("activate")
    login(anon, "bob", "a brand new passphrase")
    self_off = alice.post(f"/worklist/admin/users/{users['admin'].id}/deactivate",
                          data={"csrf_token": token})  # fmt: skip
    assert self_off.status_code == 400 and "your own account" in self_off.text
    actions = [r.action for r in _audit(store) if r.action.startswith("user.")]
    assert actions == ["user.revoke_sessions", "user.reset_password", "user.deactivate",
                       "user.activate"]  # fmt: skip


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # database-agnostic
def test_audit_page_is_paged_and_filtered(client_for, store: Store) -> None:
    with store.engine.begin() as conn:
        for i in range(250):
            store.audit(conn, "test.entry", username="zed", i=i)
    alice = client_for("alice")
    first = alice.get("/worklist/admin/audit?action=test.entry").text
    assert first.count("<td>test.entry</td>") == 100 and 'id="older"' in first
    third = alice.get("/worklist/admin/audit?action=test.entry&page=3").text
    assert third.count("<td>test.entry</td>") == 50 and 'id="older"' not in third
    logins = alice.get("/worklist/admin/audit?action=login.").text
    assert "<td>login</td>" in logins and "test.entry" not in logins


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # database-agnostic
def test_queue_search_sort_and_bulk_assignment_with_due_date(client_for, store: Store, users):
    store.upsert_findings([finding(f"mrn-{i}", score=i / 10) for i in range(4)])
    alice = client_for("alice")
    found = alice.get("/worklist/?q=mrn-2").text
    assert found.count("data-href=") == 1 and "mrn-2" in found
    oldest = alice.get("/worklist/?status=all&sort=patient").text
    assert [m for m in re.findall(r"<td>(mrn-\d)</td>", oldest)] == [f"mrn-{i}" for i in range(4)]
    token = csrf_of(alice.get("/worklist/").text)
    keys = [finding(f"mrn-{i}").key for i in (1, 3)]
    done = alice.post("/worklist/bulk-assign", data={"csrf_token": token, "multi_case": keys,
                                                     "assignee": str(users["rev2"].id),
                                                     "due": "2024-06-30", "back": "/worklist/"},
                      follow_redirects=False)  # fmt: skip
    assert done.status_code == 303 and done.headers["location"].endswith("assigned=2")
    mine = cases.queue(store, cases.QueueFilter(assignee=users["rev2"].id, sort="due"))
    assert {r["key"] for r in mine.rows} == set(keys)
    assert {r["due_at"].date().isoformat() for r in mine.rows} == {"2024-06-30"}
    bob = client_for("bob")
    refused = bob.post(
        "/worklist/bulk-assign",
        data={"csrf_token": csrf_of(bob.get("/worklist/").text), "multi_case": keys},
    )
    assert refused.status_code == 403 and "admin" in refused.text
