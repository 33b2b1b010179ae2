"""Review-loop fields: case selection, inclusion probability, model version per snapshot (issue 13).

* findings: ``selection`` (ranked | random | stratified | cds: how the case came to be
  reviewed; ranked triage unless a sample drew it), ``inclusion_prob`` (the design's
  probability of drawing it; NULL for ranked triage), ``sample_stratum`` (score band of a
  stratified draw), ``sampled_at``, ``model_version`` (the model that scored the case);
* sampling_modes: one row per rule, the sampling mode an admin set (random | stratified by
  score band, with a size or a fraction);
* spade_runs: SPADE population measures saved by ``dxsafety measure spade --store`` (issue 16),
  shown on the dashboard.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("findings") as batch:
        batch.add_column(sa.Column("selection", sa.String(16), nullable=False,
                                   server_default="ranked"))  # fmt: skip
        batch.add_column(sa.Column("inclusion_prob", sa.Float))
        batch.add_column(sa.Column("sample_stratum", sa.String(32)))
        batch.add_column(sa.Column("sampled_at", TS))
        batch.add_column(sa.Column("model_version", sa.String(80)))
    op.create_table(
        "sampling_modes",
        sa.Column("rule_id", sa.String(128), primary_key=True),
        sa.Column("mode", sa.String(16), nullable=False),  # random | stratified
        sa.Column("size", sa.Integer),
        sa.Column("fraction", sa.Float),
        sa.Column("bands", sa.JSON, nullable=False),  # score-band cut points (stratified)
        sa.Column("updated_by", sa.String(80), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "spade_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("span", sa.String(40), nullable=False),
        sa.Column("pairs", sa.JSON, nullable=False),  # one summary per pair, no patient data
    )


def downgrade() -> None:
    op.drop_table("spade_runs")
    op.drop_table("sampling_modes")
    with op.batch_alter_table("findings") as batch:
        for name in ("model_version", "sampled_at", "sample_stratum", "inclusion_prob",
                     "selection"):  # fmt: skip
            batch.drop_column(name)
