"""Issue 14 items 4-6: malformed requests are 400/412 (never 500) with an OperationOutcome
and CORS headers; the token is size-capped before parsing and its claims type-checked;
405 is an OperationOutcome, the Content-Type is checked, a UTF-8 BOM is accepted, feedback
follows cds-fb-2/cds-fb-3, and card uuids are fresh per call. On main before issue 14, 21 of
these cases failed; the rest are neighbours of the defects that already passed."""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any

import jwt
import pytest

from tests.cds import patients as P
from tests.cds.helpers import BASE, NOW, ORIGIN, Keys, bearer, hook_request, url

PV = "dxsafety-patient-view"
OS = "dxsafety-order-sign"
CONTEXT = {"userId": "Practitioner/u1", "patientId": "p"}


def post(client: Any, token: Any, service: str, body: Any, **headers: str) -> Any:
    return client.post(
        url(service),
        json=body,
        headers={**bearer(token(f"{BASE}{url(service)}")), "Origin": ORIGIN, **headers},
    )


def _prefetch() -> dict[str, Any]:
    return P.full_prefetch(P.fit_patient("p", NOW))


def _mutations() -> dict[str, tuple[str, dict[str, Any]]]:
    """The six causes of 500s found by the mutation run, plus neighbours."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}

    def pv(name: str, change: Any) -> None:
        prefetch = _prefetch()
        change(prefetch)
        out[name] = (PV, hook_request("patient-view", CONTEXT, prefetch=prefetch))

    pv("entry is a number", lambda p: p["observations"].update(entry=5))
    pv("entry is an object", lambda p: p["observations"].update(entry={"resource": {}}))
    pv("entry.search is a string", lambda p: p["observations"]["entry"][0].update(search="x"))
    pv("OperationOutcome.issue is a number",
       lambda p: p.update(conditions={"resourceType": "OperationOutcome", "issue": 3}))  # fmt: skip
    pv("link is an object", lambda p: p["observations"].update(link={"relation": "next"}))
    pv("next link url is a number",
       lambda p: p["observations"].update(link=[{"relation": "next", "url": 7}]))  # fmt: skip
    pv("resourceType is a list", lambda p: p.update(conditions={"resourceType": ["Bundle"]}))

    def order(name: str, drafts: Any) -> None:
        ctx = {**CONTEXT, "draftOrders": drafts}
        out[name] = (OS, hook_request("order-sign", ctx, prefetch=_prefetch()))

    draft = P.colonoscopy_order("p")
    order("draftOrders.entry is an object", {"resourceType": "Bundle", "entry": {"x": 1}})
    for label, code in (("coding is a number", 5), ("coding.system is a number", None)):
        d = copy.deepcopy(draft)
        if code is None:
            d["code"]["coding"][0]["system"] = 42
        else:
            d["code"]["coding"] = code
        order(f"draft {label}", {"resourceType": "Bundle", "entry": [{"resource": d}]})
    d = copy.deepcopy(draft)
    d["code"]["coding"][0]["code"] = {"nested": True}
    order("draft code is an object", {"resourceType": "Bundle", "entry": [{"resource": d}]})
    return out


MUTATIONS = _mutations()


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_malformed_prefetch_or_draft_orders_is_4xx_with_cors(
    client: Any, token: Any, case: str
) -> None:
    service, body = MUTATIONS[case]
    r = post(client, token, service, body)
    assert r.status_code in (200, 400, 412), (case, r.status_code, r.text[:300])
    if r.status_code != 200:
        assert r.json()["resourceType"] == "OperationOutcome"
    assert r.headers.get("access-control-allow-origin") == ORIGIN


def _signed(keys: Keys, **claims: Any) -> str:
    now = int(time.time())
    base = {"iss": "https://ehr.test", "aud": f"{BASE}{url()}", "iat": now, "exp": now + 300,
            "jti": uuid.uuid4().hex, "tenant": "tenant-a"}  # fmt: skip
    return jwt.encode({**base, **claims}, keys.es, algorithm="ES384", headers={"kid": "ehr-es"})


@pytest.mark.parametrize(
    "claims",
    [
        {"iat": "1700000000"},
        {"exp": "9999999999"},
        {"exp": True},
        {"nbf": "0"},
        {"jti": 12345},
        {"jti": "x" * 5000},
        {"tenant": ["tenant-a"]},
        {"aud": [1, 2]},
    ],
    ids=lambda c: ",".join(f"{k}={str(v)[:12]}" for k, v in c.items()),
)
def test_badly_typed_claims_in_a_validly_signed_token_are_401_with_cors(
    client: Any, keys: Keys, claims: dict[str, Any]
) -> None:
    r = client.get(url(), headers={**bearer(_signed(keys, **claims)), "Origin": ORIGIN})
    assert r.status_code == 401
    assert r.headers.get("access-control-allow-origin") == ORIGIN


def test_an_oversized_token_is_refused_before_it_is_parsed(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[int] = []
    real = jwt.get_unverified_header
    monkeypatch.setattr(jwt, "get_unverified_header", lambda t: parsed.append(1) or real(t))
    huge = "eyJhbGciOiJub25lIn0." + "A" * 8_000_000 + "."
    started = time.process_time()
    r = client.get(url(), headers={**bearer(huge), "Origin": ORIGIN})
    assert r.status_code == 401
    assert parsed == []
    assert time.process_time() - started < 1.0  # was 2.1 s of CPU for 8 MB


def test_405_is_an_operation_outcome(client: Any, token: Any) -> None:
    r = client.delete(url(PV), headers={**bearer(token(f"{BASE}{url(PV)}")), "Origin": ORIGIN})
    assert r.status_code == 405
    assert r.json()["resourceType"] == "OperationOutcome"
    assert r.headers.get("access-control-allow-origin") == ORIGIN
    assert "POST" in r.headers.get("allow", "")


def test_a_non_json_content_type_is_refused(client: Any, token: Any) -> None:
    body = hook_request("patient-view", CONTEXT, prefetch=_prefetch())
    import orjson

    r = client.post(
        url(PV),
        content=orjson.dumps(body),
        headers={**bearer(token(f"{BASE}{url(PV)}")), "Content-Type": "text/plain"},
    )
    assert r.status_code == 415
    assert r.json()["resourceType"] == "OperationOutcome"
    r = client.post(
        url(PV),
        content=orjson.dumps(body),
        headers={**bearer(token(f"{BASE}{url(PV)}")),
                 "Content-Type": "application/fhir+json; charset=utf-8"},
    )  # fmt: skip
    assert r.status_code == 200, r.text


def test_a_utf8_bom_is_accepted(client: Any, token: Any) -> None:
    import orjson

    body = hook_request("patient-view", CONTEXT, prefetch=_prefetch())
    r = client.post(
        url(PV),
        content=b"\xef\xbb\xbf" + orjson.dumps(body),
        headers={**bearer(token(f"{BASE}{url(PV)}")), "Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["cards"]) == 1


@pytest.mark.parametrize(
    ("item", "rule"),
    [
        ({"outcome": "accepted"}, "cds-fb-2"),
        ({"outcome": "accepted", "acceptedSuggestions": []}, "cds-fb-2"),
        ({"outcome": "overridden", "overrideReason": {}}, "cds-fb-3"),
        ({"outcome": "overridden", "overrideReason": {"userComment": "  "}}, "cds-fb-3"),
    ],
)
def test_feedback_invariants(client: Any, token: Any, item: dict[str, Any], rule: str) -> None:
    body = {"feedback": [{"card": str(uuid.uuid4()), "outcomeTimestamp": "2026-11-27T12:00:00Z",
                          **item}]}  # fmt: skip
    r = client.post(
        url(PV, feedback=True),
        json=body,
        headers=bearer(token(f"{BASE}{url(PV, feedback=True)}")),
    )
    assert r.status_code == 400
    assert rule in r.json()["issue"][0]["diagnostics"]


def test_card_uuids_are_fresh_per_call(client: Any, token: Any) -> None:
    seen = []
    for _ in range(2):
        body = hook_request("patient-view", CONTEXT, prefetch=_prefetch())
        r = post(client, token, PV, body)
        (card,) = r.json()["cards"]
        seen.append((card["uuid"], card["suggestions"][0]["uuid"], card["links"][0]["url"]))
    assert seen[0][2] == seen[1][2]  # the same finding...
    assert seen[0][0] != seen[1][0] and seen[0][1] != seen[1][1]  # ...two calls, two ids


def test_an_unexpected_failure_outside_the_handler_is_a_500_outcome_with_cors(
    client: Any, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: the JWT check itself breaks. Before, Starlette's plain-text 500 came
    from outside every middleware, without CORS headers, so a browser client saw nothing."""

    def broken(*_: Any) -> None:
        raise RuntimeError("fault injected")

    monkeypatch.setattr(app.state.cds.verifier, "verify", broken)
    r = client.get(url(), headers={"Authorization": "Bearer x", "Origin": ORIGIN})
    assert r.status_code == 500
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "fault injected" not in r.text
    assert r.headers.get("access-control-allow-origin") == ORIGIN
