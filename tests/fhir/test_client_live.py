"""FhirClient against a live SEKMET server loaded with the Synthea bundles."""

from __future__ import annotations

from collections import Counter
from datetime import date

import pytest

from plugin.errors import FatalFhirError
from plugin.fhir.auth import BearerAuth
from plugin.fhir.client import DATE_PARAMS, RESOURCE_TYPES, FhirClient
from tests.fhir.sekmet_live import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def keys(resources):
    return {(r["resourceType"], r["id"]) for r in resources}


def wanted(resources):
    return [r for r in resources if r["resourceType"] in RESOURCE_TYPES]


def clinical_dates(resource) -> tuple[str, str] | None:
    """(earliest, latest) of the date a ``date=`` search compares (a period, or an instant)."""
    for key in ("period", "effectivePeriod", "performedPeriod"):
        if key in resource:
            start = resource[key].get("start") or resource[key].get("end")
            return start, resource[key].get("end") or start
    for key in ("effectiveDateTime", "performedDateTime", "authoredOn"):
        if key in resource:
            return resource[key], resource[key]
    return None


def in_window(resource, since: date | None, until: date | None) -> bool:
    """What the server should return: undated types always, dated ones if they overlap."""
    dates = clinical_dates(resource)
    if resource["resourceType"] not in DATE_PARAMS or dates is None:
        return True
    earliest, latest = dates
    return (since is None or latest[:10] >= since.isoformat()) and (
        until is None or earliest[:10] <= until.isoformat()
    )


def test_capabilities_read_from_metadata(client: FhirClient):
    caps = client.capabilities
    assert caps.everything
    assert caps.export == {"system", "patient", "group"}
    assert "Condition:patient" in caps.includes["Condition"]
    assert client.choose_strategy(None) == "everything"
    assert client.choose_strategy(date(2015, 1, 1)) == "search"


@pytest.mark.parametrize("strategy", ["everything", "search"])
def test_fetch_patient_equals_the_bundle_on_disk(sekmet: LiveServer, strategy):
    with FhirClient(
        sekmet.base_url, auth=BearerAuth(sekmet.token), strategy=strategy, page_size=50
    ) as client:
        for patient_id, on_disk in sekmet.loaded.items():
            fetched = client.fetch_patient(patient_id)
            assert len(fetched) == len(keys(fetched)), "duplicates returned"
            assert keys(fetched) == keys(wanted(on_disk)), patient_id
            # the content is the file's (the server only adds meta and rewrites urn:uuid refs)
            by_key = {(r["resourceType"], r["id"]): r for r in on_disk}
            for res in fetched:
                assert res.get("code") == by_key[(res["resourceType"], res["id"])].get("code")


def test_since_limits_dated_resources_only(sekmet: LiveServer, client: FhirClient):
    patient_id, on_disk = max(sekmet.loaded.items(), key=lambda kv: len(kv[1]))
    since = date(2015, 6, 1)
    fetched = client.fetch_patient(patient_id, since=since)
    got = keys(fetched)
    assert got == {
        (r["resourceType"], r["id"]) for r in wanted(on_disk) if in_window(r, since, None)
    }
    counts = Counter(t for t, _ in got)
    assert counts["Patient"] == 1
    assert counts["Condition"] == sum(1 for r in on_disk if r["resourceType"] == "Condition")
    assert len(got) < len(wanted(on_disk)), "the window removed nothing: pick another date"


def test_since_and_until_give_a_time_range(sekmet: LiveServer, client: FhirClient):
    patient_id, on_disk = max(sekmet.loaded.items(), key=lambda kv: len(kv[1]))
    days = sorted(
        d[0][:10] for r in on_disk if r["resourceType"] in DATE_PARAMS and (d := clinical_dates(r))
    )
    # the middle half of this patient's record
    since, until = (date.fromisoformat(days[len(days) * k // 4]) for k in (1, 3))
    got = keys(client.fetch_patient(patient_id, since=since, until=until))
    expected = {(r["resourceType"], r["id"]) for r in wanted(on_disk) if in_window(r, since, until)}
    assert got == expected
    assert len(keys(client.fetch_patient(patient_id, since=since))) > len(got)
    assert len(got) > 50


def test_small_pages_are_followed_to_the_end_without_duplicates(sekmet, client: FhirClient):
    patient_id, on_disk = max(sekmet.loaded.items(), key=lambda kv: len(kv[1]))
    client.page_size = 7
    before = client.pages_read
    seen = list(client.search("Observation", [("patient", patient_id), ("_count", "7")]))
    expected = {r["id"] for r in on_disk if r["resourceType"] == "Observation"}
    assert len(seen) == len(expected) == len({r["id"] for r in seen})
    assert {r["id"] for r in seen} == expected
    assert client.pages_read - before == -(-len(expected) // 7)


def test_unknown_patient_is_fatal_404(client: FhirClient):
    with pytest.raises(FatalFhirError) as err:
        client.fetch_patient("no-such-patient")
    assert err.value.status == 404


def test_wrong_bearer_token_is_fatal_401(sekmet: LiveServer):
    with (
        FhirClient(sekmet.base_url, auth=BearerAuth("not-the-token")) as client,
        pytest.raises(FatalFhirError) as err,
    ):
        client.fetch_patient(next(iter(sekmet.loaded)))
    assert err.value.status == 401
    assert "not-the-token" not in str(err.value)


def test_debug_logging_keeps_patient_ids_out(sekmet: LiveServer, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    patient_id = next(iter(sekmet.loaded))
    with FhirClient(sekmet.base_url, auth=BearerAuth(sekmet.token), strategy="search") as c:
        c.fetch_patient(patient_id)
    assert caplog.records  # something was logged ...
    assert patient_id not in caplog.text and sekmet.token not in caplog.text  # ... but not these


def test_everything_keeps_other_patients_out(sekmet: LiveServer, client: FhirClient):
    """SEKMET's $everything follows references out of the record: a Group that lists the
    patient brings its other members along. They are not this patient's record."""
    import requests

    first, second = sorted(sekmet.loaded)[:2]
    group = {
        "resourceType": "Group",
        "id": "dxsafety-everything-group",
        "type": "person",
        "actual": True,
        "member": [{"entity": {"reference": f"Patient/{pid}"}} for pid in (first, second)],
    }
    resp = requests.put(
        f"{sekmet.base_url}/Group/{group['id']}",
        json=group,
        timeout=30,
        headers={**sekmet.auth_header, "Content-Type": "application/fhir+json"},
    )
    assert resp.status_code in (200, 201), resp.text
    raw = list(client.search(f"Patient/{first}/$everything", []))
    assert ("Patient", second) in keys(raw)  # the server did send the other member
    fetched = client.fetch_patient(first)  # auto: $everything
    assert keys(fetched) == keys(wanted(sekmet.loaded[first]))
