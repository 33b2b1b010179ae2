"""Worklist review integrity, episodes, drafts, versioned snapshots, audit chain (issue 15).

* findings: ``case_id`` (episode: the finding whose case this one joined; NULL = a case of
  its own), ``snapshot_version``, ``changed_since_review``, ``gone_at`` (no later scan
  produced it), ``due_at``;
* reviews: ``snapshot_version`` (which scan version the reviewer saw), ``started_at``;
* finding_snapshots: earlier scan versions of reviewed cases, kept when a re-scan changes them;
* review_drafts: autosaved answers, one per case and reviewer;
* review_dissents: answers a reviewer submitted after the case had closed (append-only);
* login_failures: failed logins per account and address (throttling, not audit);
* audit_log: ``prev_hash``/``hash`` (a SHA-256 chain) and ``audit_head`` (its newest link);
  existing rows are chained here, with the append-only trigger lifted for the backfill only.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
GENESIS = "0" * 64


def _chain_hash(prev: str, row: Any) -> str:
    # keep in step with plugin.worklist.auditchain.entry_hash (not imported: migrations must
    # not change when the application code does)
    at = row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)
    detail = row.detail if isinstance(row.detail, dict) else json.loads(row.detail or "{}")
    body = json.dumps(
        [at.astimezone(UTC).isoformat(), row.user_id, row.username, row.action,
         row.finding_id, detail, None],
        sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str,
    )  # fmt: skip
    return hashlib.sha256((prev + body).encode()).hexdigest()


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    with op.batch_alter_table("findings") as batch:
        batch.add_column(sa.Column("case_id", sa.Integer))
        batch.add_column(sa.Column("snapshot_version", sa.Integer, nullable=False,
                                   server_default="1"))  # fmt: skip
        batch.add_column(sa.Column("changed_since_review", sa.Boolean, nullable=False,
                                   server_default=sa.false()))  # fmt: skip
        batch.add_column(sa.Column("gone_at", TS))
        batch.add_column(sa.Column("due_at", TS))
    op.create_index("ix_findings_case", "findings", ["case_id"])
    op.create_index("ix_findings_patient", "findings", ["patient_id"])
    # reviews is append-only (triggers refuse UPDATE); adding columns is DDL, not an UPDATE.
    # SQLite's batch mode would copy the table, so add the columns in place there too.
    op.add_column("reviews", sa.Column("snapshot_version", sa.Integer))
    op.add_column("reviews", sa.Column("started_at", TS))
    op.add_column("reviews", sa.Column("factors", sa.JSON))  # Safer Dx process breakdown
    op.create_table(
        "finding_snapshots",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("finding_id", sa.Integer, sa.ForeignKey("findings.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("snapshot", sa.JSON),
        sa.Column("score", sa.Float),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("finding_id", "version", name="uq_finding_snapshots"),
    )
    op.create_table(
        "review_drafts",
        sa.Column("finding_id", sa.Integer, sa.ForeignKey("findings.id"), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("answers", sa.JSON, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "review_dissents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("finding_id", sa.Integer, sa.ForeignKey("findings.id"), nullable=False),
        sa.Column("reviewer_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("items", sa.JSON, nullable=False),
        sa.Column("judgement", sa.Integer, nullable=False),
        sa.Column("is_mod", sa.Boolean, nullable=False),
        sa.Column("harm", sa.String(16), nullable=False),
        sa.Column("harm_duration", sa.String(16)),
        sa.Column("miscoded", sa.Boolean, nullable=False),
        sa.Column("missed_dx", sa.Text, nullable=False),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("case_version", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("pair_hash", sa.String(64), nullable=False),  # sha256(name | address)
        sa.Column("account_hash", sa.String(64), nullable=False),  # sha256(name)
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("ix_login_failures_pair", "login_failures", ["pair_hash", "at"])
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("last_id", sa.Integer, nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
    )
    op.add_column("audit_log", sa.Column("prev_hash", sa.String(64)))
    op.add_column("audit_log", sa.Column("hash", sa.String(64)))
    op.add_column("audit_log", sa.Column("address", sa.String(64)))
    _append_only(dialect, "review_dissents")
    _chain_existing(dialect)


def _append_only(dialect: str, table: str) -> None:
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION dxsafety_append_only()"
        )


def _chain_existing(dialect: str) -> None:
    """Hash-chain the audit rows written before this migration (lifting the UPDATE guard
    for the backfill only, as the schema owner)."""
    conn = op.get_bind()
    audit = sa.table(
        "audit_log", sa.column("id", sa.Integer), sa.column("at", TS),
        sa.column("user_id", sa.Integer), sa.column("username", sa.String),
        sa.column("action", sa.String), sa.column("finding_id", sa.Integer),
        sa.column("detail", sa.JSON), sa.column("prev_hash", sa.String),
        sa.column("hash", sa.String),
    )  # fmt: skip
    rows = conn.execute(sa.select(audit).order_by(audit.c.id)).all()
    prev, last_id = GENESIS, 0
    if rows:
        if dialect == "sqlite":
            op.execute("DROP TRIGGER audit_log_no_update")
        else:
            op.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        for row in rows:
            digest = _chain_hash(prev, row)
            conn.execute(audit.update().where(audit.c.id == row.id)
                         .values(prev_hash=prev, hash=digest))  # fmt: skip
            prev, last_id = digest, row.id
        if dialect == "sqlite":
            op.execute(
                "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
            )
        else:
            op.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    conn.execute(
        sa.table("audit_head", sa.column("id"), sa.column("last_id"), sa.column("last_hash"))
        .insert().values(id=1, last_id=last_id, last_hash=prev)
    )  # fmt: skip


def downgrade() -> None:
    for table in ("audit_head", "login_failures", "review_dissents", "review_drafts",
                  "finding_snapshots"):  # fmt: skip
        op.drop_table(table)
    for col in ("address", "hash", "prev_hash"):
        op.drop_column("audit_log", col)
    for col in ("factors", "started_at", "snapshot_version"):
        op.drop_column("reviews", col)
    op.drop_index("ix_findings_patient", "findings")
    op.drop_index("ix_findings_case", "findings")
    with op.batch_alter_table("findings") as batch:
        for col in ("due_at", "gone_at", "changed_since_review", "snapshot_version", "case_id"):
            batch.drop_column(col)
