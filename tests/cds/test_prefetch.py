"""Prefetch resolution against a loopback FHIR stand-in: paging, budget, token hygiene."""

from __future__ import annotations

import time
from typing import Any

import pytest

from plugin.cds.issuers import Issuer
from plugin.cds.models import HookRequest
from plugin.cds.prefetch import PrefetchResolver, render
from plugin.cds.services import ENCOUNTER_TEMPLATES, PATIENT_TEMPLATES
from plugin.errors import PrefetchUnavailable
from tests.cds import patients as P
from tests.cds.fhir_standin import FhirStandIn
from tests.cds.helpers import NOW, hook_request

LOOPBACK = Issuer(iss="https://ehr.test", fhir_servers=("http://127.0.0.1",))


def request(
    server: str | None,
    prefetch: dict[str, Any] | None = None,
    token: str | None = "tok",
    **ctx: str,
) -> HookRequest:
    context = {"userId": "Practitioner/u", "patientId": "p", **ctx}
    return HookRequest.model_validate(
        hook_request("patient-view", context, prefetch=prefetch, fhir_server=server, token=token)
    )


def test_templates_are_filled_and_values_url_quoted() -> None:
    assert render(PATIENT_TEMPLATES["conditions"], {"patientId": "a&b=c"}) == (
        "Condition?patient=a%26b%3Dc"
    )
    assert render(ENCOUNTER_TEMPLATES["encounter"], {"encounterId": "e/1"}) == "Encounter/e%2F1"
    with pytest.raises(PrefetchUnavailable):
        render(ENCOUNTER_TEMPLATES["encounter"], {"patientId": "p"})  # no encounterId


def test_all_absent_fetches_every_search_and_follows_pages() -> None:
    resources = P.fit_patient("p", NOW) + P.padding("p", NOW, 25)
    with FhirStandIn(resources, token="tok", page_size=10) as fhir:
        got = PrefetchResolver(request(fhir.base_url), issuer=LOOPBACK, budget_s=5).gather(
            PATIENT_TEMPLATES, "p"
        )
        paths = [path for path, _ in fhir.requests]
    assert sorted(r["id"] for r in got.resources) == sorted(r["id"] for r in resources)
    assert got.patient_found and set(got.fetched_keys) == set(PATIENT_TEMPLATES)
    assert sum("/Observation?" in p for p in paths) == 3  # 26 observations, pages of 10
    assert all(auth == "Bearer tok" for _, auth in fhir.requests)


def test_a_next_link_to_another_server_is_not_followed_with_the_token() -> None:
    with FhirStandIn(P.fit_patient("p", NOW)) as fhir, FhirStandIn([]) as other:
        page = {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [],
            "link": [{"relation": "next", "url": f"{other.base_url}/Observation?x=1"}],
        }
        prefetch = P.full_prefetch(P.fit_patient("p", NOW))
        prefetch["observations"] = page
        with pytest.raises(PrefetchUnavailable, match="observations"):
            PrefetchResolver(request(fhir.base_url, prefetch), issuer=LOOPBACK, budget_s=5).gather(
                PATIENT_TEMPLATES, "p"
            )
        assert other.requests == []


def test_a_slow_server_gives_412_within_the_budget() -> None:
    with FhirStandIn(P.fit_patient("p", NOW), delay_s=3.0) as fhir:
        start = time.monotonic()
        with pytest.raises(PrefetchUnavailable):
            PrefetchResolver(request(fhir.base_url), issuer=LOOPBACK, budget_s=0.5).gather(
                PATIENT_TEMPLATES, "p"
            )
        assert time.monotonic() - start < 2.5  # not 8 searches x 3 s


def test_a_read_that_is_not_found_is_no_data() -> None:
    resources = P.fit_patient("p", NOW)
    with FhirStandIn(resources) as fhir:
        got = PrefetchResolver(
            request(fhir.base_url, encounterId="missing"), issuer=LOOPBACK, budget_s=5
        ).gather(ENCOUNTER_TEMPLATES, "p")
    assert got.patient_found
    assert not any(r["id"] == "missing" for r in got.resources)


def test_production_refuses_plain_http_fhir_servers() -> None:
    with pytest.raises(PrefetchUnavailable, match="https"):
        PrefetchResolver(
            request("http://127.0.0.1:9/fhir"), issuer=LOOPBACK, budget_s=1, require_https=True
        ).gather(PATIENT_TEMPLATES, "p")


def test_search_outcomes_and_duplicates_are_dropped() -> None:
    prefetch = P.full_prefetch(P.fit_patient("p", NOW), encounter_id="p-enc-fit")
    prefetch["observations"]["entry"].append(
        {
            "resource": {"resourceType": "OperationOutcome", "issue": []},
            "search": {"mode": "outcome"},
        }
    )
    got = PrefetchResolver(request(None, prefetch, token=None), issuer=LOOPBACK, budget_s=1).gather(
        ENCOUNTER_TEMPLATES, "p"
    )
    types = [r["resourceType"] for r in got.resources]
    assert "OperationOutcome" not in types
    assert types.count("Encounter") == 1  # the read and the search return the same one
