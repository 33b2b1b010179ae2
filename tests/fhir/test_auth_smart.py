"""SMART Backend Services against SEKMET's token endpoint (real signatures, real tokens)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from plugin.errors import FatalFhirError, FhirAuthError
from plugin.fhir.auth import BearerAuth, SmartBackendAuth, load_private_key
from plugin.fhir.client import FhirClient
from tests.fhir.sekmet_live import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def smart(sekmet: LiveServer, **kwargs) -> SmartBackendAuth:
    kwargs.setdefault("client_id", "dxsafety-rs")
    kwargs.setdefault("private_key_file", sekmet.rsa_key)
    return SmartBackendAuth.from_files(sekmet.base_url, **kwargs)


@pytest.mark.parametrize(
    ("client_id", "key_attr", "alg"),
    [("dxsafety-rs", "rsa_key", "RS384"), ("dxsafety-es", "ec_key", "ES384")],
)
def test_token_obtained_via_discovery_and_cached(
    sekmet: LiveServer, client_id, key_attr, alg, caplog
):
    caplog.set_level(logging.DEBUG)
    auth = smart(sekmet, client_id=client_id, private_key_file=getattr(sekmet, key_attr))
    assert auth.alg == alg
    with FhirClient(sekmet.base_url, auth=auth) as client:
        patient_id = next(iter(sekmet.loaded))
        assert client.fetch_patient(patient_id)
        assert client.fetch_patient(patient_id)
    assert auth.token_url == sekmet.base_url.removesuffix("/fhir") + "/auth/token"
    assert auth.tokens_issued == 1  # cached across both fetches
    token = auth._token
    assert token and token not in caplog.text


def test_token_refreshed_before_expiry(sekmet: LiveServer):
    import time

    clock = Clock(time.time())
    auth = smart(sekmet, clock=clock)
    with FhirClient(sekmet.base_url, auth=auth) as client:
        patient_id = next(iter(sekmet.loaded))
        client.fetch_patient(patient_id)
        first = auth._token
        clock.now += 3600 - 30  # inside the refresh margin of a one-hour token
        client.fetch_patient(patient_id)
    assert auth.tokens_issued == 2
    assert auth._token != first


def test_token_refreshed_once_on_401(sekmet: LiveServer):
    auth = smart(sekmet)
    with FhirClient(sekmet.base_url, auth=auth) as client:
        patient_id = next(iter(sekmet.loaded))
        client.fetch_patient(patient_id)
        auth._token = "revoked-by-the-server"  # what the server sees after a revocation
        assert client.fetch_patient(patient_id)
    assert auth.tokens_issued == 2


def test_wrong_key_gets_a_clear_error(sekmet: LiveServer, tmp_path: Path):
    other = tmp_path / "other.pem"
    other.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    auth = smart(sekmet, private_key_file=other, key_id="key-2026")
    with FhirClient(sekmet.base_url, auth=auth) as client, pytest.raises(FhirAuthError) as err:
        client.fetch_patient(next(iter(sekmet.loaded)))
    message = str(err.value)
    assert "dxsafety-rs" in message
    assert "verification failed" in message  # the server's own reason
    assert "private key matches the public key" in message and "key-2026" in message
    assert err.value.status == 401


def test_unknown_client_is_refused(sekmet: LiveServer):
    auth = smart(sekmet, client_id="nobody")
    with FhirClient(sekmet.base_url, auth=auth) as client, pytest.raises(FhirAuthError) as err:
        client.fetch_patient(next(iter(sekmet.loaded)))
    assert "Unknown client_id" in str(err.value)


def test_local_key_problems_are_auth_errors(sekmet: LiveServer, tmp_path: Path):
    with pytest.raises(FhirAuthError, match="does not match the private key"):
        smart(sekmet, private_key_file=sekmet.rsa_key, alg="ES384")
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(FhirAuthError, match="not an unencrypted PEM private key"):
        load_private_key(bad)
    with pytest.raises(FhirAuthError, match="cannot read"):
        load_private_key(tmp_path / "missing.pem")


def test_no_credentials_is_401(sekmet: LiveServer):
    with FhirClient(sekmet.base_url) as client, pytest.raises(FatalFhirError) as err:
        client.fetch_patient(next(iter(sekmet.loaded)))
    assert err.value.status == 401


def test_bearer_token_file(sekmet: LiveServer, tmp_path: Path):
    path = tmp_path / "token"
    path.write_text(sekmet.token + "\n")
    auth = BearerAuth.from_file(path)
    assert sekmet.token not in repr(auth)
    with FhirClient(sekmet.base_url, auth=auth) as client:
        assert client.fetch_patient(next(iter(sekmet.loaded)))
