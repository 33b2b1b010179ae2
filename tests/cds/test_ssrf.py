"""Issue 14 item 1: the service calls a client's fhirServer only when that client's issuer
allowlists it (deny by default), never sends the token anywhere else (no redirect off the
allowlist), and refuses loopback/link-local/private addresses unless they are listed.
Real HTTP on loopback; DNS answers are injected (the one fault we cannot make for real)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from plugin.cds.fetch import AddressPolicy, Deadline, FhirFetcher
from plugin.cds.issuers import Issuer
from plugin.errors import FatalFhirError
from tests.cds import patients as P
from tests.cds.fhir_standin import FhirStandIn
from tests.cds.helpers import BASE, JKU_ISS, JKU_URL, NOW, bearer, hook_request, url
from tests.cds.hostile import Hostile, redirect

PV = "dxsafety-patient-view"
CONTEXT = {"userId": "Practitioner/u", "patientId": "p"}


def _jku_token(token: Any) -> str:
    # this issuer has keys but no fhir_servers entry
    return str(
        token(BASE + url(PV), iss=JKU_ISS, kid="jku-es", tenant=None, headers={"jku": JKU_URL})
    )


def test_an_issuer_without_fhir_servers_never_has_us_call_its_fhir_server(
    client: Any, token: Any
) -> None:
    with FhirStandIn(P.fit_patient("p", NOW)) as fhir:
        body = hook_request("patient-view", CONTEXT, fhir_server=fhir.base_url, token="secret")
        r = client.post(url(PV), json=body, headers=bearer(_jku_token(token)))
        assert fhir.requests == []  # not one request, so the token went nowhere
    assert r.status_code == 412
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "allowlist" in outcome["issue"][0]["diagnostics"]


def test_the_allowlisted_issuer_still_gets_its_data_fetched(client: Any, token: Any) -> None:
    with FhirStandIn(P.fit_patient("p", NOW), token="secret") as fhir:
        body = hook_request("patient-view", CONTEXT, fhir_server=fhir.base_url, token="secret")
        r = client.post(url(PV), json=body, headers=bearer(token(BASE + url(PV))))
        assert fhir.requests and all(a == "Bearer secret" for _, a in fhir.requests)
    assert r.status_code == 200, r.text
    assert len(r.json()["cards"]) == 1


def test_a_redirect_off_the_allowlist_is_not_followed(client: Any, token: Any) -> None:
    with FhirStandIn([]) as elsewhere:
        # same host, other port: off the server the client named, so off the allowlist
        with Hostile(redirect(f"{elsewhere.base_url}/Patient/p")) as fhir:
            body = hook_request("patient-view", CONTEXT, fhir_server=fhir.base_url, token="t")
            r = client.post(url(PV), json=body, headers=bearer(token(BASE + url(PV))))
            assert fhir.requests  # we asked the allowlisted server...
        assert elsewhere.requests == []  # ...and never followed it elsewhere
    assert r.status_code == 412


def test_a_redirect_on_the_same_server_is_followed() -> None:
    issuer = Issuer(iss="i", fhir_servers=("http://127.0.0.1",))
    with FhirStandIn(P.fit_patient("p", NOW)) as fhir:
        with Hostile(redirect(f"{fhir.base_url}/Patient/p")) as hop:
            fetcher = FhirFetcher(
                hop.base_url, "t", Deadline.after(5), policy=issuer.address_policy()
            )
            # a redirect to another port is another server: refused
            with pytest.raises(FatalFhirError, match="another server"):
                fetcher.query("Patient/p")
        fetcher = FhirFetcher(fhir.base_url, "t", Deadline.after(5), policy=issuer.address_policy())
        assert fetcher.query("Patient/p") is not None


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "169.254.169.254", "10.1.2.3", "192.168.0.10", "::1", "fd00::1", "100.64.0.1"],
)
def test_a_name_resolving_to_a_non_public_address_is_refused(
    monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    """The classic SSRF: an allowlisted *name* that DNS points at an internal address."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET

    def fake_dns(host: str, port: Any, *args: Any, **kw: Any) -> list[Any]:
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", fake_dns)
    connects: list[Any] = []
    monkeypatch.setattr(socket.socket, "connect", lambda self, a: connects.append(a))
    issuer = Issuer(iss="i", fhir_servers=("https://fhir.example.org/r4",))
    assert issuer.may_call("https://fhir.example.org/r4")
    fetcher = FhirFetcher(
        "https://fhir.example.org/r4", "t", Deadline.after(5), policy=issuer.address_policy()
    )
    with pytest.raises(FatalFhirError, match=r"non-public|loopback"):
        fetcher.query("Patient/p")
    assert connects == []


def test_non_public_addresses_are_allowed_only_when_listed() -> None:
    assert not AddressPolicy.of(["https://fhir.example.org"]).allows(_ip("10.1.2.3"))
    assert AddressPolicy.of(["https://fhir.example.org"], ["10.1.0.0/16"]).allows(_ip("10.1.2.3"))
    assert AddressPolicy.of(["http://127.0.0.1:8080/fhir"]).allows(_ip("127.0.0.1"))
    assert not AddressPolicy.of(["http://127.0.0.1:8080/fhir"]).allows(_ip("127.0.0.2"))
    assert AddressPolicy.of(["http://localhost/fhir"]).allows(_ip("::1"))
    assert AddressPolicy.of([]).allows(_ip("93.184.216.34"))  # public: fine
    assert not AddressPolicy.of([]).allows(_ip("::ffff:127.0.0.1"))  # v4-mapped loopback


def test_allowlist_matching_is_strict() -> None:
    issuer = Issuer(iss="i", fhir_servers=("https://ehr.example.org/fhir",))
    assert issuer.may_call("https://ehr.example.org/fhir/")
    assert not issuer.may_call("https://ehr.example.org/fhirx")
    assert not issuer.may_call("https://ehr.example.org.evil.test/fhir")
    assert not issuer.may_call("https://user@ehr.example.org/fhir")
    assert not issuer.may_call("http://ehr.example.org/fhir")
    assert not issuer.may_call("https://ehr.example.org:99999/fhir")
    assert not Issuer(iss="i").may_call("https://ehr.example.org/fhir")  # deny by default


def _ip(text: str) -> Any:
    import ipaddress

    ip = ipaddress.ip_address(text)
    return ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip
