"""Which CDS clients may call us: the issuers file (``settings.cds_issuers_file``).

One entry per allowlisted ``iss``. Keys come from, in this order of preference, a JWKS the
token's ``jku`` header points to (only if that exact URL is listed under ``jku``), or the
JWKS configured out of band: inline ``jwks``, a ``jwks_file`` (relative to this YAML file),
or a ``jwks_url`` we fetch ourselves. Example::

    issuers:
      - iss: https://sandbox.cds-hooks.org
        jku: [https://sandbox.cds-hooks.org/.well-known/jwks.json]
      - iss: https://ehr.example.org/fhir
        jwks_url: https://ehr.example.org/fhir/jwks      # or jwks_file: ehr-jwks.json
        algorithms: [RS384]                              # subset of ES384, RS384
        tenants: [2ddd6c3a-8e9a-44c6-a305-52111ad302a2]  # optional allowlist of `tenant`
        fhir_servers: [https://ehr.example.org/fhir]     # fhirServer prefixes we may call
                                                         # back with the token (none: never)
        fhir_networks: [10.20.0.0/16]                    # non-public networks its servers
                                                         # may resolve to (default: none)

Deny by default: an issuer without ``fhir_servers`` never has us call its ``fhirServer``
(its calls need full prefetch). A listed host name must resolve to public addresses, unless
the entry is an IP literal or ``localhost`` (that address is then listed explicitly) or the
address lies in one of ``fhir_networks``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from plugin.cds.fetch import AddressPolicy
from plugin.errors import SettingsError

ACCEPTED_ALGORITHMS = ("ES384", "RS384")  # spec: RECOMMENDED; none and HMAC SHALL NOT be used


Algorithm = Literal["ES384", "RS384"]


def _all_algorithms() -> list[Algorithm]:
    return ["ES384", "RS384"]


class _IssuerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    iss: str = Field(min_length=1)
    jku: list[str] = Field(default_factory=list)
    jwks: dict[str, Any] | None = None
    jwks_file: str | None = None
    jwks_url: str | None = None
    algorithms: list[Algorithm] = Field(default_factory=_all_algorithms)
    tenants: list[str] | None = None
    fhir_servers: list[str] | None = None
    fhir_networks: list[str] = Field(default_factory=list)


class _IssuersFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    issuers: list[_IssuerSpec]


@dataclass(frozen=True, slots=True, kw_only=True)
class Issuer:
    iss: str
    jku: frozenset[str] = frozenset()
    jwks: dict[str, Any] | None = None  # static keys (inline or from jwks_file)
    jwks_url: str | None = None
    algorithms: frozenset[str] = frozenset(ACCEPTED_ALGORITHMS)
    tenants: frozenset[str] | None = None
    fhir_servers: tuple[str, ...] | None = None
    fhir_networks: tuple[str, ...] = ()

    def may_call(self, fhir_server: str) -> bool:
        """Whether we may send this client's FHIR token to ``fhir_server``: it must match an
        entry of ``fhir_servers`` by scheme and host, by port when the entry has one, and
        lie under the entry's path. No list: never (deny by default)."""
        if not self.fhir_servers:
            return False
        return any(_under(fhir_server, entry) for entry in self.fhir_servers)

    def address_policy(self) -> AddressPolicy:
        """The addresses its FHIR servers may resolve to (see :class:`AddressPolicy`)."""
        return AddressPolicy.of(self.fhir_servers or (), self.fhir_networks)


def _under(url: str, entry: str) -> bool:
    try:
        u, e = urlsplit(url), urlsplit(entry)
        u_port, e_port = u.port, e.port
    except ValueError:  # a port that is not a number
        return False
    if (u.scheme, u.hostname) != (e.scheme, e.hostname):
        return False
    if u.username is not None or u.password is not None:
        return False  # userinfo in a URL is a classic allowlist confusion
    if e_port is not None and u_port != e_port:
        return False
    prefix = e.path.rstrip("/")
    return u.path.rstrip("/") == prefix or u.path.startswith(prefix + "/")


def load_issuers(path: Path) -> dict[str, Issuer]:
    """Read the issuers file; :class:`SettingsError` names the file and every problem."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        spec = _IssuersFile.model_validate(raw)
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsError(f"{path}: cannot read the CDS issuers file: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise SettingsError(f"{path}: invalid CDS issuers file: {problems}") from exc
    issuers: dict[str, Issuer] = {}
    for item in spec.issuers:
        if item.iss in issuers:
            raise SettingsError(f"{path}: issuer {item.iss} is listed twice")
        jwks = item.jwks
        if item.jwks_file is not None:
            file = (path.parent / item.jwks_file).resolve()
            try:
                jwks = json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise SettingsError(f"{path}: issuer {item.iss}: jwks_file {file}: {exc}") from exc
        if jwks is None and item.jwks_url is None and not item.jku:
            raise SettingsError(
                f"{path}: issuer {item.iss} has no keys (jwks, jwks_file, jwks_url or jku)"
            )
        try:
            AddressPolicy.of(item.fhir_servers or (), item.fhir_networks)
        except ValueError as exc:
            raise SettingsError(f"{path}: issuer {item.iss}: fhir_networks: {exc}") from exc
        issuers[item.iss] = Issuer(
            iss=item.iss,
            jku=frozenset(item.jku),
            jwks=jwks,
            jwks_url=item.jwks_url,
            algorithms=frozenset(item.algorithms),
            tenants=frozenset(item.tenants) if item.tenants is not None else None,
            fhir_servers=tuple(item.fhir_servers) if item.fhir_servers is not None else None,
            fhir_networks=tuple(item.fhir_networks),
        )
    return issuers
