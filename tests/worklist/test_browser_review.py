"""Issue 15 in real headless Chromium, on SQLite and PostgreSQL: a blinded second review and
adjudication by majority, autosave across an idle log-off, a lost conflict kept as a
dissent, an episode case with two rules, and the "changed since review" flag.
Screenshots go to ``test-artifacts/screenshots/`` (``<backend>-15-*.png``)."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

import pytest
from playwright.sync_api import Browser, Page, expect

from plugin.worklist import cases
from plugin.worklist import users as accounts
from plugin.worklist.saferdx import ReviewInput
from plugin.worklist.store import Store
from tests.worklist.conftest import add_user
from tests.worklist.factories import finding, timeline
from tests.worklist.test_browser import (  # noqa: F401 - settings: the fixture, reused
    fill_review,
    log_in,
    settings,
    shot,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def backend_of(db_url: str) -> str:
    return "postgresql" if db_url.startswith("postgresql") else "sqlite"


def new_page(browser: Browser) -> Page:
    return browser.new_context(viewport={"width": 1280, "height": 900}).new_page()


def answer(page: Page, judgement: int, harm: str = "none") -> None:
    for item in range(1, 13):
        page.locator(f'input[name="item{item}"][value="3"]').check()
    page.locator(f'input[name="item13"][value="{judgement}"]').check()
    page.locator(f'input[name="harm"][value="{harm}"]').check()


def test_blinded_second_review_and_adjudication(
    browser: Browser, server: str, store: Store, users, db_url: str, password_hash: str
) -> None:
    backend = backend_of(db_url)
    add_user(store, "dave", "reviewer", password_hash)
    f = finding("p1", score=0.9)
    store.upsert_findings([f], {"p1": timeline("p1")})
    page = new_page(browser)
    log_in(page, server, "bob")
    page.goto(f"{server}/worklist/cases/{f.key}")
    fill_review(page, 6, "moderate", "posterior circulation stroke")
    expect(page.locator("#case-status")).to_have_text("in review")
    page.context.close()

    # carol: assigned at once, told in her queue, and nothing says "second review"
    page = new_page(browser)
    log_in(page, server, "carol")
    expect(page.locator("#my-cases")).to_be_visible()
    page.goto(f"{server}/worklist/cases/{f.key}")
    expect(page.locator("#review-heading")).to_have_text("Review")
    expect(page.locator("#case-status")).to_have_text("in review")
    expect(page.locator("#blind-note")).to_be_visible()
    assert "second review" not in page.content().lower()
    assert "posterior circulation" not in page.content()
    shot(page, backend, "15-blind-second-review")
    answer(page, 2)
    page.get_by_role("button", name="Save review").click()
    expect(page.locator("#message")).to_contain_text("another reviewer")
    page.context.close()

    # a tie: the tie-break goes to dave (the reviewer with no part in it), who decides
    page = new_page(browser)
    log_in(page, server, "dave")
    expect(page.locator("#my-cases")).to_contain_text("1 case is assigned to you")
    page.goto(f"{server}/worklist/cases/{f.key}")
    expect(page.locator("#review-heading")).to_have_text("Review")
    answer(page, 5, "moderate")
    page.get_by_role("button", name="Save review").click()
    expect(page.locator("#case-status")).to_have_text("closed")
    page.context.close()

    page = new_page(browser)
    log_in(page, server, "alice")
    page.goto(f"{server}/worklist/cases/{f.key}")
    expect(page.locator(".review")).to_have_count(3)
    expect(page.locator("#adjudication")).to_contain_text("majority of all independent reviews")
    shot(page, backend, "15-adjudicated")
    page.context.close()
    case = cases.get_case(store, f.key)
    assert case is not None and case.final_mod is True
    assert [r["round"] for r in case.reviews] == [1, 2, 3]


def test_autosave_survives_an_idle_log_off(
    browser: Browser, server: str, store: Store, users, db_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    backend = backend_of(db_url)
    # long enough that a loaded 2-core CI run saves the draft before the session ends (6 s
    # was not: the log-off came first); the page warns at 16 - 4 = 12 s
    monkeypatch.setattr(accounts, "IDLE_TIMEOUT", timedelta(seconds=16))
    monkeypatch.setattr(accounts, "TOUCH_EVERY", timedelta(0))
    f = finding("p1", score=0.9)
    store.upsert_findings([f], {"p1": timeline("p1")})
    page = new_page(browser)
    log_in(page, server, "bob")
    page.goto(f"{server}/worklist/cases/{f.key}")
    answer(page, 6, "moderate")
    page.get_by_label("Notes").fill("Typed before lunch: HINTS exam never done.")
    expect(page.locator("#draft-status")).to_contain_text("Draft saved", timeout=10000)
    # the warning comes before the log-off
    expect(page.locator("#idle-warning")).to_be_visible(timeout=20000)
    shot(page, backend, "15-idle-warning")
    page.wait_for_timeout(16500)  # now past the idle limit: the session has ended
    page.get_by_role("button", name="Save review").click()
    expect(page).to_have_url(re.compile(r"/worklist/login\?next=.*kept=1"))
    expect(page.locator("#login-notice")).to_contain_text("answers were kept")
    shot(page, backend, "15-idle-logged-off")
    page.get_by_label("User name").fill("bob")
    page.get_by_label("Password").fill("correct horse battery")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(rf"/worklist/cases/{f.key}$"))
    expect(page.get_by_label("Notes")).to_have_value("Typed before lunch: HINTS exam never done.")
    expect(page.locator('input[name="item13"][value="6"]')).to_be_checked()
    shot(page, backend, "15-draft-restored")
    monkeypatch.setattr(accounts, "IDLE_TIMEOUT", timedelta(minutes=30))
    page.get_by_role("button", name="Save review").click()
    expect(page.locator("#message")).to_contain_text("Saved")
    case = cases.get_case(store, f.key)
    assert case is not None and case.reviews[0]["notes"].startswith("Typed before lunch")


def test_a_lost_conflict_is_kept_as_dissent(
    browser: Browser, server: str, store: Store, users, db_url: str
) -> None:
    backend = backend_of(db_url)
    f = finding("p1", score=0.9)
    store.upsert_findings([f], {"p1": timeline("p1")})
    page = new_page(browser)
    log_in(page, server, "carol")
    page.goto(f"{server}/worklist/cases/{f.key}")
    answer(page, 6, "severe")
    page.get_by_label("Notes").fill("Carol: this was a missed vertebral dissection.")
    # meanwhile bob closes the case as no missed opportunity
    fid = cases.find_id(store, f.key) or 0
    cases.save_review(store, fid, ReviewInput(items=[2] * 13, harm="none"), by=users["rev1"],
                      version=1)  # fmt: skip
    page.get_by_role("button", name="Save review").click()
    expect(page.locator("#message")).to_contain_text("Conflict")
    expect(page.get_by_label("Notes")).to_have_value(
        "Carol: this was a missed vertebral dissection."
    )
    expect(page.locator('input[name="item13"][value="6"]')).to_be_checked()
    shot(page, backend, "15-conflict-kept")
    page.get_by_role("button", name="Record as dissent").click()
    expect(page.locator("#message")).to_contain_text("dissent")
    expect(page.locator(".review.dissent")).to_contain_text("missed vertebral dissection")
    shot(page, backend, "15-dissent-recorded")
    case = cases.get_case(store, f.key)
    assert case is not None and case.final_mod is False and len(case.dissents) == 1


def test_episode_case_and_changed_since_review(
    browser: Browser, server: str, store: Store, users, db_url: str
) -> None:
    backend = backend_of(db_url)
    tl = timeline("p1")
    sp1 = finding("p1", score=0.8)
    ed = finding("p1", rule="ed-return-72h", title="ED return within 72 hours", level="medium")
    store.upsert_findings([sp1, ed], {"p1": tl})
    page = new_page(browser)
    log_in(page, server, "bob")
    rows = page.locator("table.queue tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("2 rules")
    shot(page, backend, "15-episode-queue")
    rows.first.locator("a").first.click()
    expect(page.locator("#episode-rules li")).to_have_count(2)
    expect(page.locator("#episode-rules")).to_contain_text("ED return within 72 hours")
    shot(page, backend, "15-episode-case")
    answer(page, 2)
    page.get_by_role("button", name="Save review").click()
    expect(page.locator("#case-status")).to_have_text("closed")

    # a re-scan changes the reviewed case: the reviewed version is kept and the case flagged
    store.upsert_findings([replace(sp1, score=0.04)], {"p1": replace(tl, events=tl.events[:2])})
    page.goto(f"{server}/worklist/?status=all")
    expect(page.locator("table.queue tbody tr").first).to_contain_text("changed")
    page.goto(f"{server}/worklist/cases/{sp1.key}")
    expect(page.locator("#changed-flag")).to_contain_text("Changed since review")
    shot(page, backend, "15-changed-since-review")
    page.locator("#changed-flag a").first.click()
    expect(page.locator("#version-banner")).to_contain_text("kept version 1")
    expect(page.locator("table.events tbody tr")).to_have_count(len(tl.events))
    shot(page, backend, "15-reviewed-version")
    page.context.close()
