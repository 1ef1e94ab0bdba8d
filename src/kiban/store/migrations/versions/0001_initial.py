"""Initial state store: runs, attempts, locks.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(40), primary_key=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("selection", sa.Text, nullable=False),
        sa.Column("options", sa.Text, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("ended_at", sa.DateTime),
        sa.Column("heartbeat_at", sa.DateTime),
        sa.Column("pid", sa.Integer),
        sa.Column("host", sa.String(255)),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_runs_project_started", "runs", ["project", "started_at"])
    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("asset", sa.String(300), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("started_at", sa.DateTime),
        sa.Column("ended_at", sa.DateTime),
        sa.Column("seconds", sa.Float),
        sa.Column("rows", sa.BigInteger),
        sa.Column("bytes", sa.BigInteger),
        sa.Column("fingerprint", sa.String(64)),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_attempts_run", "attempts", ["run_id"])
    op.create_index("ix_attempts_asset", "attempts", ["asset", "id"])
    op.create_table(
        "locks",
        sa.Column("name", sa.String(300), primary_key=True),
        sa.Column("run_id", sa.String(40)),
        sa.Column("pid", sa.Integer),
        sa.Column("host", sa.String(255)),
        sa.Column("acquired_at", sa.DateTime),
        sa.Column("heartbeat_at", sa.DateTime),
    )


def downgrade() -> None:
    op.drop_table("locks")
    op.drop_table("attempts")
    op.drop_table("runs")
