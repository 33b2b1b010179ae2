"""Verify the CDS client's JWT (spec §Security, best-practices §"JWT verification").

Order of checks: a Bearer token no longer than ``max_token_bytes`` (checked before any
parsing: an 8 MB unsigned token must cost nothing); the types of the claims we read
(numbers are numbers, ``jti`` a short string); header ``alg`` ES384|RS384 (``none`` and
every HMAC algorithm are refused before anything else), ``kid`` present, ``typ`` JWT if
given; ``iss`` on the allowlist; the key found by ``kid`` in the issuer's JWKS (from an
allowlisted ``jku``, or configured out of band); then the signature, ``aud`` = the exact
endpoint URL, ``exp``/``nbf``/``iat`` with a small leeway, a maximum lifetime
(``exp - iat``), the optional ``tenant`` allowlist, and last the ``jti`` replay cache
(shared by all workers and hosts: :mod:`plugin.cds.replay`), so that only tokens with a
good signature can fill it. Any failure raises :class:`CdsAuthError`; the route answers
401 with no detail. The token itself is never logged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from plugin.cds.issuers import ACCEPTED_ALGORITHMS, Issuer
from plugin.errors import CdsAuthError

JWKS_TTL_S = 3600.0  # re-read a JWKS at least hourly
JWKS_MIN_REFRESH_S = 30.0  # an unknown kid triggers a re-read, at most this often (rotation)
JWKS_TIMEOUT_S = 3.0
JWKS_MAX_BYTES = 256_000
REPLAY_MAX_ENTRIES = 1_000_000
MAX_TOKEN_BYTES = 16_384  # real CDS JWTs are ~1 KB; the cap is checked before parsing
MAX_JTI_CHARS = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientIdentity:
    """Who called: safe to log (no token)."""

    iss: str
    jti: str
    tenant: str | None = None
    issuer: Issuer | None = None  # None in unsigned development mode


JwksFetcher = Callable[[str], dict[str, Any]]


def fetch_jwks(url: str) -> dict[str, Any]:
    response = requests.get(url, timeout=JWKS_TIMEOUT_S, headers={"Accept": "application/json"})
    response.raise_for_status()
    if len(response.content) > JWKS_MAX_BYTES:
        raise ValueError("JWKS too large")
    body = response.json()
    if not isinstance(body, dict):
        raise ValueError("JWKS is not an object")
    return body


def _keys_by_kid(jwks: Mapping[str, Any]) -> dict[str, Any]:
    """Public EC/RSA keys by kid. Symmetric (``oct``) keys are never used."""
    keys: dict[str, Any] = {}
    for jwk in jwks.get("keys") or []:
        if not isinstance(jwk, dict) or jwk.get("kty") not in ("EC", "RSA"):
            continue
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid or "d" in jwk:  # never accept a private key
            continue
        try:
            keys[kid] = jwt.PyJWK(jwk).key
        except jwt.PyJWTError:
            continue
    return keys


class JwksCache:
    """JWKS by URL, cached for :data:`JWKS_TTL_S`, re-read early when a kid is unknown."""

    def __init__(self, fetcher: JwksFetcher = fetch_jwks, clock: Callable[[], float] = time.time):
        self._fetch = fetcher
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, dict[str, Any]]] = {}

    def key(self, url: str, kid: str) -> Any | None:
        now = self._clock()
        with self._lock:
            fetched, keys = self._entries.get(url, (float("-inf"), {}))
        stale = now - fetched > JWKS_TTL_S
        if kid in keys and not stale:
            return keys[kid]
        if not stale and now - fetched < JWKS_MIN_REFRESH_S:
            return None
        try:
            keys = _keys_by_kid(self._fetch(url))
        except (requests.RequestException, ValueError):
            return keys.get(kid)  # keep serving the last good keys if the refresh fails
        with self._lock:
            self._entries[url] = (now, keys)
        return keys.get(kid)


class ReplayLedger(Protocol):
    def first_use(self, iss: str, jti: str, until: float) -> bool: ...


class ReplayCache:
    """Seen ``(iss, jti)`` pairs until their token expires, in this process only: for a
    single process (library use, tests). The app uses :class:`plugin.cds.replay.DbReplayCache`,
    shared by every worker and host."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], float] = {}

    def first_use(self, iss: str, jti: str, until: float) -> bool:
        now = self._clock()
        with self._lock:
            expiry = self._seen.get((iss, jti))
            if expiry is not None and expiry > now:
                return False
            if len(self._seen) >= REPLAY_MAX_ENTRIES // 2:
                self._seen = {k: v for k, v in self._seen.items() if v > now}
                while len(self._seen) >= REPLAY_MAX_ENTRIES:
                    self._seen.pop(next(iter(self._seen)))
            self._seen[(iss, jti)] = until
            return True


class TokenVerifier:
    def __init__(
        self,
        issuers: Mapping[str, Issuer],
        *,
        leeway_s: int,
        max_lifetime_s: int,
        jwks: JwksCache | None = None,
        clock: Callable[[], float] = time.time,
        replay: ReplayLedger | None = None,
        max_token_bytes: int = MAX_TOKEN_BYTES,
    ):
        self.issuers = dict(issuers)
        self.leeway_s = leeway_s
        self.max_lifetime_s = max_lifetime_s
        self.max_token_bytes = max_token_bytes
        self.jwks = jwks or JwksCache(clock=clock)
        self.replay: ReplayLedger = replay or ReplayCache(clock=clock)
        self._static = {i.iss: _keys_by_kid(i.jwks) for i in issuers.values() if i.jwks}
        self._clock = clock

    def _key(self, issuer: Issuer, kid: str, jku: object) -> Any | None:
        """The key for ``kid``: from the ``jku`` JWKS when that URL is allowlisted; otherwise
        from the keys configured out of band (a ``jku`` we do not list is never fetched;
        Epic, for one, always sends one)."""
        if jku is not None and isinstance(jku, str) and jku in issuer.jku:
            return self.jwks.key(jku, kid)
        if jku is not None and not issuer.jwks and issuer.jwks_url is None:
            raise CdsAuthError("jku not on the allowlist and no keys configured out of band")
        key = self._static.get(issuer.iss, {}).get(kid)
        if key is None and issuer.jwks_url is not None:
            key = self.jwks.key(issuer.jwks_url, kid)
        return key

    def verify(self, authorization: str | None, audience: str) -> ClientIdentity:
        if authorization is not None and len(authorization) > self.max_token_bytes + 16:
            raise CdsAuthError("token over the size cap")  # before any parsing
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise CdsAuthError("no bearer token")
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except (jwt.PyJWTError, ValueError, TypeError, RecursionError) as exc:
            raise CdsAuthError("token does not parse") from exc
        if not isinstance(unverified, dict):
            raise CdsAuthError("claims are not an object")
        _check_claim_types(unverified)
        alg = header.get("alg")
        if alg not in ACCEPTED_ALGORITHMS:
            raise CdsAuthError(f"algorithm {str(alg)[:20]!r} refused")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise CdsAuthError("no kid")
        typ = header.get("typ")
        if typ is not None and str(typ).upper() != "JWT":
            raise CdsAuthError("typ is not JWT")
        issuer = self.issuers.get(str(unverified.get("iss")))
        if issuer is None:
            raise CdsAuthError("issuer not on the allowlist")
        if alg not in issuer.algorithms:
            raise CdsAuthError("algorithm not allowed for this issuer")
        key = self._key(issuer, kid, header.get("jku"))
        if key is None:
            raise CdsAuthError("unknown kid")
        if alg == "ES384" and not isinstance(key, ec.EllipticCurvePublicKey):
            raise CdsAuthError("the key of this kid is not an EC key")
        if alg == "RS384" and not isinstance(key, rsa.RSAPublicKey):
            raise CdsAuthError("the key of this kid is not an RSA key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=audience,
                issuer=issuer.iss,
                leeway=self.leeway_s,
                options={"require": ["iss", "aud", "exp", "iat", "jti"], "strict_aud": False},
            )
        except (jwt.PyJWTError, TypeError, ValueError) as exc:
            raise CdsAuthError(f"token rejected: {type(exc).__name__}") from exc
        return self._claims(issuer, claims)

    def _claims(self, issuer: Issuer, claims: Mapping[str, Any]) -> ClientIdentity:
        _check_claim_types(claims)
        exp, iat, jti = claims["exp"], claims["iat"], claims["jti"]
        if exp - iat > self.max_lifetime_s:
            raise CdsAuthError("token lifetime too long")
        if iat > self._clock() + self.leeway_s:
            raise CdsAuthError("token issued in the future")
        tenant = claims.get("tenant")
        if issuer.tenants is not None and tenant not in issuer.tenants:
            raise CdsAuthError("tenant not on the allowlist")
        if not self.replay.first_use(issuer.iss, jti, float(exp) + self.leeway_s):
            raise CdsAuthError("jti replayed")
        return ClientIdentity(
            iss=issuer.iss,
            jti=jti,
            tenant=tenant if isinstance(tenant, str) else None,
            issuer=issuer,
        )


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _check_claim_types(claims: Mapping[str, Any]) -> None:
    """Types of the claims we read, before any arithmetic on them (a string ``exp`` in a
    validly signed token must be a 401, not a 500)."""
    for name in ("exp", "iat"):
        if name in claims and not _number(claims[name]):
            raise CdsAuthError(f"{name} is not a number")
    if "nbf" in claims and not _number(claims["nbf"]):
        raise CdsAuthError("nbf is not a number")
    jti = claims.get("jti")
    if jti is not None and (not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_CHARS):
        raise CdsAuthError("jti is not a short string")
    if "iss" in claims and not isinstance(claims["iss"], str):
        raise CdsAuthError("iss is not a string")
    aud = claims.get("aud")
    if aud is not None and not (
        isinstance(aud, str) or (isinstance(aud, list) and all(isinstance(a, str) for a in aud))
    ):
        raise CdsAuthError("aud is not a string or a list of strings")
    tenant = claims.get("tenant")
    if tenant is not None and not isinstance(tenant, str):
        raise CdsAuthError("tenant is not a string")
