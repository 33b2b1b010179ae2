"""The worklist in real headless Chromium (Debian ``chromium``, driven by Playwright).

Log in, use the queue with the keyboard, open a case, complete a review, see the case move
to second review, let a second reviewer agree, and see the dashboard's PPV change.
Screenshots go to ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from plugin.config import Settings
from plugin.worklist import cases
from plugin.worklist.rulemeta import load_rule_meta
from plugin.worklist.saferdx import ReviewInput
from plugin.worklist.store import Store
from tests.worklist.conftest import PASSWORD
from tests.worklist.factories import finding, timeline

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "screenshots"


@pytest.fixture
def settings(db_url: str) -> Settings:
    """The project's own rules, so the dashboard shows their published PPV."""
    return Settings(database_url=db_url, rules_dir=ROOT / "rules", env="test")


def sp1_rule_id() -> tuple[str, float | None]:
    meta = load_rule_meta(ROOT / "rules")
    found = [(rid, m.published_ppv) for rid, m in meta.items() if m.trigger == "SP-1"]
    return found[0] if found else ("rule-sp1", None)


def shot(page: Page, backend: str, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{backend}-{name}.png"), full_page=True)


def log_in(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/worklist/")
    expect(page).to_have_url(re.compile(r"/worklist/login\?next="))
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("header .who")).to_contain_text(username)


def fill_review(page: Page, judgement: int, harm: str, missed: str) -> None:
    for item in range(1, 13):
        page.locator(f'input[name="item{item}"][value="4"]').check()
    page.locator(f'input[name="item13"][value="{judgement}"]').check()
    page.locator(f'input[name="harm"][value="{harm}"]').check()
    page.get_by_label("Missed or delayed diagnosis").fill(missed)
    page.get_by_label("Notes").fill("Dizziness with vascular risk factors, no HINTS exam.")
    page.get_by_role("button", name="Save review").click()


def ppv_cell(page: Page, rule: str) -> str:
    return page.locator(f'#rule-stats tr[data-rule="{rule}"] td.ppv').inner_text()


def test_review_journey(browser: Browser, server: str, store: Store, users, db_url: str) -> None:
    backend = "postgresql" if db_url.startswith("postgresql") else "sqlite"
    rule, published = sp1_rule_id()
    fs = [finding(f"p{i}", rule=rule, score=s) for i, s in enumerate((0.35, 0.92, 0.58, 0.12))]
    store.upsert_findings(fs, {f.patient_id: timeline(f.patient_id) for f in fs})
    # one case already closed as "no missed opportunity": PPV starts at 0 %
    closed = cases.find_id(store, fs[3].key)
    assert closed is not None
    cases.save_review(store, closed, ReviewInput(items=[2] * 13, harm="none"),
                      by=users["rev2"], version=1)  # fmt: skip
    top = fs[1]  # the highest score

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    log_in(page, server, "bob")
    expect(page.locator("table.queue tbody tr")).to_have_count(3)  # opens on the open cases
    shot(page, backend, "01-queue")

    page.goto(f"{server}/worklist/dashboard")
    assert ppv_cell(page, rule) == "0.0\u00a0%"

    # keyboard: j selects the first (best-ranked) case, Enter opens it
    page.goto(f"{server}/worklist/")
    page.keyboard.press("j")
    expect(page.locator("table.queue tbody tr.selected")).to_have_count(1)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"/worklist/cases/{top.key}$"))
    expect(page.locator("svg.timeline")).to_be_visible()
    expect(page.get_by_text("paraphrases", exact=False)).to_be_visible()
    shot(page, backend, "02-case")

    fill_review(page, 6, "moderate", "posterior circulation stroke")
    expect(page.locator("#message")).to_contain_text("goes on to another reviewer")
    expect(page.locator("#case-status")).to_have_text("in review")  # blind: not "second"
    shot(page, backend, "03-review-saved")
    context.close()

    # the second review was assigned to carol at once; her queue tells her
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    log_in(page, server, "carol")
    expect(page.locator("#my-cases")).to_contain_text("1 case is assigned to you")
    page.locator("#my-cases a").click()
    rows = page.locator("table.queue tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-href", f"/worklist/cases/{top.key}")
    expect(rows.first.locator(".status")).to_have_text("in review")
    shot(page, backend, "04-queue-assigned")

    # the second reviewer is blinded to the first review, agrees, and the case closes
    page.goto(f"{server}/worklist/cases/{top.key}")
    expect(page.get_by_text("hidden until you submit", exact=False)).to_be_visible()
    fill_review(page, 7, "severe", "posterior circulation stroke")
    expect(page.locator("#case-status")).to_have_text("closed")

    page.goto(f"{server}/worklist/dashboard")
    assert ppv_cell(page, rule) == "50.0\u00a0%"
    if published is not None:  # the rule's published PPV is drawn and listed beside ours
        expect(page.locator("svg.ppv title", has_text="published PPV")).to_have_count(1)
        row = page.locator(f'#rule-stats tr[data-rule="{rule}"]')
        expect(row).to_contain_text(f"{published * 100:.1f}\u00a0%")
    expect(page.locator("svg.ppv")).to_be_visible()
    shot(page, backend, "05-dashboard")
    context.close()
    assert (SHOTS / f"{backend}-05-dashboard.png").stat().st_size > 10_000
