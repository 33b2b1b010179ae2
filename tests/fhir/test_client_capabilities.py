"""Capabilities from CapabilityStatements other than SEKMET's (which the live tests read)."""

from __future__ import annotations

from datetime import date

import pytest
import responses

from plugin.errors import FatalFhirError
from plugin.fhir.capabilities import Capabilities, ServerType
from plugin.fhir.client import FhirClient

EPIC_LIKE = {
    "resourceType": "CapabilityStatement",
    "publisher": "Epic",
    "software": {"name": "Epic"},
    "rest": [
        {
            "mode": "server",
            "resource": [
                {"type": "Patient", "searchParam": [{"name": "_id"}]},
                {"type": "Encounter", "searchParam": [{"name": "patient"}, {"name": "date"}]},
                {"type": "Observation", "searchParam": [{"name": "patient"}]},
                {"type": "Group", "operation": [{"name": "export"}]},
            ],
        }
    ],
}


def test_vendor_and_features_read_from_the_statement():
    caps = Capabilities.from_statement(EPIC_LIKE)
    assert caps.server_type is ServerType.EPIC
    assert not caps.everything
    assert caps.export == {"group"}
    assert caps.supports("Encounter", "date")
    assert not caps.supports("Observation", "date")  # listed params, and date not among them
    assert caps.supports("Procedure", "date")  # nothing listed: benefit of the doubt


def test_not_a_capability_statement_is_fatal():
    with pytest.raises(FatalFhirError, match="CapabilityStatement"):
        Capabilities.from_statement({"resourceType": "OperationOutcome"})


def test_search_plan_follows_the_capabilities():
    with responses.RequestsMock() as mock:
        mock.get("https://ehr.test/fhir/metadata", json=EPIC_LIKE)
        client = FhirClient("https://ehr.test/fhir")
        assert client.choose_strategy(None) == "search"  # no $everything offered
        searches = client.search_plan("p1", date(2024, 1, 1))
    plan = dict(searches)
    assert ("date", "ge2024-01-01") in plan["Encounter"]
    observation = [params for rtype, params in searches if rtype == "Observation"]
    assert [dict(p)["category"] for p in observation] == [
        "laboratory",
        "vital-signs",
        "social-history",
    ]  # Epic wants a category on every Observation search
    assert all(k != "date" for p in observation for k, _ in p)  # not offered: not sent
    assert ("_include", "Condition:patient") not in plan["Condition"]
    assert all(("patient", "p1") in params for params in plan.values())
