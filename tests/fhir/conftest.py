"""Fixtures for the FHIR client tests: one live SEKMET server per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from plugin.fhir.auth import BearerAuth
from plugin.fhir.client import FhirClient
from tests.fhir.sekmet_live import LiveServer, load_synthea, start_server


@pytest.fixture(scope="session")
def sekmet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real SEKMET server on a free loopback port, loaded with the 20 Synthea bundles."""
    server = start_server(tmp_path_factory.mktemp("sekmet"))
    try:
        load_synthea(server)
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(sekmet: LiveServer) -> Iterator[FhirClient]:
    with FhirClient(sekmet.base_url, auth=BearerAuth(sekmet.token)) as c:
        yield c
