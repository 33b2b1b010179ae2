"""Hook calls end to end through the app (TestClient): discovery, cards, prefetch semantics."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fhir.resources.R4B.servicerequest import ServiceRequest

from plugin.cds.cards import card_uuid
from plugin.cds.schema import check_discovery, check_response
from tests.cds import patients as P
from tests.cds.helpers import BASE, NOW, bearer, hook_request, url

PV = "dxsafety-patient-view"
OS = "dxsafety-order-sign"
ED = "dxsafety-encounter-discharge"
ES = "dxsafety-encounter-start"


def call(client: Any, token: Any, service: str, body: dict[str, Any]) -> Any:
    return client.post(url(service), json=body, headers=bearer(token(f"{BASE}{url(service)}")))


def test_discovery_lists_each_hook_with_subset_templates(client: Any, token: Any) -> None:
    r = client.get(url(), headers=bearer(token(f"{BASE}/cds-services")))
    assert r.status_code == 200
    body = r.json()
    assert check_discovery(body) == []
    hooks = {s["id"]: s["hook"] for s in body["services"]}
    assert hooks == {
        PV: "patient-view",
        OS: "order-sign",
        ED: "encounter-discharge",
        ES: "encounter-start",
        "dxsafety-order-select": "order-select",
        "dxsafety-appointment-book": "appointment-book",
    }
    assert {s["version"] for s in body["services"]} == {"2.0.1"}
    for service in body["services"]:
        for template in service["prefetch"].values():
            # instance reads, or type-level searches by patient reference only
            assert template in (
                "Patient/{{context.patientId}}",
                "Encounter/{{context.encounterId}}",
            ) or (template.endswith("?patient={{context.patientId}}"))


def test_patient_view_positive_fit_gives_an_open_follow_up_card(client: Any, token: Any) -> None:
    resources = P.fit_patient("p1", NOW, days_ago=90)
    body = hook_request(
        "patient-view",
        {"userId": "Practitioner/u1", "patientId": "p1"},
        prefetch=P.full_prefetch(resources),
    )
    r = call(client, token, PV, body)
    assert r.status_code == 200, r.text
    cards = r.json()["cards"]
    assert check_response(r.json()) == []
    assert len(cards) == 1
    card = cards[0]
    assert "FIT" in card["summary"] and len(card["summary"]) < 140
    assert card["indicator"] == "warning"  # a high-level rule
    assert card["detail"].startswith("What happened: observation Hemoglobin")
    assert "Consider: Colonoscopy" in card["detail"]
    assert card["links"][0]["url"].startswith(f"{BASE}/worklist/cases/")
    assert card["uuid"] != card_uuid(card["links"][0]["url"].rsplit("/", 1)[1])  # per call
    assert card["selectionBehavior"] == "at-most-one"
    (suggestion,) = card["suggestions"]
    action = suggestion["actions"][0]
    assert action["type"] == "create"
    ServiceRequest.model_validate(action["resource"])  # valid FHIR R4
    assert action["resource"]["code"]["coding"][0]["code"] == P.COLONOSCOPY_SNOMED
    assert action["resource"]["reasonReference"] == [{"reference": "Observation/p1-fit"}]
    assert action["resource"]["authoredOn"] == "2026-11-27T12:00:00Z"  # the clock, in UTC
    assert all(set(c) == {"code", "system", "display"} for c in card["overrideReasons"])


def test_patient_view_fit_too_recent_or_followed_up_gives_no_card(client: Any, token: Any) -> None:
    recent = P.fit_patient("p2", NOW, days_ago=20)  # window still open
    done = P.fit_patient("p3", NOW, days_ago=90)
    done.append(
        {
            "resourceType": "Procedure",
            "id": "p3-colo",
            "status": "completed",
            "code": {
                "coding": [{"system": "http://snomed.info/sct", "code": P.COLONOSCOPY_SNOMED}]
            },
            "subject": {"reference": "Patient/p3"},
            "performedDateTime": (NOW - timedelta(days=60)).isoformat(),
        }
    )
    for pid, resources in (("p2", recent), ("p3", done)):
        body = hook_request(
            "patient-view",
            {"userId": "Practitioner/u1", "patientId": pid},
            prefetch=P.full_prefetch(resources),
        )
        r = call(client, token, PV, body)
        assert r.status_code == 200
        assert r.json() == {"cards": []}


def test_order_sign_acknowledges_the_closing_order_and_suggests_otherwise(
    client: Any, token: Any
) -> None:
    resources = P.fit_patient("p4", NOW)
    draft = {"resourceType": "Bundle", "entry": [{"resource": P.colonoscopy_order("p4")}]}
    ctx = {"userId": "Practitioner/u1", "patientId": "p4", "draftOrders": draft}
    r = call(
        client, token, OS, hook_request("order-sign", ctx, prefetch=P.full_prefetch(resources))
    )
    assert r.status_code == 200, r.text
    (card,) = r.json()["cards"]
    assert card["indicator"] == "info" and "closes" in card["summary"]
    assert "suggestions" not in card

    other = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "resource": {
                    "resourceType": "MedicationRequest",
                    "id": "rx1",
                    "status": "draft",
                    "intent": "order",
                    "medicationCodeableConcept": {"text": "Amoxicillin"},
                    "subject": {"reference": "Patient/p4"},
                }
            }
        ],
    }
    ctx["draftOrders"] = other
    r = call(
        client, token, OS, hook_request("order-sign", ctx, prefetch=P.full_prefetch(resources))
    )
    (card,) = r.json()["cards"]
    assert card["suggestions"][0]["label"].startswith("Order Colonoscopy")
    assert check_response(r.json()) == []


def test_encounter_discharge_rules_match_the_dizziness_pattern(client: Any, token: Any) -> None:
    resources = P.dizzy_patient("p5", NOW)
    ctx = {"userId": "Practitioner/u1", "patientId": "p5", "encounterId": "p5-ed"}
    r = call(
        client,
        token,
        ED,
        hook_request(
            "encounter-discharge", ctx, prefetch=P.full_prefetch(resources, encounter_id="p5-ed")
        ),
    )
    assert r.status_code == 200, r.text
    cards = r.json()["cards"]
    assert check_response(r.json()) == []
    triggers = sorted(c["summary"].split("e-trigger ")[1].split(" ")[0] for c in cards)
    assert triggers == ["SP-1", "SP-2"]  # benign dizziness; dizziness with risk factors
    assert all(c["summary"].startswith("Consider stroke") for c in cards)
    assert all("`Encounter/p5-ed`" in c["detail"] for c in cards)
    sp2 = next(c for c in cards if "SP-2" in c["summary"])
    assert "`Condition/p5-af`" in sp2["detail"]  # the risk factor is evidence

    # without the atrial fibrillation the risk-factor rule does not match
    no_af = [x for x in resources if x["resourceType"] != "Condition"]
    r = call(
        client,
        token,
        ED,
        hook_request(
            "encounter-discharge", ctx, prefetch=P.full_prefetch(no_af, encounter_id="p5-ed")
        ),
    )
    summaries = [c["summary"] for c in r.json()["cards"]]
    assert len(summaries) == 1 and "SP-1" in summaries[0]


def test_null_prefetch_means_no_data_and_is_not_refetched(client: Any, token: Any) -> None:
    resources = P.fit_patient("p6", NOW)
    prefetch = P.full_prefetch(resources)
    prefetch["procedures"] = None  # the client searched and found nothing
    # no fhirServer: if the service tried to re-query it would have to answer 412
    r = call(
        client,
        token,
        PV,
        hook_request(
            "patient-view", {"userId": "Practitioner/u1", "patientId": "p6"}, prefetch=prefetch
        ),
    )
    assert r.status_code == 200
    assert len(r.json()["cards"]) == 1


def test_null_patient_means_no_cards(client: Any, token: Any) -> None:
    prefetch = P.full_prefetch(P.fit_patient("p7", NOW))
    prefetch["patient"] = None
    r = call(
        client,
        token,
        PV,
        hook_request(
            "patient-view", {"userId": "Practitioner/u1", "patientId": "p7"}, prefetch=prefetch
        ),
    )
    assert r.status_code == 200 and r.json() == {"cards": []}


def test_operation_outcome_prefetch_is_a_412_not_a_blind_requery(client: Any, token: Any) -> None:
    prefetch = P.full_prefetch(P.fit_patient("p8", NOW))
    prefetch["procedures"] = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "timeout"}],
    }
    body = hook_request(
        "patient-view",
        {"userId": "Practitioner/u1", "patientId": "p8"},
        prefetch=prefetch,
        fhir_server="http://127.0.0.1:9/fhir",
        token="t",
    )
    r = call(client, token, PV, body)
    assert r.status_code == 412
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "procedures" in outcome["issue"][0]["diagnostics"]


def test_missing_prefetch_without_fhir_server_is_412(client: Any, token: Any) -> None:
    prefetch = P.full_prefetch(P.fit_patient("p9", NOW))
    del prefetch["observations"]
    r = call(
        client,
        token,
        PV,
        hook_request(
            "patient-view", {"userId": "Practitioner/u1", "patientId": "p9"}, prefetch=prefetch
        ),
    )
    assert r.status_code == 412
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "observations" in r.json()["issue"][0]["diagnostics"]


def test_other_patients_resources_are_ignored(client: Any, token: Any) -> None:
    mine = P.fit_patient("pa", NOW, days_ago=20)  # nothing due yet
    theirs = P.fit_patient("pb", NOW, days_ago=90)[1:]  # a due FIT, but of patient pb
    prefetch = P.full_prefetch(mine + theirs)
    r = call(
        client,
        token,
        PV,
        hook_request(
            "patient-view", {"userId": "Practitioner/u1", "patientId": "pa"}, prefetch=prefetch
        ),
    )
    assert r.status_code == 200 and r.json() == {"cards": []}


def test_bad_requests_are_400_with_an_operation_outcome(client: Any, token: Any) -> None:
    cases = [
        hook_request("order-sign", {"userId": "Practitioner/u1", "patientId": "x"}),  # no drafts
        hook_request("patient-view", {"userId": "Practitioner/u1"}),  # no patientId
        {"hook": "patient-view", "context": {}},  # no hookInstance
        hook_request(
            "encounter-discharge",
            {"userId": "Practitioner/u1", "patientId": "x", "encounterId": "e"},
        ),  # wrong hook for service
    ]
    for service, body in zip((OS, PV, PV, PV), cases, strict=True):
        r = call(client, token, service, body)
        assert r.status_code == 400, (service, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    r = client.post(
        url(PV),
        content=b"{not json",
        headers={**bearer(token(f"{BASE}{url(PV)}")), "Content-Type": "application/json"},
    )
    assert r.status_code == 400


def test_unknown_service_is_404(client: Any, token: Any) -> None:
    r = call(client, token, "no-such-service", hook_request("patient-view", {}))
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"


def test_request_size_limit(client: Any, token: Any, settings: Any) -> None:
    big = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {
                "resource": {
                    "resourceType": "Observation",
                    "id": str(i),
                    "note": [{"text": "x" * 1000}],
                }
            }
            for i in range(3000)
        ],
    }
    body = hook_request(
        "patient-view",
        {"userId": "Practitioner/u1", "patientId": "p"},
        prefetch={"observations": big},
    )
    r = call(client, token, PV, body)
    assert r.status_code == 413
    assert r.json()["resourceType"] == "OperationOutcome"


def test_an_internal_failure_is_a_500_operation_outcome(
    client: Any, token: Any, monkeypatch: Any
) -> None:
    from plugin.cds.advice import Advisor

    def boom(*_: Any, **__: Any) -> None:
        raise RuntimeError("fault injected")

    monkeypatch.setattr(Advisor, "advise", boom)  # fault injection only
    body = hook_request(
        "patient-view",
        {"userId": "Practitioner/u1", "patientId": "p"},
        prefetch=P.full_prefetch(P.fit_patient("p", NOW)),
    )
    r = call(client, token, PV, body)
    assert r.status_code == 500
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "fault injected" not in r.text


def test_the_linked_case_is_recorded_in_the_worklist(client: Any, token: Any, app: Any) -> None:
    import sqlalchemy as sa

    body = hook_request(
        "patient-view",
        {"userId": "Practitioner/u1", "patientId": "pw"},
        prefetch=P.full_prefetch(P.fit_patient("pw", NOW)),
    )
    r = call(client, token, PV, body)
    (card,) = r.json()["cards"]
    key = card["links"][0]["url"].rsplit("/", 1)[1]
    store = app.state.cds.worklist_store()
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text("select key, patient_id, status from findings")).all()
    assert [(row.key, row.patient_id) for row in rows] == [(key, "pw")]
    call(client, token, PV, {**body, "hookInstance": "again"})  # idempotent
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from findings")).scalar_one() == 1
