"""Worklist sign-on: link accounts to an OpenID Connect subject (issue 15).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # "<issuer>|<sub>": who the identity provider says this is (sub is only unique per
    # issuer); NULL for local password accounts. A unique index, not a constraint, so SQLite
    # need not rebuild the users table (which every other table references).
    op.add_column("users", sa.Column("oidc_subject", sa.String(400)))
    op.create_index("uq_users_oidc_subject", "users", ["oidc_subject"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_users_oidc_subject", "users")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("oidc_subject")
