"""JWT verification: every route needs a good client token; each failure is a bare 401."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from plugin.app import create_app
from plugin.cds.issuers import load_issuers
from plugin.cds.jwt_auth import JwksCache, TokenVerifier
from plugin.config import Settings
from plugin.errors import CdsAuthError, SettingsError
from tests.cds.helpers import BASE, EXAMPLES, ISS, JKU_ISS, JKU_URL, Keys, bearer, url

DISCOVERY = f"{BASE}/cds-services"
SPEC_TOKEN = (EXAMPLES / "spec-2.0.1" / "jwt-example.txt").read_text().strip()


def get(client: Any, tok: str | None, **headers: str) -> Any:
    return client.get(url(), headers={**(bearer(tok) if tok else {}), **headers})


def test_good_es384_and_rs384_tokens_are_accepted(client: Any, token: Any) -> None:
    assert get(client, token(DISCOVERY)).status_code == 200
    assert get(client, token(DISCOVERY, kid="ehr-rs", alg="RS384")).status_code == 200
    # aud may be an array that contains the endpoint
    assert get(client, token([DISCOVERY, "https://other.example"])).status_code == 200


@pytest.mark.parametrize(
    "case",
    [
        "no header",
        "not bearer",
        "garbage",
        "wrong aud",
        "aud of another service",
        "aud with trailing slash",
        "unknown kid",
        "no kid",
        "alg none",
        "HS256 with kid",
        "HS384 keyed with the public key",
        "ES256",
        "expired",
        "not yet valid (nbf)",
        "issued in the future",
        "lifetime too long",
        "unknown iss",
        "tenant not allowed",
        "tenant missing",
        "no jti",
        "no exp",
        "jku not allowlisted",
        "wrong typ",
        "signed by another key",
        "RS384 header on the EC key",
    ],
)
def test_bad_tokens_get_a_bare_401(client: Any, token: Any, keys: Keys, case: str) -> None:
    now = time.time()
    claims = {
        "iss": ISS,
        "aud": DISCOVERY,
        "iat": int(now),
        "exp": int(now) + 300,
        "jti": "j-" + case,
        "tenant": "tenant-a",
    }
    pem = keys.es.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    tokens: dict[str, Any] = {
        "no header": None,
        "garbage": "not.a.jwt",
        "wrong aud": lambda: token("https://cds.example.org/cds-services"),
        "aud of another service": lambda: token(f"{BASE}/cds-services/dxsafety-patient-view"),
        "aud with trailing slash": lambda: token(DISCOVERY + "/"),
        "unknown kid": lambda: token(DISCOVERY, kid="nope"),
        "no kid": lambda: jwt.encode(claims, keys.es, algorithm="ES384"),
        "alg none": lambda: jwt.encode(claims, "", algorithm="none", headers={"kid": "ehr-es"}),
        "HS256 with kid": lambda: jwt.encode(
            claims, "s" * 32, algorithm="HS256", headers={"kid": "ehr-es"}
        ),
        "HS384 keyed with the public key": lambda: _hs_with_public_key(claims, pem),
        "ES256": lambda: jwt.encode(
            claims,
            ec.generate_private_key(ec.SECP256R1()),
            algorithm="ES256",
            headers={"kid": "ehr-es"},
        ),
        "expired": lambda: token(DISCOVERY, iat=now - 3600, lifetime=600),
        "not yet valid (nbf)": lambda: jwt.encode(
            {**claims, "nbf": int(now) + 600}, keys.es, algorithm="ES384", headers={"kid": "ehr-es"}
        ),
        "issued in the future": lambda: token(DISCOVERY, iat=now + 600),
        "lifetime too long": lambda: token(DISCOVERY, lifetime=4 * 3600),
        "unknown iss": lambda: token(DISCOVERY, iss="https://evil.test"),
        "tenant not allowed": lambda: token(DISCOVERY, tenant="tenant-z"),
        "tenant missing": lambda: token(DISCOVERY, tenant=None),
        "no jti": lambda: token(DISCOVERY, drop=("jti",)),
        "no exp": lambda: token(DISCOVERY, drop=("exp",)),
        "jku not allowlisted": lambda: token(
            DISCOVERY,
            iss=JKU_ISS,
            kid="jku-es",
            tenant=None,
            headers={"jku": "https://evil.test/k"},
        ),
        "wrong typ": lambda: token(DISCOVERY, headers={"typ": "at+jwt"}),
        "signed by another key": lambda: token(DISCOVERY, key=keys.rotated),
        "RS384 header on the EC key": lambda: token(DISCOVERY, kid="ehr-es", alg="RS384"),
    }
    if case == "not bearer":
        r = client.get(url(), headers={"Authorization": f"Basic {token(DISCOVERY)}"})
    else:
        made = tokens[case]
        r = get(client, made() if callable(made) else made)
    assert r.status_code == 401
    assert r.content == b""  # no detail
    assert r.headers["www-authenticate"] == "Bearer"


def _hs_with_public_key(claims: dict[str, Any], pem: bytes) -> str:
    """The classic algorithm-confusion attack, built by hand (PyJWT refuses PEM HMAC keys)."""
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS384", "typ": "JWT", "kid": "ehr-es"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha384).digest()
    return f"{head}.{body}.{b64(sig)}"


def test_replayed_jti_is_refused(client: Any, token: Any) -> None:
    once = token(DISCOVERY, jti="same-jti")
    assert get(client, once).status_code == 200
    assert get(client, once).status_code == 401
    # the same jti from a fresh token is still a replay
    assert get(client, token(DISCOVERY, jti="same-jti")).status_code == 401


def test_every_route_requires_the_token(client: Any, token: Any) -> None:
    pv = "/cds-services/dxsafety-patient-view"
    for method, path in (("GET", url()), ("POST", pv), ("POST", pv + "/feedback")):
        r = client.request(method, path, json={})
        assert r.status_code == 401, path
        # a token for another endpoint does not open this one
        r = client.request(method, path, json={}, headers=bearer(token(f"{BASE}/elsewhere")))
        assert r.status_code == 401, path


def test_the_spec_example_token_verifies_but_is_expired(tmp_path: Path) -> None:
    jwks = (EXAMPLES / "spec-2.0.1" / "jwks-public.json").read_text()
    header = jwt.get_unverified_header(SPEC_TOKEN)
    # the signature is good: decoding without the time checks succeeds
    key = jwt.PyJWK.from_json(jwks.split('"keys": [')[1].rsplit("]", 1)[0]).key
    claims = jwt.decode(
        SPEC_TOKEN, key, algorithms=["ES384"], options={"verify_exp": False, "verify_aud": False}
    )
    assert claims["exp"] == 1422568860
    path = tmp_path / "issuers.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "issuers": [
                    {"iss": claims["iss"], "jku": [header["jku"]], "tenants": [claims["tenant"]]}
                ]
            }
        )
    )
    verifier = TokenVerifier(
        load_issuers(path),
        leeway_s=30,
        max_lifetime_s=10**9,
        jwks=JwksCache(fetcher=lambda _url: __import__("json").loads(jwks)),
    )
    with pytest.raises(CdsAuthError, match="ExpiredSignatureError"):
        verifier.verify(f"Bearer {SPEC_TOKEN}", claims["aud"])


def test_the_spec_example_token_is_refused_over_http(client: Any) -> None:
    r = client.post("/cds-services/some-service", json={}, headers=bearer(SPEC_TOKEN))
    assert r.status_code == 401 and r.content == b""


def test_jku_keys_are_fetched_cached_and_rotated(keys: Keys, tmp_path: Path) -> None:
    served = {"keys": [Keys.public_jwk(keys.es, "k1", "ES384")]}
    fetches: list[str] = []
    clock = [1000.0]

    def fetch(u: str) -> dict[str, Any]:
        fetches.append(u)
        return served

    path = tmp_path / "issuers.yaml"
    path.write_text(yaml.safe_dump({"issuers": [{"iss": JKU_ISS, "jku": [JKU_URL]}]}))
    verifier = TokenVerifier(
        load_issuers(path),
        leeway_s=30,
        max_lifetime_s=3600,
        jwks=JwksCache(fetcher=fetch, clock=lambda: clock[0]),
    )

    def tok(kid: str, key: Any) -> str:
        now = int(time.time())
        return jwt.encode(
            {
                "iss": JKU_ISS,
                "aud": "https://a",
                "iat": now,
                "exp": now + 60,
                "jti": f"{kid}-{len(fetches)}-{clock[0]}",
            },
            key,
            algorithm="ES384",
            headers={"kid": kid, "jku": JKU_URL},
        )

    verifier.verify(f"Bearer {tok('k1', keys.es)}", "https://a")
    verifier.verify(f"Bearer {tok('k1', keys.es)}", "https://a")
    assert fetches == [JKU_URL]  # cached
    served["keys"] = [Keys.public_jwk(keys.rotated, "k2", "ES384")]  # the client rotates
    with pytest.raises(CdsAuthError):  # unknown kid right after a fetch: no refetch storm
        verifier.verify(f"Bearer {tok('k2', keys.rotated)}", "https://a")
    assert len(fetches) == 1
    clock[0] += 60
    verifier.verify(f"Bearer {tok('k2', keys.rotated)}", "https://a")  # refetched, accepted
    assert len(fetches) == 2


def test_jku_through_the_app(client: Any, token: Any, app: Any) -> None:
    t = token(DISCOVERY, iss=JKU_ISS, kid="jku-es", tenant=None, headers={"jku": JKU_URL})
    assert get(client, t).status_code == 200
    assert app.state.jwks_fetched == [JKU_URL]
    # an issuer with keys on record: an unlisted jku is ignored, never fetched
    t = token(DISCOVERY, headers={"jku": "https://evil.test/k"})
    assert get(client, t).status_code == 200
    assert app.state.jwks_fetched == [JKU_URL]


def test_tokens_are_never_logged(client: Any, token: Any, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    good, bad = token(DISCOVERY), token("https://wrong")
    get(client, good)
    get(client, bad)
    body = {
        "hook": "patient-view",
        "hookInstance": "x",
        "context": {},
        "fhirServer": "http://127.0.0.1:9",
        "fhirAuthorization": {"access_token": "FHIR-SECRET-TOKEN", "token_type": "Bearer"},
    }
    client.post(
        "/cds-services/dxsafety-patient-view",
        json=body,
        headers=bearer(token(f"{BASE}/cds-services/dxsafety-patient-view")),
    )
    text = caplog.text
    assert "refused" in text  # the failure was logged ...
    for secret in (good, bad, good.split(".")[2], "FHIR-SECRET-TOKEN"):
        assert secret not in text  # ... but never a token


def test_unsigned_dev_mode_is_explicit_loud_and_not_for_production(
    settings: Any, caplog: Any
) -> None:
    caplog.set_level(logging.WARNING)
    dev = settings.model_copy(update={"cds_unsigned_dev_mode": True})
    from fastapi.testclient import TestClient

    with TestClient(create_app(dev)) as c:
        assert c.get(url()).status_code == 200
    assert "UNSIGNED DEVELOPMENT MODE" in caplog.text
    prod = Settings(
        env="production",
        cds_unsigned_dev_mode=True,
        secret_key="x" * 40,
        public_base_url="https://cds.example.org",
        rules_dir=settings.rules_dir,
    )
    with pytest.raises(SettingsError, match="UNSIGNED"):
        create_app(prod)
