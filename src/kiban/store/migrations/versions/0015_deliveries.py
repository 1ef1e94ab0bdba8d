"""Deliveries: every mart or recipe delivered as a file (kiban.deliver) — what, where, how it went.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("usecase", sa.String(200)),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("ended_at", sa.DateTime),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("rows", sa.BigInteger),
        sa.Column("file", sa.Text),
        sa.Column("destination", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_deliveries_project_name", "deliveries", ["project", "name", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_project_name", "deliveries")
    op.drop_table("deliveries")
