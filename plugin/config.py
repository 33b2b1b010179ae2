"""Settings, from environment variables (``DXSAFETY_*``) or a ``.env`` file.

Built explicitly (``Settings()`` / ``Settings(**overrides)``) by whoever needs them;
nothing is created at import time. Secrets have development defaults only: in
production (``DXSAFETY_ENV=production``) :meth:`Settings.check_production` refuses them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from plugin.errors import SettingsError

DEV_SECRET = "dev-only-change-me"  # noqa: S105 - a marker the production check refuses


def _catalogue() -> Path:
    # imported when a Settings is built, not with this module: the rules package is heavy
    from plugin.rules.catalogue import default_rules_dir

    return default_rules_dir()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DXSAFETY_", env_file=".env", extra="ignore")

    env: Literal["development", "production", "test"] = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    public_base_url: str = "http://127.0.0.1:8000"  # absolute links and the CDS JWT `aud`
    secret_key: str = DEV_SECRET  # session cookies / CSRF
    database_url: str = "sqlite:///var/dxsafety.db"
    # the catalogue: the one shipped with dxsafety unless a site replaces it whole
    rules_dir: Path = Field(default_factory=_catalogue)
    # a site's own rules directories, loaded after rules_dir: they add rules and override
    # catalogue rules with the same id (DXSAFETY_SITE_RULES=dir1:dir2, os.pathsep-separated)
    site_rules: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    model_dir: Path | None = None

    # --- CDS Hooks (plugin/cds) ---
    cds_allowed_origins: list[str] = Field(default_factory=list)
    cds_unsigned_dev_mode: bool = False  # accept calls without a JWT: development only
    cds_issuers_file: Path | None = None  # YAML: allowlisted iss -> jwks / jku / tenants
    cds_max_request_bytes: int = 5_000_000
    cds_jwt_max_lifetime_s: int = 3600
    cds_jwt_leeway_s: int = 30
    cds_fetch_budget_s: float = 2.0  # one deadline per hook call: every FHIR request and page
    cds_lookback_days: int = 365  # patient-view: open follow-ups whose window closed this recently
    cds_risk_threshold: float = 0.05  # encounter-discharge: smallest model risk shown as a card
    cds_validate: Literal["fast", "full"] = "fast"  # hook-call FHIR parsing: see plugin/cds/advice
    # issue 14: limits, card brevity, suppression (see plugin/cds/README.md)
    cds_fetch_max_bytes: int = 20_000_000  # all FHIR responses of one hook call together
    cds_max_token_bytes: int = 16_384  # the client JWT, checked before parsing
    cds_timeout_card: bool = True  # deadline passed: a card saying so (False: 412)
    cds_link_type: Literal["absolute", "smart"] = "absolute"  # the worklist link on cards
    cds_suppress_closed: bool = True  # no card for a case the worklist closed as not a MOD

    # --- FHIR client (plugin/fhir/client.py) ---
    fhir_timeout_s: float = 30.0
    fhir_max_connections: int = 4
    fhir_client_id: str | None = None
    fhir_private_key_file: Path | None = None
    fhir_key_id: str | None = None
    fhir_bearer_token: str | None = None

    # --- review worklist (plugin/worklist; issue 15) ---
    # PostgreSQL: the schema owner, who runs the migrations; database_url is then the
    # application's role, which gets row access only (no TRUNCATE, ALTER or trigger changes)
    database_owner_url: str | None = None
    # adjudication: the verdict is the majority of reviews; a tie goes to another reviewer
    # ("majority") or to the named adjudicator ("adjudicator")
    worklist_adjudication: Literal["majority", "adjudicator"] = "majority"
    worklist_adjudicator: str | None = None  # a worklist user name
    # a link from a case to the encounter in the EHR: {encounter} and {patient} are replaced
    # by the (URL-encoded) ids, e.g. https://ehr.example/chart?enc={encounter}
    worklist_ehr_link: str | None = None
    worklist_timezone: str = "UTC"  # IANA zone the chart is shown in (e.g. Europe/Berlin)
    worklist_password_blocklist: Path | None = None  # extra breached/common passwords, 1/line
    # OpenID Connect sign-on (empty issuer: local passwords only)
    oidc_issuer: str | None = None  # e.g. https://login.hospital.example/realms/staff
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    oidc_roles_claim: str = "groups"  # a list (or string) claim carrying the user's groups
    oidc_admin_groups: list[str] = Field(default_factory=lambda: ["dxsafety-admin"])
    oidc_reviewer_groups: list[str] = Field(default_factory=lambda: ["dxsafety-reviewer"])

    @field_validator("site_rules", mode="before")
    @classmethod
    def _split_paths(cls, value: object) -> object:
        if isinstance(value, str | Path):
            return [p for p in str(value).split(os.pathsep) if p]
        return value

    def rule_roots(self) -> list[Path]:
        """The rules roots to load, in order: ``rules_dir`` then ``site_rules``."""
        from plugin.rules.catalogue import rule_roots

        return rule_roots(self.site_rules, catalogue=self.rules_dir)

    def check_production(self) -> None:
        """Raise :class:`SettingsError` if production runs with development secrets."""
        if self.env != "production":
            return
        problems = []
        if self.secret_key == DEV_SECRET or len(self.secret_key) < 32:
            problems.append("DXSAFETY_SECRET_KEY is the development default or shorter than 32")
        if self.cds_unsigned_dev_mode:
            problems.append("DXSAFETY_CDS_UNSIGNED_DEV_MODE is on")
        if not self.public_base_url.startswith("https://"):
            problems.append("DXSAFETY_PUBLIC_BASE_URL must be https:// in production")
        if problems:
            raise SettingsError("refusing to start in production: " + "; ".join(problems))
