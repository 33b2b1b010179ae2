"""Table definitions (SQLAlchemy Core). The schema itself is created by the Alembic
migrations in ``migrations/versions``; keep the two in step.

``findings`` rows are mutable only in their scan fields (re-scan) and workflow fields
(status, assignee, version). ``reviews`` and ``audit_log`` are append-only: the store never
updates or deletes them, and database triggers (see the first migration) refuse it.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

TS = sa.DateTime(timezone=True)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("username", sa.String(80), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),  # reviewer | admin
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", TS, nullable=False),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),  # sha256 of the cookie value
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=False),
    sa.Column("last_seen", TS),  # migration 0002; idle sessions end (users.IDLE_TIMEOUT)
)

findings = sa.Table(
    "findings",
    metadata,
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
    sa.Column("snapshot", sa.JSON(none_as_null=True)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("assignee_id", sa.Integer, sa.ForeignKey("users.id")),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("first_seen", TS, nullable=False),
    sa.Column("last_seen", TS, nullable=False),
    sa.Index("ix_findings_queue", "status", "rule_id"),
    sa.Index("ix_findings_index_start", "index_start"),
)

reviews = sa.Table(
    "reviews",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("finding_id", sa.Integer, sa.ForeignKey("findings.id"), nullable=False),
    sa.Column("reviewer_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("round", sa.Integer, nullable=False),  # 1 first, 2 second, 3 third (tie-break)
    sa.Column("items", sa.JSON, nullable=False),  # 13 ints 1..7, Revised Safer Dx
    sa.Column("judgement", sa.Integer, nullable=False),  # item 13
    sa.Column("is_mod", sa.Boolean, nullable=False),  # judgement >= 5
    sa.Column("harm", sa.String(16), nullable=False),
    sa.Column("harm_duration", sa.String(16)),
    sa.Column("miscoded", sa.Boolean, nullable=False),
    sa.Column("missed_dx", sa.Text, nullable=False),
    sa.Column("notes", sa.Text, nullable=False),
    sa.Column("case_version", sa.Integer, nullable=False),  # the version the reviewer saw
    sa.Column("created_at", TS, nullable=False),
    sa.Index("ix_reviews_finding", "finding_id"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", TS, nullable=False),
    sa.Column("user_id", sa.Integer),
    sa.Column("username", sa.String(80)),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("finding_id", sa.Integer),
    sa.Column("detail", sa.JSON, nullable=False),  # never patient data
)

cds_feedback = sa.Table(
    "cds_feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("service_id", sa.String(128), nullable=False),
    sa.Column("card_id", sa.String(128), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),  # accepted | overridden
    sa.Column("outcome_timestamp", sa.String(40), nullable=False),
    sa.Column("override_reason", sa.JSON(none_as_null=True)),
    sa.Column("accepted_suggestions", sa.JSON, nullable=False),
    sa.Column("received_at", TS, nullable=False),
    sa.UniqueConstraint("card_id", "outcome", "outcome_timestamp", name="uq_cds_feedback"),
)

# --- issue 15 (migration 0005): episodes, versioned snapshots, drafts, dissent, audit chain ---
# Columns added to the tables above by 0005 are appended here so the definitions above stay
# as they were (several workstreams edit this file).
for _column in (
    sa.Column("case_id", sa.Integer),  # the finding whose case (episode) this one joined
    sa.Column("snapshot_version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("changed_since_review", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("gone_at", TS),  # set when a later scan no longer produces the finding
    sa.Column("due_at", TS),
):
    findings.append_column(_column)
reviews.append_column(sa.Column("snapshot_version", sa.Integer))
reviews.append_column(sa.Column("started_at", TS))  # first draft save: time spent reviewing
reviews.append_column(sa.Column("factors", sa.JSON(none_as_null=True)))  # process breakdown
audit_log.append_column(sa.Column("prev_hash", sa.String(64)))
audit_log.append_column(sa.Column("hash", sa.String(64)))  # sha256(prev_hash + entry)
audit_log.append_column(sa.Column("address", sa.String(64)))  # client address, when known

finding_snapshots = sa.Table(
    "finding_snapshots",  # earlier scan versions of reviewed cases (what the reviewer saw)
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("finding_id", sa.Integer, sa.ForeignKey("findings.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("snapshot", sa.JSON(none_as_null=True)),
    sa.Column("score", sa.Float),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("evidence", sa.JSON, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.UniqueConstraint("finding_id", "version", name="uq_finding_snapshots"),
)

review_drafts = sa.Table(
    "review_drafts",  # autosaved answers, one per case and reviewer
    metadata,
    sa.Column("finding_id", sa.Integer, sa.ForeignKey("findings.id"), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), primary_key=True),
    sa.Column("answers", sa.JSON, nullable=False),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

review_dissents = sa.Table(
    "review_dissents",  # answers submitted after the case closed (append-only)
    metadata,
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

login_failures = sa.Table(
    "login_failures",  # throttling per account and address; hashes, never the typed text
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("pair_hash", sa.String(64), nullable=False),
    sa.Column("account_hash", sa.String(64), nullable=False),
    sa.Column("at", TS, nullable=False),
    sa.Index("ix_login_failures_pair", "pair_hash", "at"),
)

audit_head = sa.Table(
    "audit_head",  # the newest link of the audit hash chain (one row, id 1)
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("last_id", sa.Integer, nullable=False),
    sa.Column("last_hash", sa.String(64), nullable=False),
)

# --- issue 14 (engineer G): CDS Hooks tables (migration 0003) ---------------------------------
# jti replay cache shared by every worker and host: one row per (iss, jti) until the token
# expires; a unique insert decides first use (plugin/cds/replay.py)
cds_replay = sa.Table(
    "cds_replay",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),  # sha256 of iss + NUL + jti
    sa.Column("expires_at", sa.Float, nullable=False),  # epoch seconds
    sa.Index("ix_cds_replay_expires", "expires_at"),
)

# cards sent, one uuid per card per call: feedback names the card, this names its finding
cds_cards = sa.Table(
    "cds_cards",
    metadata,
    sa.Column("card_id", sa.String(36), primary_key=True),
    sa.Column("finding_key", sa.String(64), nullable=False),
    sa.Column("service_id", sa.String(128), nullable=False),
    sa.Column("issued_at", TS, nullable=False),
    sa.Index("ix_cds_cards_finding", "finding_key"),
)

# --- issue 13 (migration 0004): how each case was selected, and the sampling mode per rule ---
_loop_columns: list[sa.Column[object]] = [
    sa.Column("selection", sa.String(16), nullable=False, server_default="ranked"),
    sa.Column("inclusion_prob", sa.Float),  # NULL for ranked triage (no design probability)
    sa.Column("sample_stratum", sa.String(32)),
    sa.Column("sampled_at", TS),
    sa.Column("model_version", sa.String(80)),
]
for _loop_column in _loop_columns:
    findings.append_column(_loop_column)

sampling_modes = sa.Table(
    "sampling_modes",
    metadata,
    sa.Column("rule_id", sa.String(128), primary_key=True),
    sa.Column("mode", sa.String(16), nullable=False),  # random | stratified
    sa.Column("size", sa.Integer),
    sa.Column("fraction", sa.Float),
    sa.Column("bands", sa.JSON, nullable=False),
    sa.Column("updated_by", sa.String(80), nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

spade_runs = sa.Table(
    "spade_runs",  # issue 16: population measures saved for the dashboard (no patient data)
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("span", sa.String(40), nullable=False),
    sa.Column("pairs", sa.JSON, nullable=False),
)
users.append_column(sa.Column("oidc_subject", sa.String(400)))  # 0006 (unique index): iss|sub
