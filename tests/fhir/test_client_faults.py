"""Fault injection: a loopback proxy in front of SEKMET breaks one request at a time.

Each fault gets its documented behaviour: a retry (honouring Retry-After) that ends with
exactly the resources a clean fetch returns, or a clear error -- never a hang.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator

import pytest
import responses

from plugin.errors import FatalFhirError, FhirDeadlineError, TemporaryFhirError
from plugin.fhir.auth import BearerAuth
from plugin.fhir.client import FhirClient
from plugin.fhir.http import DEFAULT_RETRY_DELAYS, FhirHttp, parse_retry_after, safe_url
from tests.fhir.faults import Fault, FaultProxy
from tests.fhir.sekmet_live import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


class FakeTime:
    """Records sleeps and advances a fake clock by them, so retries cost no real time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def proxy(sekmet: LiveServer) -> Iterator[FaultProxy]:
    with FaultProxy(sekmet.base_url) as p:
        yield p


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def patient(sekmet: LiveServer) -> str:
    # the patient with the most Observations: several pages at _count=25
    return max(sekmet.loaded, key=lambda pid: len(sekmet.loaded[pid]))


def make_client(sekmet, proxy, fake_time, **http_kwargs) -> FhirClient:
    proxy.faults.clear()
    proxy.requests.clear()
    http = FhirHttp(
        auth=BearerAuth(sekmet.token), sleep=fake_time.sleep, clock=fake_time.clock, **http_kwargs
    )
    return FhirClient(proxy.base_url, http=http, strategy="search", page_size=25)


def clean_fetch(sekmet, patient) -> list[tuple[str, str]]:
    with FhirClient(sekmet.base_url, auth=BearerAuth(sekmet.token), strategy="search") as c:
        return sorted((r["resourceType"], r["id"]) for r in c.fetch_patient(patient))


def fetched(client, patient) -> list[tuple[str, str]]:
    return sorted((r["resourceType"], r["id"]) for r in client.fetch_patient(patient))


def test_429_with_retry_after_seconds(sekmet, proxy, fake_time, patient):
    client = make_client(sekmet, proxy, fake_time)
    proxy.add(Fault("status", match="/Observation?", status=429, headers={"Retry-After": "7"}))
    assert fetched(client, patient) == clean_fetch(sekmet, patient)
    assert fake_time.sleeps == [7.0]


def test_429_with_retry_after_http_date(sekmet, proxy, fake_time, patient):
    client = make_client(sekmet, proxy, fake_time)
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    proxy.add(Fault("status", match="/Encounter?", status=429, headers={"Retry-After": when}))
    assert fetched(client, patient) == clean_fetch(sekmet, patient)
    assert len(fake_time.sleeps) == 1 and 27 <= fake_time.sleeps[0] <= 30


def test_503_then_success_backs_off(sekmet, proxy, fake_time, patient):
    client = make_client(sekmet, proxy, fake_time)
    proxy.add(Fault("status", match="/Condition?", status=503))
    proxy.add(Fault("status", match="/Condition?", status=503))
    assert fetched(client, patient) == clean_fetch(sekmet, patient)
    assert fake_time.sleeps == [1.0, 2.0]  # DEFAULT_RETRY_DELAYS, no Retry-After sent


def test_503_that_never_ends_is_a_temporary_error(sekmet, proxy, fake_time, patient):
    client = make_client(sekmet, proxy, fake_time)
    for _ in range(len(DEFAULT_RETRY_DELAYS) + 1):
        proxy.add(Fault("status", match="/Procedure?", status=503))
    with pytest.raises(TemporaryFhirError, match="HTTP 503, still failing after 5 retries") as e:
        client.fetch_patient(patient)
    assert e.value.status == 503
    assert not isinstance(e.value, FhirDeadlineError)
    assert fake_time.sleeps == list(DEFAULT_RETRY_DELAYS)


def test_connection_reset_mid_page_loses_and_duplicates_nothing(sekmet, proxy, fake_time, patient):
    client = make_client(sekmet, proxy, fake_time)
    proxy.add(Fault("reset", match="/Observation?patient"))  # first page
    proxy.add(Fault("reset", match="/Observation?*_offset=50"))  # reached through a next link
    result = client.fetch_patient(patient)
    keys = [(r["resourceType"], r["id"]) for r in result]
    assert len(keys) == len(set(keys))
    assert sorted(keys) == clean_fetch(sekmet, patient)
    assert (
        sum("/Observation?" in p and "_offset=50" in p for p in proxy.requests) == 2
    )  # the dropped page, re-read once
    assert len(fake_time.sleeps) == 2


def test_truncated_json_page_is_a_clear_fatal_error(sekmet, proxy, fake_time, patient):
    client = make_client(sekmet, proxy, fake_time)
    proxy.add(Fault("truncate", match="/Observation?*_offset=25"))
    with pytest.raises(FatalFhirError, match="invalid JSON") as e:
        client.fetch_patient(patient)
    assert "Observation" in str(e.value)
    assert patient not in str(e.value)  # ids stay out of messages
    assert fake_time.sleeps == []  # not retried: the server said it was done


def test_next_link_that_loops_is_a_clear_error(sekmet, proxy, fake_time, patient):
    client = make_client(sekmet, proxy, fake_time)
    proxy.add(Fault("loop", match="/Observation?patient"))
    before = len(proxy.requests)
    with pytest.raises(FatalFhirError, match="paging loops"):
        list(client.search("Observation", [("patient", patient), ("_count", "25")]))
    assert len(proxy.requests) - before == 1  # the next link is the page itself: stop


def test_next_link_that_loops_back_to_the_start_stops(sekmet, proxy, fake_time, patient):
    client = make_client(sekmet, proxy, fake_time)
    proxy.add(Fault("rewind", match="/Observation?*_offset=50"))
    with pytest.raises(FatalFhirError, match="paging loops"):
        client.fetch_patient(patient)
    # pages 0, 25, 50 -> back to 0 (read once more under its _offset=0 name) -> 25: stop
    observation_pages = [p for p in proxy.requests if "/Observation?" in p]
    assert len(observation_pages) == 4


def test_retry_after_beyond_the_deadline_fails_at_once(sekmet, proxy, fake_time, patient):
    client = make_client(sekmet, proxy, fake_time, deadline_s=60)
    proxy.add(Fault("status", match="/Observation?", status=503, headers={"Retry-After": "600"}))
    with pytest.raises(FhirDeadlineError, match="deadline"):
        client.fetch_patient(patient)
    assert fake_time.sleeps == []


def test_stalled_server_is_abandoned_at_the_deadline(sekmet, proxy, patient):
    proxy.faults.clear()
    http = FhirHttp(
        auth=BearerAuth(sekmet.token),
        read_timeout_s=0.3,
        deadline_s=1.0,
        retry_delays=(0.05,) * 50,
    )
    client = FhirClient(proxy.base_url, http=http, strategy="search")
    client.capabilities  # noqa: B018 - read before the server stalls
    for _ in range(8):  # more than the ~3 attempts that fit in the deadline
        proxy.add(Fault("stall", match="/Encounter?", seconds=1.0))
    with pytest.raises(FhirDeadlineError):
        client.fetch_patient(patient)
    proxy.faults.clear()
    proxy.wait_idle()


# --- responses: answers SEKMET never gives ----------------------------------------------------
BASE = "https://ehr.test/fhir"
METADATA = {"resourceType": "CapabilityStatement", "rest": [{"mode": "server", "resource": []}]}


@pytest.fixture
def ehr(fake_time) -> Iterator[tuple[responses.RequestsMock, FhirClient]]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(f"{BASE}/metadata", json=METADATA)
        http = FhirHttp(auth=BearerAuth("t0ken"), sleep=fake_time.sleep, clock=fake_time.clock)
        yield mock, FhirClient(BASE, http=http)


def test_non_bundle_where_a_bundle_is_due_is_fatal(ehr):
    mock, client = ehr
    mock.get(f"{BASE}/Encounter", json={"resourceType": "Patient", "id": "x"})
    with pytest.raises(FatalFhirError, match="expected a Bundle, got Patient"):
        list(client.search("Encounter", [("patient", "1")]))


def test_next_link_to_another_host_is_refused(ehr):
    mock, client = ehr
    page = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "next", "url": "https://elsewhere.test/fhir/Encounter?page=2"}],
        "entry": [{"resource": {"resourceType": "Encounter", "id": "1"}}],
    }
    mock.get(f"{BASE}/Encounter", json=page)
    with pytest.raises(FatalFhirError, match="another server"):
        list(client.search("Encounter", []))
    assert all("elsewhere" not in c.request.url for c in mock.calls)


@pytest.mark.parametrize("status", [403, 404, 400])
def test_client_errors_are_fatal_and_not_retried(ehr, fake_time, status):
    mock, client = ehr
    mock.get(f"{BASE}/Patient/1", status=status, json={"resourceType": "OperationOutcome"})
    with pytest.raises(FatalFhirError) as e:
        client.http.get_json(f"{BASE}/Patient/1")
    assert e.value.status == status and not isinstance(e.value, TemporaryFhirError)
    assert fake_time.sleeps == []


def test_relative_next_links_are_followed(ehr):
    mock, client = ehr
    first = {
        "resourceType": "Bundle",
        "link": [{"relation": "next", "url": "Encounter?page=2"}],
        "entry": [{"resource": {"resourceType": "Encounter", "id": "1"}}],
    }
    second = {
        "resourceType": "Bundle",
        "entry": [{"resource": {"resourceType": "Encounter", "id": "2"}}],
    }
    mock.get(f"{BASE}/Encounter?page=2", json=second)
    mock.get(f"{BASE}/Encounter", json=first)
    assert [r["id"] for r in client.search("Encounter", [])] == ["1", "2"]


def test_retry_after_parsing():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    now = email.utils.parsedate_to_datetime("Wed, 21 Oct 2026 07:28:00 GMT")
    assert parse_retry_after("Wed, 21 Oct 2026 07:28:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 21 Oct 2026 07:27:00 GMT", now=now) == 0.0


def test_safe_url_drops_ids_and_queries():
    url = "https://ehr.test/fhir/Patient/123-abc/$everything?_count=10&patient=123"
    assert safe_url(url) == "ehr.test/fhir/Patient/…/$everything?…"
    assert "123" not in safe_url(f"{BASE}/Observation?patient=123")


def test_connection_refused_is_temporary(fake_time):
    http = FhirHttp(sleep=fake_time.sleep, clock=fake_time.clock, retry_delays=(1.0, 1.0))
    with pytest.raises(TemporaryFhirError, match="ConnectionError"):
        http.get_json("http://127.0.0.1:9/fhir/metadata")
    assert fake_time.sleeps == [1.0, 1.0]


def test_bulk_download_reset_mid_file_is_retried_without_duplicates(sekmet, proxy, tmp_path):
    from plugin.fhir.bulk import BulkExporter
    from plugin.fhir.read import iter_resources

    proxy.faults.clear()
    proxy.requests.clear()
    fake = FakeTime()
    http = FhirHttp(auth=BearerAuth(sekmet.token), sleep=fake.sleep, clock=fake.clock)
    client = FhirClient(proxy.base_url, http=http)
    proxy.add(Fault("reset", match="/bulk-files/*/Observation.ndjson"))
    bulk = BulkExporter(client, poll_s=0.2)
    bulk.http.sleep = lambda s: time.sleep(min(s, 0.2))  # SEKMET really needs ~1 s
    result = bulk.export(tmp_path, types=["Observation"])
    ids = [item.resource["id"] for item in iter_resources(tmp_path)]
    expected = {
        r["id"] for rs in sekmet.loaded.values() for r in rs if r["resourceType"] == "Observation"
    }
    assert len(ids) == len(set(ids)) and set(ids) == expected
    assert result.counts == {"Observation": len(expected)}
    assert sum("/bulk-files/" in p for p in proxy.requests) == 2  # the dropped try, then whole
