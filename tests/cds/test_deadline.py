"""Issue 14 item 3: one deadline per hook call covers every FHIR request and page, and the
FHIR responses of a call are capped in size. A server that drips a byte at a time cannot
hold the call (the old per-read timeout let one hold it 39 s); the call answers with a card
saying the record could not be read in time, or 412 when that card is turned off."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from plugin.app import create_app
from plugin.cds.issuers import Issuer
from plugin.cds.models import HookRequest
from plugin.cds.prefetch import PrefetchResolver
from plugin.cds.services import PATIENT_TEMPLATES
from plugin.config import Settings
from plugin.errors import PrefetchTimeout, PrefetchUnavailable
from tests.cds import patients as P
from tests.cds.helpers import BASE, NOW, bearer, hook_request, url
from tests.cds.hostile import Hostile, drip, huge

PV = "dxsafety-patient-view"
CONTEXT = {"userId": "Practitioner/u", "patientId": "p"}
LOOPBACK = Issuer(iss="i", fhir_servers=("http://127.0.0.1",))
BUDGET = 1.0
SLACK = 2.0  # what scheduling on a loaded machine may add
DRIP = 6.0  # how long past the budget the drip lasts


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def _app(settings: Settings, **overrides: Any) -> TestClient:
    return TestClient(create_app(settings.model_copy(update=overrides), clock=lambda: NOW))


@pytest.mark.parametrize("headers_too", [False, True], ids=["body drips", "headers drip"])
def test_a_dripping_server_cannot_hold_the_call_past_its_deadline(
    settings: Settings, token: Any, stop: threading.Event, headers_too: bool
) -> None:
    with (
        Hostile(drip(stop, headers_too=headers_too)) as fhir,
        _app(settings, cds_fetch_budget_s=BUDGET) as client,
    ):
        # before the fix the drip held the call for as long as it lasted: end it DRIP s past
        # the budget so that the old code fails this test instead of hanging it
        threading.Timer(BUDGET + DRIP, stop.set).start()
        # warm up: the first authenticated call opens (and migrates) the worklist database
        assert client.get(url(), headers=bearer(token(BASE + url()))).status_code == 200
        body = hook_request("patient-view", CONTEXT, fhir_server=fhir.base_url, token="t")
        auth = bearer(token(BASE + url(PV)))
        started = time.monotonic()
        r = client.post(url(PV), json=body, headers=auth)
        took = time.monotonic() - started
        assert len(fhir.requests) >= 1
    assert r.status_code == 200, r.text
    (card,) = r.json()["cards"]
    assert "could not read this patient's record in time" in card["summary"]
    assert card["indicator"] == "info"
    # the slack is a loaded 2-core CI machine's (1.66 s was seen with 0.1 s allowed): the
    # test still separates a call ended by the deadline from one held by the drip
    assert took <= BUDGET + SLACK < BUDGET + DRIP, f"{took:.3f} s for a {BUDGET} s deadline"


def test_with_the_timeout_card_off_the_answer_is_412(
    settings: Settings, token: Any, stop: threading.Event
) -> None:
    with (
        Hostile(drip(stop)) as fhir,
        _app(settings, cds_fetch_budget_s=0.5, cds_timeout_card=False) as client,
    ):
        body = hook_request("patient-view", CONTEXT, fhir_server=fhir.base_url, token="t")
        r = client.post(url(PV), json=body, headers=bearer(token(BASE + url(PV))))
    assert r.status_code == 412
    assert "deadline" in r.json()["issue"][0]["diagnostics"]


def test_the_deadline_covers_every_page_not_each_read(stop: threading.Event) -> None:
    """The prefetch pages on to a dripping server: the pages share the call's one budget."""
    with Hostile(drip(stop, every_s=0.1)) as fhir:
        prefetch = P.full_prefetch(P.fit_patient("p", NOW))
        prefetch["observations"]["link"] = [
            {"relation": "next", "url": f"{fhir.base_url}/Observation?page=2"}
        ]
        request = HookRequest.model_validate(
            hook_request("patient-view", CONTEXT, prefetch=prefetch, fhir_server=fhir.base_url)
        )
        started = time.monotonic()
        with pytest.raises(PrefetchTimeout):
            PrefetchResolver(request, issuer=LOOPBACK, budget_s=0.5).gather(PATIENT_TEMPLATES, "p")
        assert time.monotonic() - started <= 0.6


@pytest.mark.parametrize("declare", [True, False], ids=["Content-Length", "streamed"])
def test_fhir_responses_are_capped_in_size(declare: bool) -> None:
    with Hostile(huge(300_000, declare)) as fhir:
        request = HookRequest.model_validate(
            hook_request("patient-view", CONTEXT, fhir_server=fhir.base_url, token="t")
        )
        resolver = PrefetchResolver(request, issuer=LOOPBACK, budget_s=5, max_bytes=100_000)
        with pytest.raises(PrefetchUnavailable, match=r"bytes|size cap"):
            resolver.gather(PATIENT_TEMPLATES, "p")
