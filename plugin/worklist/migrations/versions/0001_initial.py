"""Initial worklist schema: users, sessions, findings, reviews, audit log, CDS feedback.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
APPEND_ONLY = ("reviews", "audit_log", "cds_feedback")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(80), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_table(
        "findings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(64), nullable=False, unique=True),
        sa.Column("patient_id", sa.String(128), nullable=False),
        sa.Column("rule_id", sa.String(128), nullable=False),
        sa.Column("rule_title", sa.Text, nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("level_rank", sa.Integer, nullable=False),
        sa.Column("index_ref", sa.String(200), nullable=False),
        sa.Column("index_start", TS, nullable=False),
        sa.Column("index_end", TS),
        sa.Column("window_end", TS, nullable=False),
        sa.Column("outcome_ref", sa.String(200)),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("missed_dx", sa.JSON, nullable=False),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("extra", sa.JSON, nullable=False),
        sa.Column("snapshot", sa.JSON),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("assignee_id", sa.Integer, sa.ForeignKey("users.id")),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("first_seen", TS, nullable=False),
        sa.Column("last_seen", TS, nullable=False),
    )
    op.create_index("ix_findings_queue", "findings", ["status", "rule_id"])
    op.create_index("ix_findings_index_start", "findings", ["index_start"])
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("finding_id", sa.Integer, sa.ForeignKey("findings.id"), nullable=False),
        sa.Column("reviewer_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("round", sa.Integer, nullable=False),
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
    op.create_index("ix_reviews_finding", "reviews", ["finding_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("user_id", sa.Integer),
        sa.Column("username", sa.String(80)),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("finding_id", sa.Integer),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    op.create_table(
        "cds_feedback",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("service_id", sa.String(128), nullable=False),
        sa.Column("card_id", sa.String(128), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("outcome_timestamp", sa.String(40), nullable=False),
        sa.Column("override_reason", sa.JSON),
        sa.Column("accepted_suggestions", sa.JSON, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.UniqueConstraint("card_id", "outcome", "outcome_timestamp", name="uq_cds_feedback"),
    )
    _append_only_triggers()


def _append_only_triggers() -> None:
    """Refuse UPDATE and DELETE on the append-only tables, in the database itself."""
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in APPEND_ONLY:
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION dxsafety_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
        )
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION dxsafety_append_only()"
            )


def downgrade() -> None:
    for table in ("cds_feedback", "audit_log", "reviews", "findings", "sessions", "users"):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS dxsafety_append_only()")
