"""Through real HTTP: uvicorn on a loopback port, prefetch absent, so the service fetches the
patient from a live FHIR server (SEKMET, the FHIR client tests' server) with the client's
``fhirAuthorization`` token, and returns the same cards as with full prefetch."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from plugin.app import create_app
from plugin.config import Settings
from tests.cds import patients as P
from tests.cds.helpers import NOW, REPO, bearer, hook_request
from tests.cds.live import free_port, serve_in_thread, wait_for_discovery
from tests.fhir.sekmet_live import LiveServer, as_put_transaction, start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fhir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, list[Any]]]:
    server = start_server(tmp_path_factory.mktemp("sekmet-cds"))
    try:
        # enough heart rates that every Observation search pages (SEKMET pages by 20)
        resources = (
            P.fit_patient("live-fit", NOW)
            + P.padding("live-fit", NOW, 45)
            + P.dizzy_patient("live-ed", NOW)
        )
        bundle = as_put_transaction(
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [{"resource": r} for r in resources],
            }
        )
        r = requests.post(server.base_url, json=bundle, headers=server.auth_header, timeout=60)
        assert r.status_code == 200, r.text[:500]
        yield server, resources
    finally:
        server.stop()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, issuers: Path) -> Iterator[str]:
    port = free_port()
    tmp = tmp_path_factory.mktemp("cds-live")
    settings = Settings(
        env="test",
        public_base_url=f"http://127.0.0.1:{port}",
        database_url=f"sqlite:///{tmp / 'db.sqlite'}",
        rules_dir=REPO / "rules",
        cds_issuers_file=issuers,
        cds_fetch_budget_s=10.0,
    )
    with serve_in_thread(create_app(settings, clock=lambda: NOW), port) as base:
        yield base


@pytest.fixture(scope="module")
def issuers(tmp_path_factory: pytest.TempPathFactory, keys: Any) -> Path:
    import yaml

    from tests.cds.helpers import ISS, Keys

    path = tmp_path_factory.mktemp("issuers") / "issuers.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "issuers": [
                    {
                        "iss": ISS,
                        "jwks": {"keys": [Keys.public_jwk(keys.es, "ehr-es", "ES384")]},
                        "fhir_servers": ["http://127.0.0.1"],
                    }
                ]
            }
        )
    )
    return path


def call(base: str, token: Any, service_id: str, body: dict[str, Any]) -> requests.Response:
    url = f"{base}/cds-services/{service_id}"
    return requests.post(url, json=body, headers=bearer(token(url, tenant=None)), timeout=30)


CASES = [
    ("dxsafety-patient-view", "patient-view", {"patientId": "live-fit"}, None),
    (
        "dxsafety-order-sign",
        "order-sign",
        {
            "patientId": "live-fit",
            "draftOrders": {
                "resourceType": "Bundle",
                "entry": [{"resource": P.colonoscopy_order("live-fit")}],
            },
        },
        None,
    ),
    (
        "dxsafety-encounter-discharge",
        "encounter-discharge",
        {"patientId": "live-ed", "encounterId": "live-ed-ed"},
        "live-ed-ed",
    ),
]


@pytest.mark.parametrize(
    ("service_id", "hook", "context", "encounter"), CASES, ids=[c[1] for c in CASES]
)
def test_fetched_from_fhir_equals_full_prefetch(
    fhir: Any, service: Any, token: Any, service_id: Any, hook: Any, context: Any, encounter: Any
) -> None:
    server, resources = fhir
    pid = context["patientId"]
    mine = [
        r
        for r in resources
        if r.get("id") == pid or (r.get("subject") or {}).get("reference") == f"Patient/{pid}"
    ]
    ctx = {"userId": "Practitioner/u1", **context}
    fetched = call(
        service,
        token,
        service_id,
        hook_request(hook, ctx, fhir_server=server.base_url, token=server.token),
    )
    prefetched = call(
        service,
        token,
        service_id,
        hook_request(hook, ctx, prefetch=P.full_prefetch(mine, encounter_id=encounter)),
    )
    assert fetched.status_code == 200, fetched.text
    assert prefetched.status_code == 200, prefetched.text
    assert fetched.json()["cards"], "the patient has something to say"
    assert _without_uuids(fetched.json()) == _without_uuids(prefetched.json())
    assert fetched.json()["cards"][0]["uuid"] != prefetched.json()["cards"][0]["uuid"]  # per call


def _without_uuids(value: Any) -> Any:
    """Card and suggestion uuids are fresh per call (issue 14); everything else must match."""
    if isinstance(value, dict):
        return {k: _without_uuids(v) for k, v in value.items() if k != "uuid"}
    if isinstance(value, list):
        return [_without_uuids(v) for v in value]
    return value


def test_a_refused_fhir_token_is_412(fhir: Any, service: Any, token: Any) -> None:
    server, _ = fhir
    r = call(
        service,
        token,
        "dxsafety-patient-view",
        hook_request(
            "patient-view",
            {"userId": "Practitioner/u1", "patientId": "live-fit"},
            fhir_server=server.base_url,
            token="not-the-token",
        ),
    )
    assert r.status_code == 412
    assert r.json()["resourceType"] == "OperationOutcome"


def test_dxsafety_serve_starts_and_warns_loudly_in_unsigned_mode(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DXSAFETY_CDS_UNSIGNED_DEV_MODE": "true",
        "DXSAFETY_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("dxsafety")),
                "serve",
                "--port",
                str(port),
                "--rules",
                str(REPO / "rules"),
                "--database-url",
                f"sqlite:///{tmp_path / 'db.sqlite'}",
            ],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        r = wait_for_discovery(proc, port, log)
        assert r.status_code == 200
        assert len(r.json()["services"]) == 6
        assert (tmp_path / "db.sqlite").exists()  # --database-url was used
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert "UNSIGNED DEVELOPMENT MODE" in log.read_text()
