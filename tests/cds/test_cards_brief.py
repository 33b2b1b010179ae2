"""Issue 14 items 6-7: cards brief enough for a clinician (summary < 140 characters, at most
three short detail lines, the rationale behind the worklist link), a ``smart`` link option,
suppression of cards for cases the worklist closed as not a missed opportunity (audited,
configurable), and the order-select and appointment-book services."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from plugin.app import create_app
from plugin.cds.schema import check_response
from plugin.config import Settings
from plugin.worklist import tables as t
from plugin.worklist.users import create_user
from tests.cds import patients as P
from tests.cds.helpers import BASE, NOW, bearer, hook_request, url

PV = "dxsafety-patient-view"


def call(client: Any, token: Any, service: str, body: dict[str, Any]) -> Any:
    r = client.post(url(service), json=body, headers=bearer(token(f"{BASE}{url(service)}")))
    assert r.status_code == 200, r.text
    assert check_response(r.json()) == []
    return r.json()


def _pv(pid: str = "p") -> dict[str, Any]:
    return hook_request(
        "patient-view",
        {"userId": "Practitioner/u", "patientId": pid},
        prefetch=P.full_prefetch(P.fit_patient(pid, NOW)),
    )


def test_cards_are_brief_and_the_rationale_is_behind_the_link(client: Any, token: Any) -> None:
    (card,) = call(client, token, PV, _pv())["cards"]
    assert len(card["summary"]) < 140
    lines = card["detail"].split("\n\n")
    assert len(lines) <= 3 and all(len(x) <= 160 for x in lines), lines
    assert [x.split(":", 1)[0] for x in lines] == ["What happened", "When", "Consider"]
    for kept_off in ("positive predictive value", "PPV", "look-alike", "Why it matters"):
        assert kept_off.lower() not in card["detail"].lower()
    (link,) = card["links"]
    assert "rationale" in link["label"] and link["type"] == "absolute"


def test_a_smart_link_option(settings: Settings, token: Any) -> None:
    app = create_app(settings.model_copy(update={"cds_link_type": "smart"}), clock=lambda: NOW)
    with TestClient(app) as client:
        (card,) = call(client, token, PV, _pv())["cards"]
    (link,) = card["links"]
    assert link["type"] == "smart" and link["appContext"].startswith("case=")


def _close_as_not_missed(app: Any, key: str) -> None:
    store = app.state.cds.worklist_store()
    user = create_user(store, "rev", "correct horse battery staple", "reviewer")
    with store.engine.begin() as conn:
        fid = conn.execute(sa.select(t.findings.c.id).where(t.findings.c.key == key)).scalar_one()
        conn.execute(
            t.reviews.insert().values(
                finding_id=fid, reviewer_id=user.id, round=1, items=[4] * 13, judgement=2,
                is_mod=False, harm="none", miscoded=False, missed_dx="", notes="",
                case_version=1, created_at=NOW,
            )
        )  # fmt: skip
        conn.execute(t.findings.update().where(t.findings.c.id == fid).values(status="closed"))


@pytest.mark.parametrize("suppress", [True, False])
def test_a_case_closed_as_not_missed_gets_no_card_and_is_audited(
    settings: Settings, token: Any, suppress: bool
) -> None:
    app = create_app(
        settings.model_copy(update={"cds_suppress_closed": suppress}), clock=lambda: NOW
    )
    with TestClient(app) as client:
        (card,) = call(client, token, PV, _pv())["cards"]  # recorded after the reply
        key = card["links"][0]["url"].rsplit("/", 1)[1]
        _close_as_not_missed(app, key)
        again = call(client, token, PV, _pv())["cards"]
    store = app.state.cds.worklist_store()
    with store.engine.connect() as conn:
        audited = (
            conn.execute(
                sa.select(t.audit_log.c.detail).where(t.audit_log.c.action == "cds_card_suppressed")
            )
            .scalars()
            .all()
        )
        issued = conn.execute(sa.select(t.cds_cards.c.card_id, t.cds_cards.c.finding_key)).all()
    if suppress:
        assert again == []
        assert len(audited) == 1 and audited[0]["service"] == PV
        assert set(audited[0]) == {"service", "rule", "reason"}  # ids only, no patient data
    else:
        assert len(again) == 1 and audited == []
    assert (card["uuid"], key) in [tuple(row) for row in issued]  # feedback joins by card id


def test_a_case_still_under_review_keeps_its_card(client: Any, token: Any, app: Any) -> None:
    (card,) = call(client, token, PV, _pv())["cards"]
    key = card["links"][0]["url"].rsplit("/", 1)[1]
    store = app.state.cds.worklist_store()
    with store.engine.begin() as conn:
        conn.execute(t.findings.update().where(t.findings.c.key == key).values(status="in_review"))
    assert len(call(client, token, PV, _pv())["cards"]) == 1


def _drafts(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]}


def test_order_select_speaks_only_when_the_selected_order_closes_a_follow_up(
    client: Any, token: Any
) -> None:
    service = "dxsafety-order-select"
    colonoscopy = P.colonoscopy_order("p")
    rx = {"resourceType": "MedicationRequest", "id": "rx1", "status": "draft", "intent": "order",
          "medicationCodeableConcept": {"text": "Amoxicillin"}}  # fmt: skip
    prefetch = P.full_prefetch(P.fit_patient("p", NOW))

    def select(selected: str) -> list[dict[str, Any]]:
        ctx = {"userId": "Practitioner/u", "patientId": "p",
               "draftOrders": _drafts(colonoscopy, rx), "selections": [selected]}  # fmt: skip
        body = hook_request("order-select", ctx, prefetch=prefetch)
        return list(call(client, token, service, body)["cards"])

    (card,) = select("ServiceRequest/draft-colonoscopy")
    assert card["indicator"] == "info" and "closes an open follow-up" in card["summary"]
    assert select("MedicationRequest/rx1") == []  # open follow-ups are for order-sign


def test_appointment_book_acknowledges_an_appointment_for_the_follow_up(
    client: Any, token: Any
) -> None:
    service = "dxsafety-appointment-book"
    appointment = {
        "resourceType": "Appointment", "id": "apt1", "status": "proposed",
        "serviceType": [{"coding": [{"system": "http://snomed.info/sct",
                                     "code": P.COLONOSCOPY_SNOMED}]}],
    }  # fmt: skip
    dental = {"resourceType": "Appointment", "id": "apt2", "status": "proposed",
              "serviceType": [{"text": "Dental check"}]}  # fmt: skip
    prefetch = P.full_prefetch(P.fit_patient("p", NOW))
    for appointments, expected in (
        (_drafts(appointment), 1),
        ([appointment], 1),  # the STU3 example's bare array
        (_drafts(dental), 0),
    ):
        ctx = {"userId": "Practitioner/u", "patientId": "p", "appointments": appointments}
        cards = call(client, token, service,
                     hook_request("appointment-book", ctx, prefetch=prefetch))["cards"]  # fmt: skip
        assert len(cards) == expected
