"""The dashboard in real Chromium: an admin sets a rule's sampling mode and draws, the drawn
cases are reviewed, and the dashboard shows the sampled PPV with its CI beside the
ranked-triage yield (screenshot in test-artifacts/screenshots/)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from playwright.sync_api import expect, sync_playwright

from plugin.config import Settings
from plugin.measure import measure_visits
from plugin.measure.pairs import load_pairs
from plugin.measure.run import save_summary
from plugin.synth.spade import plan_cohort, visits_of_plan
from plugin.worklist.store import Store
from plugin.worklist.web import mount
from tests.loop.helpers import review, reviewer, selection_of
from tests.loop.test_sampling import RULE, population
from tests.worklist.conftest import PASSWORD, add_user, serve
from tests.worklist.factories import finding
from tests.worklist.pg import free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path}/dash.db")
    yield s
    s.close()


@pytest.fixture
def server(store: Store, tmp_path: Path) -> Iterator[str]:
    app = FastAPI()
    mount(app, Settings(database_url=store.url, rules_dir=tmp_path / "none", env="test"),
          store=store)  # fmt: skip
    yield from serve(app, free_port())


def test_dashboard_shows_sampled_ppv_beside_ranked_triage_yield(server: str, store: Store) -> None:
    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is missing: run scripts/system-deps")
    from argon2 import PasswordHasher

    add_user(store, "alice", "admin", PasswordHasher().hash(PASSWORD))
    pop = population(300, seed=7)
    fs = [finding(f"p{i}", rule=RULE, score=s) for i, (s, _) in enumerate(pop)]
    store.upsert_findings(fs)
    truth = {f.key: y for f, (_, y) in zip(fs, pop, strict=True)}
    rev = reviewer(store)
    top = sorted(fs, key=lambda f: -(f.score or 0))[:40]
    review(store, {f.key: truth[f.key] for f in top}, rev)  # ranked triage: the queue's top

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                    args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{server}/worklist/")
        page.get_by_label("User name").fill("alice")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.goto(f"{server}/worklist/admin/sampling")
        page.locator('select[name="mode"]').select_option("random")
        page.locator('input[name="size"]').fill("80")
        page.get_by_role("button", name="Set and draw").click()
        expect(page.get_by_role("status")).to_contain_text("80 case(s)")

        drawn = [k for k, (sel, _) in selection_of(store).items() if sel == "random"]
        assert len(drawn) == 80
        review(store, {k: truth[k] for k in drawn if k not in {f.key for f in top}}, rev)
        want = sum(truth[k] for k in drawn) / 80
        tri = [f.key for f in top if f.key not in drawn]
        tri_yield = sum(truth[k] for k in tri) / len(tri)

        # a SPADE run saved by `measure spade --store` appears on the same dashboard (issue 16)
        pair = next(p for p in load_pairs() if p.id == "dizziness_stroke")
        plans = plan_cohort(3, 4000, window=30, excess_per_10k=50)
        rep = measure_visits([pair], (visits_of_plan(p, pair) for p in plans), source="synth")
        save_summary(store.engine, rep)

        page.goto(f"{server}/worklist/dashboard")
        spade = page.locator('#spade tr[data-pair="dizziness_stroke"] td.excess')
        expect(spade).to_have_text(f"{rep.results[0].total.excess_per_10k:.1f}")
        row = page.locator(f'#sampled-ppv tr[data-rule="{RULE}"]')
        expect(row.locator("td.ppv")).to_have_text(f"{100 * want:.1f} %")
        expect(row.locator("td.ci")).to_have_text(re.compile(r"\d+\.\d–\d+\.\d %"))
        expect(row.locator("td.yield")).to_have_text(f"{100 * tri_yield:.1f} %")
        assert tri_yield > want  # the top of the ranked queue is richer than the rule's cases
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.locator("#review-loop").screenshot(path=str(SHOTS / "loop-dashboard-sampled-ppv.png"))
        page.screenshot(path=str(SHOTS / "loop-dashboard.png"), full_page=True)
        page.locator("#spade").screenshot(path=str(SHOTS / "spade-dashboard.png"))
        browser.close()
