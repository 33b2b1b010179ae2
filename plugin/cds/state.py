"""What the CDS routes share, built once by :func:`plugin.app.create_app`."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from plugin.cds.advice import Advice, Advisor
from plugin.cds.issuers import load_issuers
from plugin.cds.jwt_auth import TokenVerifier
from plugin.cds.prefetch import FetcherFactory
from plugin.config import Settings
from plugin.rules import RuleSet

if TYPE_CHECKING:
    from plugin.worklist.store import Store

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(kw_only=True)
class CdsState:
    settings: Settings
    verifier: TokenVerifier
    advisor: Advisor
    clock: Callable[[], datetime] = utc_now
    fetcher_factory: FetcherFactory | None = None  # tests and benches may inject a transport
    store: Store | None = None  # the worklist's, when it is mounted
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        ruleset: RuleSet,
        clock: Callable[[], datetime] | None = None,
        fetcher_factory: FetcherFactory | None = None,
    ) -> CdsState:
        issuers = {}
        if settings.cds_issuers_file is not None:
            issuers = load_issuers(settings.cds_issuers_file)
        elif not settings.cds_unsigned_dev_mode:
            log.warning(
                "no CDS issuers file (DXSAFETY_CDS_ISSUERS_FILE): every CDS Hooks call "
                "will be refused with 401"
            )
        verifier = TokenVerifier(
            issuers,
            leeway_s=settings.cds_jwt_leeway_s,
            max_lifetime_s=settings.cds_jwt_max_lifetime_s,
        )
        advisor = Advisor.build(
            ruleset=ruleset,
            model_dir=settings.model_dir,
            base_url=settings.public_base_url,
            lookback_days=settings.cds_lookback_days,
            risk_threshold=settings.cds_risk_threshold,
            validate=settings.cds_validate,
        )
        return cls(
            settings=settings,
            verifier=verifier,
            advisor=advisor,
            clock=clock or utc_now,
            fetcher_factory=fetcher_factory,
        )

    def record_findings(self, advice: Advice) -> None:
        """Put the findings the cards link to into the worklist (idempotent upsert), so that
        ``/worklist/cases/{key}`` exists even before a population scan has seen the patient.
        Runs after the response; a database problem is logged, never sent to the client."""
        tl = advice.timeline
        try:
            self.worklist_store().upsert_findings(advice.findings, {tl.patient.id: tl})
        except Exception:
            log.exception(
                "could not record %d CDS finding(s) in the worklist", len(advice.findings)
            )

    def worklist_store(self) -> Store:
        with self._lock:
            if self.store is None:
                from plugin.worklist.store import Store

                self.store = Store(self.settings.database_url)
            return self.store
