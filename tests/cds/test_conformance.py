"""Replay every request example of ``/work/shared/cds-hooks-examples`` (spec 2.0.1, spec 3.0
ballot, Hook Library 1.0.1 contexts, Inferno CRD fixtures) with a JWT signed by our test keys,
and check status codes and response shapes.

Each example runs twice:

* **as published**: its ``fhirServer`` is not on the issuer's allowlist (loopback only), or
  it has none, so every example of a hook we serve must answer 412 with an OperationOutcome
  (and no traffic leaves loopback); invalid ones answer 400;
* **pointed at a loopback FHIR stand-in** that holds a patient with an overdue positive FIT
  under the example's patient id: every example of a hook we serve must answer 200 with
  cards that pass our schema of the spec's rules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from plugin.cds.schema import check_response
from tests.cds import patients as P
from tests.cds.fhir_standin import FhirStandIn
from tests.cds.helpers import BASE, EXAMPLES, NOW, bearer

SERVICE_FOR_HOOK = {
    "patient-view": "dxsafety-patient-view",
    "encounter-start": "dxsafety-encounter-start",
    "encounter-discharge": "dxsafety-encounter-discharge",
    "order-sign": "dxsafety-order-sign",
    "order-select": "dxsafety-order-select",
    "appointment-book": "dxsafety-appointment-book",
}
EXTERNAL = (
    "https://ehr.example.org/fhir",
    "https://example/r4",
    "http://hooks.smarthealthit.org:9080",
)


def _examples() -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(EXAMPLES.rglob("*.json")):
        rel = str(path.relative_to(EXAMPLES))
        data = json.loads(path.read_text())
        if "hook" in data and "hookInstance" in data:
            out.append((rel, data))
        elif path.name.endswith("-context.json") or "-context-" in path.name:
            hook = path.name.split("-context")[0]
            out.append((rel, {"hook": hook, "hookInstance": f"replay-{path.stem}", **data}))
    return out


EXAMPLE_REQUESTS = _examples()


def test_every_request_example_is_found() -> None:
    names = {rel for rel, _ in EXAMPLE_REQUESTS}
    assert len(names) == 16  # 2 spec 2.0.1, 1 spec 3.0, 7 hook library, 6 Inferno
    assert "spec-2.0.1/request-patient-view.json" in names
    assert "spec-3.0.0-ballot/request-order-sign-paginated-prefetch.json" in names


def _expected(body: dict[str, Any]) -> int:
    """400 for hooks we do not serve and for contexts that break the hook's required fields."""
    hook, ctx = body["hook"], body.get("context", {})
    if hook not in SERVICE_FOR_HOOK:
        return 400
    needs = {
        "patient-view": ("userId", "patientId"),
        "order-sign": ("userId", "patientId", "draftOrders"),
        "order-select": ("userId", "patientId", "draftOrders", "selections"),
        "appointment-book": ("userId", "patientId", "appointments"),
    }
    required = needs.get(hook, ("userId", "patientId", "encounterId"))
    return 200 if all(ctx.get(k) for k in required) else 400


def _post(client: Any, token: Any, body: dict[str, Any]) -> Any:
    service = SERVICE_FOR_HOOK.get(body["hook"], "dxsafety-patient-view")
    path = f"/cds-services/{service}"
    return client.post(path, json=body, headers=bearer(token(f"{BASE}{path}")))


@pytest.mark.parametrize(
    ("name", "example"), EXAMPLE_REQUESTS, ids=[n for n, _ in EXAMPLE_REQUESTS]
)
def test_example_as_published(client: Any, token: Any, name: str, example: dict[str, Any]) -> None:
    r = _post(client, token, example)
    expected = _expected(example)
    assert r.status_code == (412 if expected == 200 else 400), r.text
    assert r.json()["resourceType"] == "OperationOutcome"


@pytest.fixture(scope="module")
def standin() -> Any:
    resources = P.fit_patient("1288992", NOW) + P.fit_patient("example", NOW)
    with FhirStandIn(resources, page_size=2) as server:
        yield server


@pytest.mark.parametrize(
    ("name", "example"), EXAMPLE_REQUESTS, ids=[n for n, _ in EXAMPLE_REQUESTS]
)
def test_example_against_a_loopback_fhir_server(
    client: Any, token: Any, standin: Any, name: str, example: dict[str, Any]
) -> None:
    text = json.dumps(example)
    for external in EXTERNAL:
        text = text.replace(external, standin.base_url)
    body = json.loads(text)
    body.setdefault("fhirServer", standin.base_url)
    before = len(standin.requests)
    r = _post(client, token, body)
    expected = _expected(body)
    assert r.status_code == expected, r.text
    if expected != 200:
        assert r.json()["resourceType"] == "OperationOutcome"
        return
    response = r.json()
    assert check_response(response) == []
    sent = standin.requests[before:]
    assert sent, "the service should have fetched the missing prefetch"
    auth = body.get("fhirAuthorization")
    wanted = f"Bearer {auth['access_token']}" if auth else None
    assert {a for _, a in sent} == {wanted}  # the client's FHIR token, and only it
    if body["hook"] in ("patient-view", "encounter-start", "order-sign"):
        (card,) = response["cards"]  # the overdue FIT of the stand-in patient
        assert "FIT" in card["summary"]
    if "paginated" in name:  # the client's next link was followed on the FHIR server
        assert any("_page=2" in path for path, _ in sent)


SPEC_RESPONSES = {
    # file: the problems our schema must report (the spec's own examples are not all complete)
    "spec-2.0.1/response-empty.json": [],
    "spec-2.0.1/response-cards.json": ["$.cards[1]: missing uuid"],
    "spec-2.0.1/response-autolaunchable.json": [
        "$.cards[0]: missing indicator",
        "$.cards[0].indicator: None is not info|warning|critical",
    ],
    "spec-2.0.1/response-systemActions.json": ["$.systemActions[0]: missing description"],
}


@pytest.mark.parametrize("name", sorted(SPEC_RESPONSES))
def test_our_schema_on_the_spec_response_examples(name: str) -> None:
    body = json.loads((EXAMPLES / name).read_text())
    assert check_response(body) == SPEC_RESPONSES[name]


def test_our_schema_accepts_the_inferno_valid_cards() -> None:
    cards = json.loads((EXAMPLES / "inferno-crd-test-kit" / "valid_cards.json").read_text())
    problems = check_response({"cards": cards})
    # the spec makes suggestion uuids optional; only our own rule (feedback needs them) objects
    assert problems and all(p.endswith("suggestions[0]: missing uuid") for p in problems)


@pytest.mark.parametrize(
    "broken",
    [
        {"cards": None},
        {
            "cards": [
                {"uuid": "u", "summary": "x" * 140, "indicator": "info", "source": {"label": "s"}}
            ]
        },
        {
            "cards": [
                {"uuid": "u", "summary": "s", "indicator": "hard-stop", "source": {"label": "s"}}
            ]
        },
        {"cards": [{"uuid": "u", "summary": "s", "indicator": "info", "source": {}}]},
        {
            "cards": [
                {
                    "uuid": "u",
                    "summary": "s",
                    "indicator": "info",
                    "source": {"label": "s"},
                    "detail": "",
                }
            ]
        },
        {
            "cards": [
                {
                    "uuid": "u",
                    "summary": "s",
                    "indicator": "info",
                    "source": {"label": "s"},
                    "links": [],
                }
            ]
        },
        {
            "cards": [
                {
                    "uuid": "u",
                    "summary": "s",
                    "indicator": "info",
                    "source": {"label": "s"},
                    "suggestions": [{"label": "l", "uuid": "v"}],
                }
            ]
        },
        {
            "cards": [
                {
                    "uuid": "u",
                    "summary": "s",
                    "indicator": "info",
                    "source": {"label": "s"},
                    "overrideReasons": [{"code": "c", "system": "s"}],
                }
            ]
        },
        {
            "cards": [
                {
                    "uuid": "u",
                    "summary": "s",
                    "indicator": "info",
                    "source": {"label": "s"},
                    "links": [
                        {"label": "l", "url": "https://x", "type": "absolute", "appContext": "a"}
                    ],
                }
            ]
        },
        {
            "cards": [
                {
                    "uuid": "u",
                    "summary": "s",
                    "indicator": "info",
                    "source": {"label": "s"},
                    "selectionBehavior": "any",
                    "suggestions": [
                        {
                            "label": "l",
                            "uuid": "v",
                            "actions": [{"type": "CREATE", "description": "d", "resource": {}}],
                        }
                    ],
                }
            ]
        },
        {
            "cards": [],
            "systemActions": [
                {"type": "delete", "description": "d", "resource": {"resourceType": "X"}}
            ],
        },
        {"cards": [{"uuid": None, "summary": "s", "indicator": "info", "source": {"label": "s"}}]},
    ],
)
def test_our_schema_catches_each_rule(broken: dict[str, Any]) -> None:
    assert check_response(broken) != []


FEEDBACK = sorted((EXAMPLES / "spec-2.0.1").glob("feedback-*.json"))


def _feedback_rows(app: Any) -> list[Any]:
    store = app.state.cds.worklist_store()
    with store.engine.connect() as conn:
        return list(
            conn.execute(
                sa.text(
                    "select card_id, outcome, outcome_timestamp, override_reason from cds_feedback"
                )
            ).all()
        )


@pytest.mark.parametrize("path", FEEDBACK, ids=[p.name for p in FEEDBACK])
def test_spec_feedback_examples_are_stored_once(
    client: Any, token: Any, app: Any, path: Path
) -> None:
    fb = "/cds-services/dxsafety-patient-view/feedback"
    body = json.loads(path.read_text())
    for _ in range(2):
        r = client.post(fb, json=body, headers=bearer(token(f"{BASE}{fb}")))
        assert r.status_code == 200 and r.json() == {}
    rows = _feedback_rows(app)
    assert len(rows) == 1
    assert rows[0].card_id == body["feedback"][0]["card"]
    assert rows[0].outcome == body["feedback"][0]["outcome"]
