"""The CDS service's shared jti replay cache and the cards it sent (issue 14).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cds_replay",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("ix_cds_replay_expires", "cds_replay", ["expires_at"])
    op.create_table(
        "cds_cards",
        sa.Column("card_id", sa.String(36), primary_key=True),
        sa.Column("finding_key", sa.String(64), nullable=False),
        sa.Column("service_id", sa.String(128), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_cds_cards_finding", "cds_cards", ["finding_key"])


def downgrade() -> None:
    op.drop_index("ix_cds_cards_finding", table_name="cds_cards")
    op.drop_table("cds_cards")
    op.drop_index("ix_cds_replay_expires", table_name="cds_replay")
    op.drop_table("cds_replay")
