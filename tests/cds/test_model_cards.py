"""encounter-discharge with a model configured: the cards are the ranker's real-time risks.

A small real model is trained here (the ranker tests' toy population, 50 trees), saved,
and loaded by the app through ``settings.model_dir`` exactly as ``dxsafety serve --model``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from plugin.app import create_app
from plugin.cds.schema import check_response
from plugin.fhir.parse import timeline_from_resources
from plugin.rank import load_model, save_model
from plugin.rank.dataset import collect
from plugin.rank.training import TrainConfig, model_card, train_heads
from plugin.rules import evaluate, load_rules
from tests.cds import patients as P
from tests.cds.helpers import BASE, NOW, bearer, hook_request
from tests.rank.conftest import SPADE_RULES, toy_population

pytestmark = pytest.mark.slow
ED = "/cds-services/dxsafety-encounter-discharge"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rules = load_rules(SPADE_RULES)
    pop = toy_population(400, seed=1)
    data = collect(pop.timelines, lambda tl: evaluate(rules, tl), pop.labels)
    heads, metrics = train_heads(data, TrainConfig(n_estimators=50))
    out = tmp_path_factory.mktemp("model")
    meta = {"fingerprint": "cds-test", "rule_triggers": {}}
    save_model(out, heads, meta, metrics, model_card(meta, metrics))
    return out


def test_discharge_cards_are_the_rankers_risks(settings: Any, model_dir: Path, token: Any) -> None:
    with_model = settings.model_copy(update={"model_dir": model_dir, "cds_risk_threshold": 0.0})
    resources = P.dizzy_patient("m1", NOW)
    ctx = {"userId": "Practitioner/u1", "patientId": "m1", "encounterId": "m1-ed"}
    body = hook_request(
        "encounter-discharge", ctx, prefetch=P.full_prefetch(resources, encounter_id="m1-ed")
    )
    with TestClient(create_app(with_model, clock=lambda: NOW)) as client:
        r = client.post(ED, json=body, headers=bearer(token(f"{BASE}{ED}")))
    assert r.status_code == 200, r.text
    response: dict[str, Any] = r.json()
    assert check_response(response) == []
    expected = load_model(model_dir).realtime_risk(
        timeline_from_resources(resources, patient_id="m1"), "Encounter/m1-ed"
    )
    cards = response["cards"]
    assert len(cards) == min(5, len(expected))
    for card, risk in zip(cards, expected, strict=False):
        assert card["summary"].startswith(f"Consider {risk.label}")
        assert f"{risk.probability:.0%}" in card["summary"]
        assert card["source"]["topic"]["code"] == risk.label
        assert "`Encounter/m1-ed`" in card["detail"]
    assert any(r.reasons for r in expected)


def test_a_threshold_hides_small_risks(settings: Any, model_dir: Path, token: Any) -> None:
    strict = settings.model_copy(update={"model_dir": model_dir, "cds_risk_threshold": 0.999})
    resources = P.dizzy_patient("m2", NOW)
    ctx = {"userId": "Practitioner/u1", "patientId": "m2", "encounterId": "m2-ed"}
    body = hook_request(
        "encounter-discharge", ctx, prefetch=P.full_prefetch(resources, encounter_id="m2-ed")
    )
    with TestClient(create_app(strict, clock=lambda: NOW)) as client:
        r = client.post(ED, json=body, headers=bearer(token(f"{BASE}{ED}")))
    assert r.status_code == 200 and r.json() == {"cards": []}
