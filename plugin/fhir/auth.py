"""Auth for FHIR servers: none, a static bearer token, SMART Backend Services.

SMART Backend Services (hl7.org/fhir/smart-app-launch/backend-services.html): the client
signs a short-lived JWT (``private_key_jwt``, RS384 or ES384) with its private key and
trades it at the token endpoint for an access token (``grant_type=client_credentials``).
The token endpoint is discovered from ``[base]/.well-known/smart-configuration``. The
token is cached and replaced shortly before it expires, and once after a 401.

Keys and tokens come from files or settings (never from code) and are never logged.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from plugin.errors import FatalFhirError, FhirAuthError
from plugin.fhir.http import FhirHttp, parse_json_object, safe_url

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SIGNING_ALGS = ("RS384", "ES384")
DEFAULT_SCOPE = "system/*.read"
ASSERTION_LIFETIME_S = 300  # the spec's maximum
REFRESH_MARGIN_S = 60.0  # replace a token this long before it expires


class NoAuth:
    """Open servers (test servers, or a facade that authenticates at the network level)."""

    def headers(self, http: FhirHttp) -> dict[str, str]:
        return {}

    def invalidate(self) -> bool:
        return False


class BearerAuth:
    """A static bearer token issued out of band (read from a file or settings)."""

    def __init__(self, token: str) -> None:
        token = token.strip()
        if not token:
            raise FhirAuthError("the bearer token is empty")
        self._token = token

    @classmethod
    def from_file(cls, path: Path) -> BearerAuth:
        try:
            return cls(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise FhirAuthError(f"cannot read the token file {path}: {exc.strerror}") from None

    def headers(self, http: FhirHttp) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def invalidate(self) -> bool:
        return False  # a static token cannot be renewed: the 401 is reported

    def __repr__(self) -> str:
        return "BearerAuth(<redacted>)"


def load_private_key(path: Path) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    """Read an unencrypted PEM private key (PKCS#8 or traditional)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FhirAuthError(f"cannot read the private key file {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise FhirAuthError(f"{path} is not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise FhirAuthError(f"{path}: only RSA and EC keys can sign SMART assertions")
    return key


class SmartBackendAuth:
    """SMART Backend Services client (``client_credentials`` + ``private_key_jwt``)."""

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str,
        private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
        key_id: str | None = None,
        alg: str | None = None,
        scope: str = DEFAULT_SCOPE,
        token_url: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        alg = alg or ("ES384" if isinstance(private_key, ec.EllipticCurvePrivateKey) else "RS384")
        if alg not in SIGNING_ALGS:
            raise FhirAuthError(f"unsupported signing algorithm {alg!r}; use RS384 or ES384")
        wants_ec = alg.startswith("ES")
        if wants_ec != isinstance(private_key, ec.EllipticCurvePrivateKey):
            kind = "an EC" if isinstance(private_key, ec.EllipticCurvePrivateKey) else "an RSA"
            raise FhirAuthError(f"--alg {alg} does not match the private key ({kind} key)")
        if wants_ec and private_key.curve.name != "secp384r1":  # type: ignore[union-attr]
            raise FhirAuthError("ES384 needs a P-384 key")
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.key_id = key_id
        self.alg = alg
        self.scope = scope
        self.token_url = token_url
        self.clock = clock
        self._key = private_key
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = threading.Lock()
        self.tokens_issued = 0  # how many tokens this client obtained (for tests and logs)

    @classmethod
    def from_files(
        cls, base_url: str, *, client_id: str, private_key_file: Path, **kwargs: Any
    ) -> SmartBackendAuth:
        return cls(
            base_url, client_id=client_id, private_key=load_private_key(private_key_file), **kwargs
        )

    def __repr__(self) -> str:
        return f"SmartBackendAuth(client_id={self.client_id!r}, alg={self.alg!r})"

    # --- the Auth protocol -----------------------------------------------------------------
    def headers(self, http: FhirHttp) -> dict[str, str]:
        with self._lock:  # one token request at a time, even with parallel downloads
            token = self._token
            if token is None or self.clock() >= self._expires_at - REFRESH_MARGIN_S:
                token = self._fetch_token(http)
            return {"Authorization": f"Bearer {token}"}

    def invalidate(self) -> bool:
        with self._lock:
            self._token = None
        return True

    # --- token endpoint --------------------------------------------------------------------
    def discover(self, http: FhirHttp) -> str:
        """The token endpoint, from ``.well-known/smart-configuration`` (cached)."""
        if self.token_url is None:
            url = f"{self.base_url}/.well-known/smart-configuration"
            try:
                config = http.get_json(
                    url, headers={"Accept": "application/json"}, authenticate=False
                )
            except FatalFhirError as exc:
                raise FhirAuthError(
                    f"cannot discover the SMART token endpoint at {safe_url(url)}: {exc}"
                ) from None
            token_url = config.get("token_endpoint")
            if not isinstance(token_url, str) or not token_url:
                raise FhirAuthError(f"{safe_url(url)} has no token_endpoint")
            methods = config.get("token_endpoint_auth_methods_supported")
            if isinstance(methods, list) and "private_key_jwt" not in methods:
                raise FhirAuthError("the server does not offer private_key_jwt client auth")
            self.token_url = token_url
        return self.token_url

    def _assertion(self, token_url: str) -> str:
        # the wall clock, not self.clock: the token endpoint checks iat/exp against its own
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": token_url,
            "exp": now + ASSERTION_LIFETIME_S,
            "iat": now,
            "jti": uuid.uuid4().hex,
        }
        headers = {"typ": "JWT", **({"kid": self.key_id} if self.key_id else {})}
        return jwt.encode(claims, self._key, algorithm=self.alg, headers=headers)

    def _fetch_token(self, http: FhirHttp) -> str:
        token_url = self.discover(http)
        form = {
            "grant_type": "client_credentials",
            "scope": self.scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self._assertion(token_url),
        }
        try:
            resp = http.request(
                "POST",
                token_url,
                data=form,
                authenticate=False,
                headers={"Accept": "application/json"},
            )
        except FatalFhirError as exc:
            raise FhirAuthError(
                f"the SMART token endpoint refused client {self.client_id!r}: {exc}. Check that "
                "the private key matches the public key (or JWKS) registered for this client"
                + (f" under kid {self.key_id!r}" if self.key_id else "")
                + ", and that the requested scope is allowed",
                status=exc.status,
                url=token_url,
            ) from None
        body = parse_json_object(resp.content, token_url)
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise FhirAuthError(f"the token endpoint {safe_url(token_url)} sent no access_token")
        lifetime = body.get("expires_in")
        lifetime_s = float(lifetime) if isinstance(lifetime, int | float) else 300.0
        self._token = token
        self._expires_at = self.clock() + lifetime_s
        self.tokens_issued += 1
        return token
