"""``mount(app, settings, ruleset)``: the pages show the app's one loaded RuleSet."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from plugin.config import Settings
from plugin.rules import Rule, RuleSet, load_rules
from plugin.worklist.store import Store
from plugin.worklist.web import mount
from tests.paths import ROOT
from tests.worklist.conftest import login
from tests.worklist.factories import finding, timeline


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    return load_rules(ROOT / "rules")


def published_rule(ruleset: RuleSet) -> Rule:
    return next(r for r in ruleset.rules if r.published and r.published.ppv and r.trigger)


def case_page(settings: Settings, store: Store, ruleset: RuleSet | None, key: str) -> str:
    app = FastAPI()
    mount(app, settings, ruleset, store=store)
    with TestClient(app) as client:
        login(client, "bob")
        return client.get(f"/worklist/cases/{key}").text


def test_the_apps_ruleset_is_shown(settings: Settings, store: Store, users, ruleset) -> None:
    assert not settings.rules_dir.exists()  # so the metadata can only come from the ruleset
    rule = published_rule(ruleset)
    f = finding("p1", rule=rule.id)
    store.upsert_findings([f], {"p1": timeline("p1")})
    assert rule.published is not None and rule.published.ppv is not None
    ppv = f"Published PPV {rule.published.ppv * 100:.0f} %"
    assert ppv in case_page(settings, store, ruleset, f.key)
    assert "Published PPV" not in case_page(settings, store, None, f.key)


def test_without_a_ruleset_rules_dir_is_read(store: Store, users, ruleset) -> None:
    settings = Settings(database_url=store.url, rules_dir=ROOT / "rules", env="test")
    rule = published_rule(ruleset)
    f = finding("p2", rule=rule.id)
    store.upsert_findings([f], {"p2": timeline("p2")})
    assert "Published PPV" in case_page(settings, store, None, f.key)
