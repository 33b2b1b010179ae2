"""The app loads the rules once and the CDS service and the worklist share that ruleset
(``serve`` used to load them two or three times: the advisor, its value sets, the worklist)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from plugin.app import create_app
from plugin.config import Settings
from plugin.rules import RuleSet, load_rules
from plugin.rules import loader as rules_loader
from tests.cds import patients as P
from tests.cds.helpers import BASE, NOW, bearer, hook_request, url


def count_parses(monkeypatch: Any) -> Counter[str]:
    """Every YAML file the rules loader reads, by path."""
    parsed: Counter[str] = Counter()
    real = rules_loader.load_yaml

    def counting(path: Path) -> Any:
        parsed[str(path)] += 1
        return real(path)

    monkeypatch.setattr(rules_loader, "load_yaml", counting)
    return parsed


def test_create_app_reads_each_rule_file_once(
    settings: Settings, monkeypatch: Any, token: Any
) -> None:
    parsed = count_parses(monkeypatch)
    app = create_app(settings, clock=lambda: NOW)
    with TestClient(app) as client:
        body = hook_request(
            "patient-view",
            {"userId": "Practitioner/u1", "patientId": "p1"},
            prefetch=P.full_prefetch(P.fit_patient("p1", NOW, days_ago=90)),
        )
        service = url("dxsafety-patient-view")
        r = client.post(service, json=body, headers=bearer(token(f"{BASE}{service}")))
        assert r.status_code == 200 and len(r.json()["cards"]) == 1
    assert parsed, "the rules were loaded"
    assert any("/valuesets/" in p for p in parsed)
    assert {p: n for p, n in parsed.items() if n != 1} == {}
    assert app.state.ruleset is app.state.cds.advisor.ruleset


def test_a_given_ruleset_is_used_as_is(settings: Settings, monkeypatch: Any) -> None:
    ruleset = load_rules(settings.rules_dir)
    parsed = count_parses(monkeypatch)
    app = create_app(settings, ruleset=ruleset, worklist=False)
    assert parsed == Counter()
    assert app.state.cds.advisor.ruleset is ruleset


def test_the_worklist_gets_the_same_ruleset(settings: Settings, monkeypatch: Any) -> None:
    from plugin.worklist import web

    given: list[RuleSet] = []

    def mount(app: FastAPI, settings: Settings, ruleset: RuleSet) -> None:
        given.append(ruleset)

    monkeypatch.setattr(web, "mount", mount)
    app = create_app(settings)
    assert given == [app.state.cds.advisor.ruleset]
