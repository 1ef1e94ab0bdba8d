"""Backfills of incremental models: each backfill and every partition's outcome (resumable).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backfills",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("selection", sa.Text, nullable=False),
        sa.Column("assets", sa.Text, nullable=False),
        sa.Column("range_from", sa.DateTime, nullable=False),
        sa.Column("range_to", sa.DateTime, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("concurrency", sa.Integer),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("started_at", sa.DateTime),
        sa.Column("ended_at", sa.DateTime),
        sa.Column("heartbeat_at", sa.DateTime),
        sa.Column("pid", sa.Integer),
        sa.Column("host", sa.String(255)),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_backfills_project_key", "backfills", ["project", "key"])
    op.create_table(
        "backfill_partitions",
        sa.Column("backfill_id", sa.String(40), primary_key=True),
        sa.Column("asset", sa.String(300), primary_key=True),
        sa.Column("partition_start", sa.DateTime, primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("rows", sa.BigInteger),
        sa.Column("seconds", sa.Float),
        sa.Column("error", sa.Text),
        sa.Column("ended_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("backfill_partitions")
    op.drop_index("ix_backfills_project_key", "backfills")
    op.drop_table("backfills")
