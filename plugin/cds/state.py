"""What the CDS routes share, built once by :func:`plugin.app.create_app`."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from plugin.cds.advice import Advice, Advisor
from plugin.cds.issuers import load_issuers
from plugin.cds.jwt_auth import TokenVerifier
from plugin.cds.prefetch import FetcherFactory
from plugin.cds.replay import DbReplayCache
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
            max_token_bytes=settings.cds_max_token_bytes,
        )
        advisor = Advisor.build(
            ruleset=ruleset,
            model_dir=settings.model_dir,
            base_url=settings.public_base_url,
            lookback_days=settings.cds_lookback_days,
            risk_threshold=settings.cds_risk_threshold,
            validate=settings.cds_validate,
            link_type=settings.cds_link_type,
        )
        state = cls(
            settings=settings,
            verifier=verifier,
            advisor=advisor,
            clock=clock or utc_now,
            fetcher_factory=fetcher_factory,
        )
        # jti single use across every worker and host: the worklist database decides
        verifier.replay = DbReplayCache(state.worklist_store)
        return state

    def record_findings(self, advice: Advice, service_id: str = "") -> None:
        """Put the findings the cards link to into the worklist (idempotent upsert), so that
        ``/worklist/cases/{key}`` exists even before a population scan has seen the patient;
        record which finding each card was about, and audit suppressed cards. Runs after the
        response; a database problem is logged, never sent to the client."""
        from plugin.cds import issued

        try:
            store = self.worklist_store()
            if advice.findings:
                tl = advice.snapshot_timeline()  # every event near the findings, not the rules'
                store.upsert_findings(advice.findings, {tl.patient.id: tl})
            issued.record_cards(store, service_id, advice.issued)
            issued.audit_suppressed(store, service_id, advice.suppressed)
        except Exception:
            log.exception(
                "could not record the CDS call in the worklist "
                "(%d finding(s), %d card(s), %d suppressed)",
                len(advice.findings),
                len(advice.issued),
                len(advice.suppressed),
            )

    def closed_cases(self, keys: Sequence[str]) -> frozenset[str]:
        """Finding keys whose cards are suppressed (``settings.cds_suppress_closed``)."""
        import sqlalchemy as sa

        from plugin.cds import issued

        try:
            return issued.closed_not_missed(self.worklist_store().engine, keys)
        except sa.exc.SQLAlchemyError:  # show the cards rather than fail the call
            log.exception("could not read closed worklist cases; no card suppressed")
            return frozenset()

    def worklist_store(self) -> Store:
        with self._lock:
            if self.store is None:
                from plugin.worklist.store import Store

                self.store = Store(self.settings.database_url)
            return self.store
