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
    cds_fetch_budget_s: float = 5.0
    cds_lookback_days: int = 365  # patient-view: open follow-ups whose window closed this recently
    cds_risk_threshold: float = 0.05  # encounter-discharge: smallest model risk shown as a card
    cds_validate: Literal["fast", "full"] = "fast"  # hook-call FHIR parsing: see plugin/cds/advice

    # --- FHIR client (plugin/fhir/client.py) ---
    fhir_timeout_s: float = 30.0
    fhir_max_connections: int = 4
    fhir_client_id: str | None = None
    fhir_private_key_file: Path | None = None
    fhir_key_id: str | None = None
    fhir_bearer_token: str | None = None

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
