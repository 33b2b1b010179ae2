"""Feedback (both shapes, idempotent, stored for the worklist) and CORS on every route."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from tests.cds.helpers import BASE, ORIGIN, bearer

FB = "/cds-services/dxsafety-patient-view/feedback"
CARD = "4e0a3a1e-3283-4575-ab82-028d55fe2719"


def post(client: Any, token: Any, body: Any, path: str = FB) -> Any:
    return client.post(path, json=body, headers=bearer(token(f"{BASE}{path}")))


def rows(app: Any) -> list[Any]:
    store = app.state.cds.worklist_store()
    with store.engine.connect() as conn:
        return list(
            conn.execute(
                sa.text(
                    "select service_id, card_id, outcome, outcome_timestamp, override_reason, "
                    "accepted_suggestions from cds_feedback order by id"
                )
            ).all()
        )


def test_bare_item_and_wrapper_are_the_same_feedback(client: Any, token: Any, app: Any) -> None:
    item = {
        "card": CARD,
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": "s1"}],
        "outcomeTimestamp": "2026-11-27T10:05:31Z",
    }
    assert post(client, token, item).json() == {}
    assert post(client, token, {"feedback": [item]}).json() == {}
    # the same instant written with an offset is the same feedback
    same = {**item, "outcomeTimestamp": "2026-11-27T11:05:31+01:00"}
    assert post(client, token, same).status_code == 200
    (row,) = rows(app)
    assert row.service_id == "dxsafety-patient-view"
    assert row.card_id == CARD and row.outcome == "accepted"
    assert "s1" in str(row.accepted_suggestions)


def test_a_batch_with_duplicates_and_several_cards(client: Any, token: Any, app: Any) -> None:
    a = {
        "card": "a",
        "outcome": "overridden",
        "outcomeTimestamp": "2026-11-27T10:00:00Z",
        "overrideReason": {
            "reason": {
                "code": "patient-refuses",
                "system": "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes",
            },
            "userComment": "declined today",
        },
    }  # the sandbox: no display
    b = {"card": "b", "outcome": "overridden", "outcomeTimestamp": "2026-11-27T10:00:01Z"}
    later = {**a, "outcomeTimestamp": "2026-11-28T09:00:00Z"}  # a new decision on card a
    assert post(client, token, {"feedback": [a, a, b, later]}).status_code == 200
    got = rows(app)
    assert [(r.card_id, r.outcome_timestamp[:10]) for r in got] == [
        ("a", "2026-11-27"),
        ("b", "2026-11-27"),
        ("a", "2026-11-28"),
    ]
    assert "patient-refuses" in str(got[0].override_reason)
    assert got[1].override_reason is None


@pytest.mark.parametrize(
    "body",
    [
        {
            "feedback": [
                {"card": "c", "outcome": "ignored", "outcomeTimestamp": "2026-11-27T10:00:00Z"}
            ]
        },
        {"card": "c", "outcome": "accepted"},  # no timestamp
        {"card": "c", "outcome": "accepted", "outcomeTimestamp": "2026-11-27T10:00:00"},  # no zone
        {"feedback": "nope"},
        [],
    ],
)
def test_invalid_feedback_is_400(client: Any, token: Any, app: Any, body: Any) -> None:
    r = post(client, token, body)
    assert r.status_code == 400
    assert r.json()["resourceType"] == "OperationOutcome"
    assert rows(app) == []


def test_feedback_for_an_unknown_service_is_404(client: Any, token: Any) -> None:
    path = "/cds-services/nope/feedback"
    r = post(
        client,
        token,
        {"card": "c", "outcome": "accepted", "outcomeTimestamp": "2026-11-27T10:00:00Z"},
        path,
    )
    assert r.status_code == 404


ROUTES = [
    ("GET", "/cds-services"),
    ("POST", "/cds-services/dxsafety-patient-view"),
    ("POST", "/cds-services/dxsafety-order-sign/feedback"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_preflight_from_an_allowed_origin(client: Any, method: str, path: str) -> None:
    r = client.options(
        path,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert method in r.headers["access-control-allow-methods"]
    allowed = r.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_preflight_from_another_origin_is_refused(client: Any, method: str, path: str) -> None:
    r = client.options(
        path, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": method}
    )
    assert r.status_code == 400
    assert "access-control-allow-origin" not in r.headers


def test_actual_responses_carry_cors_headers_even_when_refused(client: Any, token: Any) -> None:
    ok = client.get(
        "/cds-services", headers={"Origin": ORIGIN, **bearer(token(f"{BASE}/cds-services"))}
    )
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ORIGIN
    refused = client.post(
        "/cds-services/dxsafety-patient-view", json={}, headers={"Origin": ORIGIN}
    )
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == ORIGIN
