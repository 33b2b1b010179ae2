"""Constants and helpers shared by the CDS tests and the bench (no fixtures here)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import tests.paths as shared_paths

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = shared_paths.CDS_EXAMPLES
BASE = "http://testserver"
ISS = "https://ehr.test"
JKU_ISS = "https://jku.test"
JKU_URL = "https://jku.test/.well-known/jwks.json"
ORIGIN = "https://sandbox.cds-hooks.org"
# the tests' clock, deliberately not UTC (12:00Z) so time-zone slips show up
NOW = datetime(2026, 11, 27, 16, 0, tzinfo=timezone(timedelta(hours=4), "UTC+4"))


class Keys:
    def __init__(self) -> None:
        self.es = ec.generate_private_key(ec.SECP384R1())
        self.rs = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rotated = ec.generate_private_key(ec.SECP384R1())

    @staticmethod
    def public_jwk(key: Any, kid: str, alg: str) -> dict[str, Any]:
        algo = jwt.algorithms.ECAlgorithm if alg.startswith("ES") else jwt.algorithms.RSAAlgorithm
        jwk: dict[str, Any] = algo.to_jwk(key.public_key(), as_dict=True)
        jwk.update(kid=kid, alg=alg, use="sig")
        return jwk


def bearer(t: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {t}"}


def url(service: str = "", feedback: bool = False) -> str:
    path = "/cds-services" + (f"/{service}" if service else "") + ("/feedback" if feedback else "")
    return path


def hook_request(
    hook: str,
    context: dict[str, Any],
    *,
    prefetch: dict[str, Any] | None = None,
    fhir_server: str | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}
    if fhir_server:
        body["fhirServer"] = fhir_server
    if token:
        body["fhirAuthorization"] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/*.read",
            "subject": "dxsafety",
        }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body
