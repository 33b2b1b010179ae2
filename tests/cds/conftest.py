"""Fixtures for the CDS Hooks tests: signing keys, an issuers file, the app, a token maker.

Two issuers: ``https://ehr.test`` with an ES384 and an RS384 key configured out of band
(inline JWKS), and ``https://jku.test`` whose keys come from an allowlisted ``jku`` URL
(served by an in-process fetcher, so no traffic leaves the process). The spec's own example
issuer is configured with the spec's example JWKS.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from fastapi.testclient import TestClient

from plugin.app import create_app
from plugin.config import Settings
from tests.cds.helpers import BASE, EXAMPLES, ISS, JKU_ISS, JKU_URL, NOW, ORIGIN, REPO, Keys


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys()


@pytest.fixture
def jku_keys(keys: Keys) -> dict[str, Any]:
    """What the jku URL serves; tests may swap the keys (rotation)."""
    return {"keys": [Keys.public_jwk(keys.es, "jku-es", "ES384")]}


@pytest.fixture
def issuers_file(tmp_path: Path, keys: Keys) -> Path:
    spec = {
        "issuers": [
            {
                "iss": ISS,
                "jwks": {
                    "keys": [
                        Keys.public_jwk(keys.es, "ehr-es", "ES384"),
                        Keys.public_jwk(keys.rs, "ehr-rs", "RS384"),
                    ]
                },
                "tenants": ["tenant-a", "tenant-b"],
                "fhir_servers": ["http://127.0.0.1"],  # loopback only: tests never leave it
            },
            {"iss": JKU_ISS, "jku": [JKU_URL]},
            {
                "iss": "https://fhir-ehr.example.com/",
                "jwks_file": str(EXAMPLES / "spec-2.0.1" / "jwks-public.json"),
            },
        ]
    }
    path = tmp_path / "issuers.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture
def settings(tmp_path: Path, issuers_file: Path) -> Settings:
    return Settings(
        env="test",
        public_base_url=BASE,
        database_url=f"sqlite:///{tmp_path / 'dxsafety.db'}",
        rules_dir=REPO / "rules",
        cds_issuers_file=issuers_file,
        cds_allowed_origins=[ORIGIN],
        cds_max_request_bytes=2_000_000,
        cds_fetch_budget_s=5.0,
    )


@pytest.fixture
def app(settings: Settings, jku_keys: dict[str, Any]) -> Any:
    application = create_app(settings, clock=lambda: NOW)
    fetched: list[str] = []

    def fetch(url: str) -> dict[str, Any]:
        fetched.append(url)
        if url != JKU_URL:
            raise ValueError("unexpected JWKS URL")
        return jku_keys

    application.state.cds.verifier.jwks._fetch = fetch
    application.state.jwks_fetched = fetched
    return application


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


TokenMaker = Callable[..., str]


@pytest.fixture
def token(keys: Keys) -> TokenMaker:
    def make(
        aud: str,
        *,
        iss: str = ISS,
        kid: str = "ehr-es",
        alg: str = "ES384",
        key: Any = None,
        lifetime: int = 300,
        iat: float | None = None,
        jti: str | None = None,
        tenant: str | None = "tenant-a",
        headers: dict[str, Any] | None = None,
        drop: tuple[str, ...] = (),
    ) -> str:
        issued = time.time() if iat is None else iat
        claims: dict[str, Any] = {
            "iss": iss,
            "aud": aud,
            "iat": int(issued),
            "exp": int(issued) + lifetime,
            "jti": jti or uuid.uuid4().hex + uuid.uuid4().hex,
        }
        if tenant is not None:
            claims["tenant"] = tenant
        for name in drop:
            claims.pop(name, None)
        if key is None:
            key = keys.rs if alg.startswith("RS") else keys.es
        head = {"kid": kid, "typ": "JWT", **(headers or {})}
        return jwt.encode(claims, key, algorithm=alg, headers=head)

    return make
