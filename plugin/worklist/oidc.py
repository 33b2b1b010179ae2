"""OpenID Connect sign-on for the worklist (authorization code flow with PKCE, confidential
client), so a hospital's staff sign in with their identity provider.

* ``start`` sends the browser to the provider with a fresh ``state``, ``nonce`` and PKCE
  verifier, kept in a short-lived cookie signed with the server's secret key (HttpOnly,
  SameSite=Lax so the provider's redirect back brings it, scoped to the callback path);
* ``finish`` checks the state, redeems the code at the token endpoint (client secret +
  PKCE verifier), verifies the ID token's signature against the provider's JWKS and its
  ``iss``, ``aud``, ``exp`` and ``nonce``, then reads the user's claims from the UserInfo
  endpoint (whose ``sub`` must match);
* the worklist role comes from a groups claim (``oidc_roles_claim``): a member of an admin
  group is an admin, of a reviewer group a reviewer, anyone else is refused. The role is
  refreshed at every sign-on, so removing someone from the group takes effect next time.

Built on Authlib (PKCE, the authorization URL) and joserfc (JWT verification, Authlib's
successor for JOSE). The provider's metadata and keys are fetched on first use and cached.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from plugin.config import Settings
from plugin.errors import SignOnError

COOKIE = "dxsafety_oidc"
COOKIE_PATH = "/worklist/login/oidc"
STATE_TTL = 600  # seconds to complete the sign-in at the provider
CALLBACK = "/worklist/login/oidc/callback"
ALGORITHMS = ["RS256", "PS256", "ES256", "EdDSA"]
SCOPE = "openid profile email groups"


@dataclass(frozen=True, slots=True)
class Identity:
    issuer: str
    subject: str
    username: str
    groups: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.issuer}|{self.subject}"


@dataclass
class SignOn:
    """One configured identity provider (``Settings.oidc_*``)."""

    settings: Settings
    _meta: dict[str, Any] | None = None
    _keys: KeySet | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def enabled(self) -> bool:
        s = self.settings
        return bool(s.oidc_issuer and s.oidc_client_id and s.oidc_client_secret)

    @property
    def redirect_uri(self) -> str:
        return self.settings.public_base_url.rstrip("/") + CALLBACK

    def _get(self, url: str, **kwargs: Any) -> Any:
        try:
            response = httpx.get(url, timeout=10, **kwargs)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SignOnError(f"the identity provider did not answer properly ({url}): "
                              f"{exc.__class__.__name__}") from exc  # fmt: skip

    def metadata(self) -> dict[str, Any]:
        with self._lock:
            if self._meta is None:
                issuer = str(self.settings.oidc_issuer).rstrip("/")
                meta = self._get(issuer + "/.well-known/openid-configuration")
                if not isinstance(meta, dict) or meta.get("issuer") != issuer:
                    raise SignOnError("the provider's metadata names another issuer")
                self._meta = meta
            return self._meta

    def keys(self, *, refresh: bool = False) -> KeySet:
        meta = self.metadata()
        with self._lock:
            if self._keys is None or refresh:
                self._keys = KeySet.import_key_set(self._get(meta["jwks_uri"]))
            return self._keys

    # --- the two legs -----------------------------------------------------------------------
    def start(self, next_url: str) -> tuple[str, str]:
        """The provider's authorization URL and the signed cookie to set."""
        meta = self.metadata()
        state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
        url = prepare_grant_uri(
            meta["authorization_endpoint"], self.settings.oidc_client_id, "code",
            redirect_uri=self.redirect_uri, scope=SCOPE, state=state, nonce=nonce,
            code_challenge=create_s256_code_challenge(verifier),
            code_challenge_method="S256",
        )  # fmt: skip
        payload = {"s": state, "n": nonce, "v": verifier, "next": next_url,
                   "exp": int(time.time()) + STATE_TTL}  # fmt: skip
        return str(url), self._sign(payload)

    def finish(self, params: Mapping[str, str], cookie: str | None) -> tuple[Identity, str]:
        """Check the provider's answer; returns who signed in and where they were going."""
        if params.get("error"):
            raise SignOnError(f"the identity provider refused the sign-in: "
                              f"{str(params.get('error'))[:80]}")  # fmt: skip
        saved = self._verify(cookie)
        if not hmac.compare_digest(str(params.get("state") or ""), saved["s"]):
            raise SignOnError("the sign-in's state does not match; start again")
        code = params.get("code")
        if not code:
            raise SignOnError("the identity provider sent no authorization code")
        meta = self.metadata()
        if params.get("iss") and params["iss"] != meta["issuer"]:
            raise SignOnError("the answer came from another issuer")  # RFC 9207 mix-up check
        try:
            response = httpx.post(
                meta["token_endpoint"], timeout=10,
                auth=(str(self.settings.oidc_client_id), str(self.settings.oidc_client_secret)),
                data={"grant_type": "authorization_code", "code": code,
                      "redirect_uri": self.redirect_uri, "code_verifier": saved["v"]},
            )  # fmt: skip
            tokens = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise SignOnError(f"the token request failed: {exc.__class__.__name__}") from exc
        if response.status_code != 200 or "id_token" not in tokens:
            raise SignOnError(f"the token request was refused ({response.status_code}: "
                              f"{str(tokens.get('error', ''))[:80]})")  # fmt: skip
        claims = self._id_token(str(tokens["id_token"]), saved["n"])
        info = self._get(
            meta["userinfo_endpoint"], headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        if not isinstance(info, dict) or info.get("sub") != claims["sub"]:
            raise SignOnError("the UserInfo answer is about someone else")
        merged = {**claims, **info}
        raw = merged.get(self.settings.oidc_roles_claim) or []
        groups = tuple(str(g) for g in ([raw] if isinstance(raw, str) else raw))
        name = str(merged.get("preferred_username") or merged.get("email") or claims["sub"])
        identity = Identity(issuer=meta["issuer"], subject=str(claims["sub"]),
                            username=name[:80], groups=groups)  # fmt: skip
        return identity, str(saved["next"])

    def _id_token(self, token: str, nonce: str) -> dict[str, Any]:
        meta = self.metadata()
        try:
            try:
                decoded = jwt.decode(token, self.keys(), algorithms=ALGORITHMS)
            except JoseError:  # the provider may have rotated its keys
                decoded = jwt.decode(token, self.keys(refresh=True), algorithms=ALGORITHMS)
            jwt.JWTClaimsRegistry(
                iss={"essential": True, "value": meta["issuer"]},
                aud={"essential": True, "value": str(self.settings.oidc_client_id)},
                exp={"essential": True},
                sub={"essential": True},
                nonce={"essential": True, "value": nonce},
                leeway=60,
            ).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise SignOnError(f"the ID token is not valid: {exc.__class__.__name__}") from exc
        return dict(decoded.claims)

    # --- the state cookie -------------------------------------------------------------------
    def _mac(self, body: bytes) -> str:
        key = hashlib.sha256(b"oidc-state\x00" + self.settings.secret_key.encode()).digest()
        return hmac.new(key, body, hashlib.sha256).hexdigest()

    def _sign(self, payload: dict[str, Any]) -> str:
        body = base64.urlsafe_b64encode(json.dumps(payload).encode())
        return body.decode() + "." + self._mac(body)

    def _verify(self, cookie: str | None) -> dict[str, Any]:
        body, _, mac = (cookie or "").partition(".")
        if not body or not hmac.compare_digest(mac, self._mac(body.encode())):
            raise SignOnError("the sign-in was not started here (or its cookie was changed)")
        try:
            payload: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body.encode()))
        except ValueError as exc:
            raise SignOnError("the sign-in cookie is unreadable") from exc
        if payload.get("exp", 0) < time.time():
            raise SignOnError("the sign-in took too long; start again")
        return payload


def role_for(groups: tuple[str, ...], settings: Settings) -> str | None:
    """The worklist role the provider's groups give, or None (no access)."""
    if set(groups) & set(settings.oidc_admin_groups):
        return "admin"
    if set(groups) & set(settings.oidc_reviewer_groups):
        return "reviewer"
    return None
