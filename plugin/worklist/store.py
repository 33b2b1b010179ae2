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
import os
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
from plugin.worklist import auditchain
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
    # hide_parameters: a failed statement's message (logged, or shown in a traceback) would
    # otherwise carry its bound values: review notes, user names, patient ids
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True, hide_parameters=True)
    if url.database and url.database != ":memory:":
        path = Path(url.database)
        path.parent.mkdir(parents=True, exist_ok=True)
        # created owner-only (0600) before SQLite opens it; SQLite gives its -wal and -shm
        # files the database file's permissions
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        engine = sa.create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
    else:
        engine = sa.create_engine(
            url, connect_args={"check_same_thread": False}, poolclass=sa.StaticPool,
            hide_parameters=True,
        )  # fmt: skip

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


APPEND_ONLY = ("reviews", "audit_log", "cds_feedback", "review_dissents")


def grant_app_role(owner: sa.Engine, app_role: str) -> None:
    """Give the application's PostgreSQL role row access to the owner's tables, nothing more.

    Not owning the tables, the role cannot ALTER them (nor disable their triggers) or DROP
    them; without the TRUNCATE privilege it cannot empty them either (TRUNCATE does not fire
    row triggers, so the append-only guard would not see it).
    """
    if not app_role or app_role == owner.url.username:
        raise StoreError("the application's database role must differ from the schema owner")
    role = sa.sql.quoted_name(app_role, quote=True)
    quoted = owner.dialect.identifier_preparer.quote(str(role))
    with owner.begin() as conn:
        conn.execute(sa.text(f"GRANT USAGE ON SCHEMA public TO {quoted}"))
        conn.execute(
            sa.text(
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {quoted}"
            )
        )
        conn.execute(sa.text(f"REVOKE TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA "
                             f"public FROM {quoted}"))  # fmt: skip
        conn.execute(sa.text(f"REVOKE UPDATE, DELETE ON {', '.join(APPEND_ONLY)}, "
                             f"alembic_version FROM {quoted}"))  # fmt: skip
        conn.execute(sa.text(f"REVOKE INSERT ON alembic_version FROM {quoted}"))
        conn.execute(sa.text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}"))


def _batches(items: Iterable[Finding], size: int) -> Iterator[list[Finding]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# what a reviewer relies on: a change to any of these after a review is a new version
REVIEWED_FIELDS = ("snapshot", "score", "summary", "evidence", "index_ref", "outcome_ref")


def _scan_changes(old: Any, new: Mapping[str, Any]) -> list[str]:
    """The reviewed fields a re-scan changes (a re-scan without a timeline or a model score
    keeps the stored snapshot and score, so those count only when the scan carries them)."""
    changed = []
    for col in REVIEWED_FIELDS:
        value = new[col]
        if col in ("snapshot", "score") and value is None:
            continue
        if col == "score" and old.score is not None and abs(float(value) - old.score) < 1e-9:
            continue
        if getattr(old, col) != value:
            changed.append(col)
    if utc(old.window_end) != new["window_end"]:
        changed.append("window_end")
    return changed


def _same_episode(case: Any, new: Any) -> bool:
    """Same index visit, or rule windows that overlap."""
    if case.index_ref == new.index_ref:
        return True
    a0, a1 = utc(case.index_start), utc(case.window_end)
    b0, b1 = utc(new.index_start), utc(new.window_end)
    return bool(a0 and a1 and b0 and b1 and a0 <= b1 and b0 <= a1)


def _keep_other_models_score(old: Any, row: dict[str, Any]) -> None:
    """A re-scan never brings a different model's score into a case that one model already
    scored: re-scoring with a new model is its own audited action (``dxsafety worklist
    rescore``; issue 13). ``row`` is changed in place to keep the stored score, its likely
    missed diagnoses and reasons (a null score keeps them) and the version that made them."""
    if old.score is None or row.get("score") is None:
        return
    stored = old.model_version or (old.extra or {}).get("model_version")
    incoming = (row.get("extra") or {}).get("model_version")
    if stored == incoming:
        return  # the same model on newer data: its score is the current one
    row["score"] = None
    row["extra"] = {**(row.get("extra") or {}), "model_version": stored}
    if stored is None:
        row["extra"].pop("model_version")


def finding_row(
    finding: Finding,
    timeline: Timeline | None,
    seen: datetime,
    snap: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The stored row of ``finding``; its snapshot from ``timeline``, or ``snap`` already
    made from it (in the worker process that built the timeline)."""
    if snap is None and timeline is not None:
        snap = snapshot(finding, timeline)
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
        "snapshot": snap,
        "status": "new",
        "assignee_id": None,
        "version": 1,
        "first_seen": seen,
        "last_seen": seen,
    }


class Store:
    """One worklist database. Thread-safe (an engine with a connection pool)."""

    def __init__(
        self, database_url: str, *, batch_size: int = BATCH, owner_url: str | None = None
    ) -> None:
        """``owner_url`` (PostgreSQL): the schema owner's URL. Migrations then run as the
        owner, and the application's role (``database_url``) is granted only row access:
        no TRUNCATE, no ALTER (so no disabling the append-only triggers), no UPDATE or
        DELETE on the append-only tables."""
        self.url = normalise_url(database_url)
        self.batch_size = batch_size
        try:
            self.engine = make_engine(self.url)
            if owner_url and self.dialect == "postgresql":
                owner = make_engine(owner_url)
                try:
                    migrate(owner)
                    grant_app_role(owner, self.engine.url.username or "")
                finally:
                    owner.dispose()
            else:
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
        self,
        findings: Iterable[Finding],
        timelines: Mapping[str, Timeline] | None = None,
        snapshots: Mapping[str, dict[str, Any]] | None = None,
    ) -> int:
        """Insert new findings, refresh known ones; returns how many were new.

        A re-scan refreshes the scan fields and, when it carries them, the score, likely
        missed diagnoses, reasons and timeline snapshot; reviews and workflow state stay.
        When that changes a case somebody has reviewed, the reviewed version is kept in
        ``finding_snapshots``, ``snapshot_version`` goes up, the case is flagged
        ``changed_since_review`` and the change is audited. A new finding on the same patient
        and index visit as an existing case (or with an overlapping rule window) joins that
        case (an episode) instead of opening a case of its own.

        Each finding's snapshot is made from its patient's timeline in ``timelines``, or
        given by finding key in ``snapshots`` (made where the timeline was built).
        """
        added = changed = joined = 0
        for batch in _batches(findings, self.batch_size):
            counts = self._upsert_batch(batch, timelines or {}, snapshots or {})
            added, changed, joined = added + counts[0], changed + counts[1], joined + counts[2]
        with self.engine.begin() as conn:
            self.audit(conn, "scan.import", new=added, changed_reviewed=changed,
                       joined_episode=joined)  # fmt: skip
        return added

    def _upsert_batch(
        self,
        batch: list[Finding],
        timelines: Mapping[str, Timeline],
        snapshots: Mapping[str, dict[str, Any]],
    ) -> tuple[int, int, int]:
        seen = now()
        rows = {f.key: finding_row(f, timelines.get(f.patient_id), seen, snapshots.get(f.key))
                for f in batch}  # fmt: skip
        f = t.findings
        reviewed = (
            sa.select(sa.func.count()).where(t.reviews.c.finding_id == f.c.id).scalar_subquery()
        )
        query = (
            sa.select(f.c.id, f.c.key, f.c.snapshot, f.c.score, f.c.summary, f.c.evidence,
                      f.c.index_ref, f.c.outcome_ref, f.c.window_end, f.c.snapshot_version,
                      f.c.model_version, f.c.extra, reviewed.label("n_reviews"))
            .where(f.c.key.in_(rows))
        )  # fmt: skip
        with self.engine.begin() as conn:
            known = {r.key: r for r in conn.execute(query)}
            for key, old in known.items():
                _keep_other_models_score(old, rows[key])
            changed = {key: why for key, old in known.items() if old.n_reviews
                       and (why := _scan_changes(old, rows[key]))}  # fmt: skip
            for key in changed:  # keep what the reviewers saw before it is overwritten
                old = known[key]
                conn.execute(
                    self._insert(t.finding_snapshots)
                    .values(finding_id=old.id, version=old.snapshot_version,
                            snapshot=old.snapshot, score=old.score, summary=old.summary,
                            evidence=old.evidence, created_at=seen)
                    .on_conflict_do_nothing(index_elements=["finding_id", "version"])
                )  # fmt: skip
            stmt = self._insert(f)
            new = stmt.excluded
            update: dict[str, Any] = {c: new[c] for c in SCAN_COLUMNS}
            update["score"] = sa.func.coalesce(new.score, f.c.score)
            for col in ("missed_dx", "reasons"):
                update[col] = sa.case((new.score.is_(None), f.c[col]), else_=new[col])
            update["snapshot"] = sa.case((new.snapshot.is_(None), f.c.snapshot), else_=new.snapshot)
            update["gone_at"] = None  # produced again
            # executemany: one cached statement, sent in "insertmanyvalues" pages
            conn.execute(
                stmt.on_conflict_do_update(index_elements=["key"], set_=update),
                list(rows.values()),
            )
            for key, why in changed.items():
                old = known[key]
                conn.execute(
                    f.update()
                    .where(f.c.id == old.id)
                    .values(
                        snapshot_version=old.snapshot_version + 1,
                        changed_since_review=True,
                        version=f.c.version + 1,
                    )
                )  # a review in progress must see the new data
                self.audit(conn, "case.rescan_changed", finding_id=old.id,
                           kept_version=old.snapshot_version,
                           new_version=old.snapshot_version + 1, fields=why)  # fmt: skip
            joined = self._join_episodes(conn, [k for k in rows if k not in known])
        return len(rows.keys() - known.keys()), len(changed), joined

    def _join_episodes(self, conn: sa.Connection, new_keys: list[str]) -> int:
        """Attach each new finding to an existing case of the same patient with the same
        index visit or an overlapping rule window; returns how many joined one."""
        if not new_keys:
            return 0
        f = t.findings
        cols = (f.c.id, f.c.key, f.c.patient_id, f.c.index_ref, f.c.index_start, f.c.window_end,
                f.c.case_id, f.c.status, f.c.rule_id)  # fmt: skip
        fresh = conn.execute(
            sa.select(*cols).where(f.c.key.in_(new_keys)).order_by(f.c.index_start, f.c.id)
        ).all()
        patients = {r.patient_id for r in fresh}
        cases: dict[str, list[Any]] = {}
        for r in conn.execute(
            sa.select(*cols).where(f.c.patient_id.in_(patients), f.c.case_id.is_(None),
                                   f.c.key.not_in(new_keys)).order_by(f.c.id)
        ):  # fmt: skip
            cases.setdefault(r.patient_id, []).append(r)
        n_reviews: dict[int, int] = dict(conn.execute(
            sa.select(t.reviews.c.finding_id, sa.func.count())
            .where(t.reviews.c.finding_id.in_([c.id for cs in cases.values() for c in cs]))
            .group_by(t.reviews.c.finding_id)).all())  # fmt: skip
        joined = 0
        for r in fresh:
            home = next((c for c in cases.get(r.patient_id, []) if _same_episode(c, r)), None)
            if home is None:
                cases.setdefault(r.patient_id, []).append(r)
                continue
            joined += 1
            conn.execute(f.update().where(f.c.id == r.id).values(case_id=home.id))
            if n_reviews.get(home.id):
                conn.execute(
                    f.update()
                    .where(f.c.id == home.id)
                    .values(changed_since_review=True, version=f.c.version + 1)
                )
                self.audit(conn, "case.rescan_changed", finding_id=home.id,
                           fields=["rules"], rule_added=r.rule_id)  # fmt: skip
        return joined

    def mark_gone(self, keys: Iterable[str]) -> int:
        """Mark findings that the latest scan no longer produces (kept, never deleted: their
        reviews stay); returns how many were newly marked. Each is audited."""
        f = t.findings
        marked = 0
        stamp = now()
        for chunk in _chunks(list(keys), self.batch_size):
            with self.engine.begin() as conn:
                ids = conn.execute(
                    f.update().where(f.c.key.in_(chunk), f.c.gone_at.is_(None))
                    .values(gone_at=stamp).returning(f.c.id)
                ).scalars().all()  # fmt: skip
                for finding_id in ids:
                    self.audit(conn, "case.gone", finding_id=finding_id)
                marked += len(ids)
        return marked

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
        """Append one audit entry (inside the caller's transaction), hash-chained to the one
        before (:mod:`plugin.worklist.auditchain`). Never patient data. ``address`` (the
        client's IP address) is a column, not detail."""
        address = detail.pop("address", None)
        auditchain.append(conn, {
            "at": now(), "user_id": user_id, "username": username, "action": action,
            "finding_id": finding_id, "detail": detail,
            "address": str(address)[:64] if address else None,
        })  # fmt: skip
