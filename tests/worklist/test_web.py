"""The web layer: login, sessions, CSRF, roles, conflicts and audit (both databases)."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from plugin.config import Settings
from plugin.worklist import tables
from plugin.worklist.store import Store
from plugin.worklist.web import mount
from tests.worklist.conftest import PASSWORD, csrf_of
from tests.worklist.factories import finding, timeline

REVIEW = {f"item{i}": "4" for i in range(1, 13)} | {
    "item13": "6",
    "harm": "moderate",
    "missed_dx": "vertebral dissection",
}


@pytest.fixture
def seeded(store: Store) -> list:
    fs = [finding(f"p{i}", score=i / 10) for i in range(3)]
    store.upsert_findings(fs, {f.patient_id: timeline(f.patient_id) for f in fs})
    return fs


def test_nothing_without_login(client_for, seeded) -> None:
    anon = client_for(None)
    for path in (
        "/worklist/",
        f"/worklist/cases/{seeded[0].key}",
        "/worklist/dashboard",
        "/worklist/admin/users",
        "/worklist/admin/export/csv",
    ):
        response = anon.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/worklist/login?next=")
        assert "p0" not in response.text
    posted = anon.post(f"/worklist/cases/{seeded[0].key}/review", data=REVIEW)
    assert posted.status_code == 401
    assert anon.get("/", follow_redirects=False).headers["location"] == "/worklist/"
    anon.cookies.set("dxsafety_session", "forged")
    forged = anon.get("/worklist/", follow_redirects=False)
    assert forged.status_code == 303


def test_wrong_password_is_refused_and_audited(client_for, store: Store) -> None:
    anon = client_for(None)
    page = anon.get("/worklist/login")
    response = anon.post(
        "/worklist/login",
        data={"username": "bob", "password": "nope", "csrf_token": csrf_of(page.text)},
    )
    assert response.status_code == 401 and "Wrong user name or password" in response.text
    assert "dxsafety_session" not in response.cookies
    with store.engine.connect() as conn:
        actions = conn.execute(sa.select(tables.audit_log.c.action)).scalars().all()
    assert "login.failed" in actions


def test_session_cookie_flags(client_for) -> None:
    anon = client_for(None)
    page = anon.get("/worklist/login")
    response = anon.post(
        "/worklist/login",
        data={"username": "bob", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
        follow_redirects=False,
    )
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("dxsafety_session=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain-http development base URL
    assert response.headers["location"] == "/worklist/"


def test_session_cookie_is_secure_behind_https(store: Store, users, tmp_path) -> None:
    settings = Settings(
        database_url=store.url, public_base_url="https://dx.example.org", rules_dir=tmp_path
    )
    app = FastAPI()
    mount(app, settings, store=store)
    with TestClient(app, base_url="https://testserver") as client:
        page = client.get("/worklist/login")
        response = client.post(
            "/worklist/login",
            data={"username": "bob", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
            follow_redirects=False,
        )
    cookie = response.headers["set-cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie


def test_csrf_token_required_on_every_form(client_for, seeded) -> None:
    bob = client_for("bob")
    key = seeded[0].key
    page = bob.get(f"/worklist/cases/{key}")
    token = csrf_of(page.text)
    for data in (REVIEW | {"version": "1"}, REVIEW | {"version": "1", "csrf_token": "x" * 43}):
        refused = bob.post(f"/worklist/cases/{key}/review", data=data)
        assert refused.status_code == 403 and "security token" in refused.text
    assert (
        bob.post(
            f"/worklist/cases/{key}/assign", data={"assignee": "me", "version": "1"}
        ).status_code
        == 403
    )
    assert bob.post("/worklist/logout", data={}).status_code == 403
    ok = bob.post(
        f"/worklist/cases/{key}/review", data=REVIEW | {"version": "1", "csrf_token": token}
    )
    assert ok.status_code == 200 and "goes on to another reviewer" in ok.text
    # the login form has its own token (double-submit cookie)
    anon = client_for(None)
    anon.get("/worklist/login")
    refused = anon.post("/worklist/login", data={"username": "bob", "password": PASSWORD})
    assert refused.status_code == 403


def test_reviewer_cannot_do_admin_actions(client_for, seeded, users) -> None:
    bob = client_for("bob")
    token = csrf_of(bob.get("/worklist/").text)
    assert bob.get("/worklist/admin/users").status_code == 403
    assert bob.get("/worklist/admin/audit").status_code == 403
    assert bob.get("/worklist/admin/export/labels").status_code == 403
    made = bob.post(
        "/worklist/admin/users",
        data={"username": "mallory", "password": "x" * 12, "role": "admin", "csrf_token": token},
    )
    assert made.status_code == 403
    key = seeded[0].key
    other = bob.post(
        f"/worklist/cases/{key}/assign",
        data={"assignee": str(users["rev2"].id), "version": "1", "csrf_token": token},
    )
    assert other.status_code == 403
    assert (
        bob.post(
            f"/worklist/cases/{key}/reopen", data={"version": "1", "csrf_token": token}
        ).status_code
        == 403
    )
    alice = client_for("alice")
    admin_token = csrf_of(alice.get("/worklist/admin/users").text)
    made = alice.post(
        "/worklist/admin/users",
        data={
            "username": "dave",
            "password": "a fine passphrase",
            "role": "reviewer",
            "csrf_token": admin_token,
        },
    )
    assert made.status_code == 200 and "dave" in made.text
    assert alice.get("/worklist/admin/export/labels").status_code == 200


def test_conflicting_saves_in_the_browser_keep_the_loser_input(client_for, seeded) -> None:
    key = seeded[0].key
    bob, carol = client_for("bob"), client_for("carol")
    bob_page, carol_page = bob.get(f"/worklist/cases/{key}"), carol.get(f"/worklist/cases/{key}")
    first = bob.post(
        f"/worklist/cases/{key}/review",
        data=REVIEW | {"version": "1", "csrf_token": csrf_of(bob_page.text)},
    )
    assert first.status_code == 200
    carol_input = REVIEW | {"item13": "2", "notes": "Carol's careful notes", "harm": "none"}
    second = carol.post(
        f"/worklist/cases/{key}/review",
        data=carol_input | {"version": "1", "csrf_token": csrf_of(carol_page.text)},
    )
    assert second.status_code == 409
    assert "Conflict" in second.text and "NOT saved" in second.text
    assert "Carol&#39;s careful notes" in second.text
    assert re.search(r'name="item13" value="2"[^>]*checked', second.text)
    assert re.search(r'name="harm" value="none"[^>]*checked', second.text)
    # the re-rendered form carries the new version: saving again becomes the second review
    version = re.search(r'name="version" value="(\d+)"', second.text)
    assert version and version.group(1) == "2"
    third = carol.post(
        f"/worklist/cases/{key}/review",
        data=carol_input | {"version": "2", "csrf_token": csrf_of(second.text)},
    )
    assert third.status_code == 200 and "goes on to another reviewer" in third.text


def test_second_reviewer_is_blinded_until_they_submit(client_for, seeded) -> None:
    key = seeded[0].key
    bob, carol = client_for("bob"), client_for("carol")
    bob.post(
        f"/worklist/cases/{key}/review",
        data=REVIEW
        | {"version": "1", "csrf_token": csrf_of(bob.get(f"/worklist/cases/{key}").text)},
    )
    page = carol.get(f"/worklist/cases/{key}")
    assert "hidden until you submit" in page.text and "vertebral dissection" not in page.text
    # blind: nothing on the page tells carol this is a second review (which only follows a
    # first judgement of a missed opportunity): not the heading, not the status
    assert "Second review" not in page.text and "second review" not in page.text
    assert 'id="review-heading">Review<' in page.text
    assert re.search(r'id="case-status">in review<', page.text)
    queue = carol.get("/worklist/?status=all").text
    assert "second review" not in queue and "second_review" not in queue


def test_case_page_shows_timeline_model_and_paraphrase_label(client_for, seeded) -> None:
    page = client_for("bob").get(f"/worklist/cases/{seeded[2].key}")
    assert page.status_code == 200
    html = page.text
    assert "<svg" in html and "Labs &amp; vitals" in html and "Imaging &amp; reports" in html
    assert "Glucose" in html and "0.20" in html and "stroke" in html
    assert "paraphrases" in html and html.count('type="radio" name="item') == 13 * 7
    assert "Severe harm" in html and "Miscoded" in html
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"


def test_invalid_review_is_rejected_with_input_kept(client_for, seeded) -> None:
    key = seeded[0].key
    bob = client_for("bob")
    token = csrf_of(bob.get(f"/worklist/cases/{key}").text)
    partial = {k: v for k, v in REVIEW.items() if k != "item7"} | {"notes": "half done"}
    response = bob.post(
        f"/worklist/cases/{key}/review", data=partial | {"version": "1", "csrf_token": token}
    )
    assert response.status_code == 400 and "all 13 items" in response.text
    assert "half done" in response.text


def test_queue_and_dashboard_render(client_for, seeded) -> None:
    bob = client_for("bob")
    queue = bob.get("/worklist/?status=new&level=high")
    assert queue.status_code == 200
    assert queue.text.index(seeded[2].key) < queue.text.index(seeded[1].key)  # best score first
    dash = bob.get("/worklist/dashboard")
    assert dash.status_code == 200 and "Positive predictive value" in dash.text
    assert "No card feedback received yet" in dash.text


def test_dashboard_shows_card_outcomes_and_agreement(client_for, store: Store, users) -> None:
    from plugin.worklist import cases
    from plugin.worklist.saferdx import ReviewInput

    for i, outcome in enumerate(("accepted", "overridden", "overridden")):
        store.record_feedback(
            service_id="dxsafety-missed-dx",
            card_id=f"c{i}",
            outcome=outcome,
            outcome_timestamp=f"2024-05-0{i + 1}T10:00:00Z",
            accepted_suggestions=[],
            override_reason={"reason": {"code": "seen", "display": "Already evaluated"}},
        )
    fs = [finding(f"k{i}") for i in range(2)]
    store.upsert_findings(fs)
    mod, no = ReviewInput(items=[5] * 13, harm="mild"), ReviewInput(items=[2] * 13, harm="none")
    for f, second in zip(fs, (mod, no), strict=True):
        case_id = cases.find_id(store, f.key) or 0
        cases.save_review(store, case_id, mod, by=users["rev1"], version=1)
        cases.save_review(store, case_id, second, by=users["rev2"], version=2)
    from plugin.cds.cards import card_uuid

    store.record_feedback(service_id="dxsafety-missed-dx", card_id=card_uuid(fs[0].key),
                          outcome="accepted", outcome_timestamp="2024-05-09T10:00:00Z",
                          override_reason=None, accepted_suggestions=[])  # fmt: skip
    # a card sent since issue 14: a fresh uuid per call, joined to its finding via cds_cards
    from plugin.cds.cards import IssuedCard
    from plugin.cds.issued import record_cards

    fresh = IssuedCard(card_id="fresh-1", finding_key=fs[1].key)
    record_cards(store, "dxsafety-missed-dx", [fresh])
    store.record_feedback(service_id="dxsafety-missed-dx", card_id="fresh-1",
                          outcome="accepted", outcome_timestamp="2024-05-10T10:00:00Z",
                          override_reason=None, accepted_suggestions=[])  # fmt: skip
    dash = client_for("alice").get("/worklist/dashboard").text
    assert "dxsafety-missed-dx" in dash and "Already evaluated: 2" in dash
    by_rule = re.search(r'id="feedback-by-rule".*?</table>', dash, re.S)
    assert by_rule and "ED dizziness then stroke admission" in by_rule.group(0)
    # both accepted cards count for the rule: the legacy id and the fresh one via cds_cards
    assert '<td class="num">2</td><td class="num">0</td>' in by_rule.group(0)
    assert re.search(r"<td class=\"num\">3</td><td class=\"num\">2</td>", dash)
    assert "over 2 double-reviewed cases; raw agreement 50" in dash


def test_logout_ends_the_session(client_for, store: Store) -> None:
    bob = client_for("bob")
    token = csrf_of(bob.get("/worklist/").text)
    cookie = bob.cookies.get("dxsafety_session")
    assert (
        bob.post("/worklist/logout", data={"csrf_token": token}, follow_redirects=False).status_code
        == 303
    )
    replay = client_for(None)
    replay.cookies.set("dxsafety_session", cookie)
    response = replay.get("/worklist/", follow_redirects=False)
    assert response.status_code == 303


def test_repeated_failed_logins_lock_the_user_name(client_for) -> None:
    anon = client_for(None)
    token = csrf_of(anon.get("/worklist/login").text)
    for _ in range(5):
        wrong = anon.post(
            "/worklist/login", data={"username": "bob", "password": "guess", "csrf_token": token}
        )
        assert wrong.status_code == 401
    locked = anon.post(
        "/worklist/login", data={"username": "bob", "password": PASSWORD, "csrf_token": token}
    )
    assert locked.status_code == 429 and "Too many failed attempts" in locked.text
    assert "dxsafety_session" not in locked.cookies
    # another user is not affected
    other = anon.post(
        "/worklist/login",
        data={"username": "carol", "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert other.status_code == 303


def test_garbage_form_values_are_refused_cleanly(client_for, seeded) -> None:
    key = seeded[0].key
    bob = client_for("bob")
    token = csrf_of(bob.get(f"/worklist/cases/{key}").text)
    for version in ("abc", "²", "9" * 40, "-1"):
        response = bob.post(
            f"/worklist/cases/{key}/review", data=REVIEW | {"version": version, "csrf_token": token}
        )
        assert response.status_code == 409, version
    assert bob.get("/worklist/?page=zz&assignee=%C2%B2&since=nonsense").status_code == 200
    assert bob.get("/worklist/cases/does-not-exist").status_code == 404


def test_record_text_is_escaped_everywhere(client_for, store: Store) -> None:
    from dataclasses import replace

    from plugin.timeline.model import Event, Kind

    evil = "<script>alert(1)</script>"
    f = replace(finding("px"), summary=evil, rule_title=evil, missed_dx=((evil, 0.5),),
                reasons=(evil,), score=0.5)  # fmt: skip
    tl = timeline("px")
    note = Event(patient="px", t=f.index_start, kind=Kind.OBSERVATION, system="loinc",
                 code="1-1", source="Observation/evil", text=evil + '"><img src=x>')  # fmt: skip
    store.upsert_findings([f], {"px": replace(tl, events=(*tl.events, note))})
    bob = client_for("bob")
    for path in ("/worklist/", f"/worklist/cases/{f.key}", "/worklist/dashboard"):
        html = bob.get(path).text
        assert evil not in html and "<img src=x>" not in html, path
        assert "&lt;script&gt;" in html, path


def test_login_never_redirects_off_site(client_for) -> None:
    anon = client_for(None)
    for target in ("//evil.example/x", "https://evil.example/", "/elsewhere"):
        token = csrf_of(anon.get("/worklist/login", params={"next": target}).text)
        response = anon.post("/worklist/login", data={"username": "bob", "password": PASSWORD,
                                                       "csrf_token": token, "next": target},
                             follow_redirects=False)  # fmt: skip
        assert response.headers["location"] == "/worklist/", target


def test_case_page_shows_which_model_scored_it(client_for, store: Store) -> None:
    """Issue 13: the worklist shows which model version scored each case."""
    from dataclasses import replace

    scored = replace(finding("p-model", score=0.42), extra={"model_version": "abc123def456"})
    unversioned = finding("p-old", score=0.3)
    store.upsert_findings([scored, unversioned])
    bob = client_for("bob")
    page = bob.get(f"/worklist/cases/{scored.key}").text
    assert 'id="model-version">model abc123def456<' in page
    assert "model version not recorded" in bob.get(f"/worklist/cases/{unversioned.key}").text
