"""The worklist database: open (and migrate) it, write scan findings and CDS Hooks feedback.

``Store(database_url)`` takes a SQLAlchemy URL: SQLite by default (``sqlite:///var/dxsafety.db``,
parent directory created) or PostgreSQL (``postgresql+psycopg://user@host/db``; a bare
``postgresql://`` is given the psycopg driver). Opening applies the Alembic migrations.

Writes are idempotent: findings by ``Finding.key`` (patient + rule + index event), feedback by
card id + outcome + outcome timestamp. Findings are written in batches, each its own
transaction, so a killed import keeps the batches it finished and a re-run completes it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects import postgresql, sqlite

from plugin.errors import StoreError
from plugin.timeline.model import Finding, Timeline
from plugin.worklist import tables as t
from plugin.worklist.snapshot import snapshot

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
LEVEL_RANK = {"informational": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
BATCH = 500
# columns a re-scan refreshes; workflow columns (status, assignee, version) are left alone
SCAN_COLUMNS = (
    "patient_id", "rule_id", "rule_title", "level", "level_rank", "index_ref", "index_start",
    "index_end", "window_end", "outcome_ref", "evidence", "summary", "extra", "last_seen",
)  # fmt: skip


def utc(moment: datetime | None) -> datetime | None:
    """Aware UTC datetime (SQLite hands back naive values, which are UTC by construction)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def now() -> datetime:
    return datetime.now(UTC)


def normalise_url(database_url: str) -> str:
    if database_url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + database_url.split("://", 1)[1]
    return database_url


def make_engine(database_url: str) -> sa.Engine:
    url = sa.engine.make_url(normalise_url(database_url))
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30})
    else:
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False}, poolclass=sa.StaticPool
        )

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def _batches(items: Iterable[Finding], size: int) -> Iterator[list[Finding]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def finding_row(finding: Finding, timeline: Timeline | None, seen: datetime) -> dict[str, Any]:
    return {
        "key": finding.key,
        "patient_id": finding.patient_id,
        "rule_id": finding.rule_id,
        "rule_title": finding.rule_title,
        "level": finding.level,
        "level_rank": LEVEL_RANK.get(finding.level.lower(), 0),
        "index_ref": finding.index_ref,
        "index_start": utc(finding.index_start),
        "index_end": utc(finding.index_end),
        "window_end": utc(finding.window_end),
        "outcome_ref": finding.outcome_ref,
        "evidence": list(finding.evidence),
        "summary": finding.summary,
        "score": finding.score,
        "missed_dx": [[dx, float(p)] for dx, p in finding.missed_dx],
        "reasons": list(finding.reasons),
        "extra": dict(finding.extra),
        "snapshot": snapshot(finding, timeline) if timeline is not None else None,
        "status": "new",
        "assignee_id": None,
        "version": 1,
        "first_seen": seen,
        "last_seen": seen,
    }


class Store:
    """One worklist database. Thread-safe (an engine with a connection pool)."""

    def __init__(self, database_url: str, *, batch_size: int = BATCH) -> None:
        self.url = normalise_url(database_url)
        self.batch_size = batch_size
        try:
            self.engine = make_engine(self.url)
            migrate(self.engine)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(
                f"cannot open the worklist database: {exc.__class__.__name__}: "
                f"{exc.orig if hasattr(exc, 'orig') else exc}"
            ) from exc

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    def _insert(self, table: sa.Table) -> Any:
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    # --- findings -----------------------------------------------------------------------------
    def upsert_findings(
        self, findings: Iterable[Finding], timelines: Mapping[str, Timeline] | None = None
    ) -> int:
        """Insert new findings, refresh known ones; returns how many were new.

        A re-scan refreshes the scan fields and, when it carries them, the score, likely
        missed diagnoses, reasons and timeline snapshot; reviews and workflow state stay.
        """
        added = 0
        for batch in _batches(findings, self.batch_size):
            added += self._upsert_batch(batch, timelines or {})
        return added

    def _upsert_batch(self, batch: list[Finding], timelines: Mapping[str, Timeline]) -> int:
        seen = now()
        rows = {f.key: finding_row(f, timelines.get(f.patient_id), seen) for f in batch}
        f = t.findings
        with self.engine.begin() as conn:
            known = set(conn.execute(sa.select(f.c.key).where(f.c.key.in_(rows))).scalars())
            stmt = self._insert(f)
            new = stmt.excluded
            update: dict[str, Any] = {c: new[c] for c in SCAN_COLUMNS}
            update["score"] = sa.func.coalesce(new.score, f.c.score)
            for col in ("missed_dx", "reasons"):
                update[col] = sa.case((new.score.is_(None), f.c[col]), else_=new[col])
            update["snapshot"] = sa.case((new.snapshot.is_(None), f.c.snapshot), else_=new.snapshot)
            # executemany: one cached statement, sent in "insertmanyvalues" pages
            conn.execute(
                stmt.on_conflict_do_update(index_elements=["key"], set_=update),
                list(rows.values()),
            )
        return len(rows.keys() - known)

    def count_findings(self) -> int:
        with self.engine.connect() as conn:
            query = sa.select(sa.func.count()).select_from(t.findings)
            return int(conn.execute(query).scalar_one())

    # --- CDS Hooks feedback ---------------------------------------------------------------------
    def record_feedback(
        self,
        *,
        service_id: str,
        card_id: str,
        outcome: str,
        outcome_timestamp: str | datetime,
        override_reason: dict[str, Any] | None,
        accepted_suggestions: list[Any],
    ) -> bool:
        """Store one CDS Hooks feedback entry; False when it was already stored."""
        stamp = (
            outcome_timestamp.isoformat()
            if isinstance(outcome_timestamp, datetime)
            else str(outcome_timestamp)
        )
        stmt = self._insert(t.cds_feedback).values(
            service_id=service_id,
            card_id=card_id,
            outcome=outcome,
            outcome_timestamp=stamp,
            override_reason=override_reason,
            accepted_suggestions=list(accepted_suggestions),
            received_at=now(),
        )
        stmt = stmt.on_conflict_do_nothing(
            index_elements=["card_id", "outcome", "outcome_timestamp"]
        ).returning(t.cds_feedback.c.id)
        with self.engine.begin() as conn:
            return conn.execute(stmt).first() is not None

    # --- audit ----------------------------------------------------------------------------------
    @staticmethod
    def audit(
        conn: sa.Connection,
        action: str,
        *,
        user_id: int | None = None,
        username: str | None = None,
        finding_id: int | None = None,
        **detail: Any,
    ) -> None:
        """Append one audit entry (inside the caller's transaction). Never patient data."""
        conn.execute(
            t.audit_log.insert().values(
                at=now(),
                user_id=user_id,
                username=username,
                action=action,
                finding_id=finding_id,
                detail=detail,
            )
        )
