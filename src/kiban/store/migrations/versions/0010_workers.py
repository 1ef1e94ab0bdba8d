"""Workers: the shared run queue of ready assets, worker heartbeats.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_queue",
        sa.Column("run_id", sa.String(40), primary_key=True),
        sa.Column("asset", sa.String(300), primary_key=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("deps", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("worker", sa.String(100)),
        sa.Column("claims", sa.Integer, nullable=False),
        sa.Column("enqueued_at", sa.DateTime, nullable=False),
        sa.Column("ready_at", sa.DateTime),
        sa.Column("claimed_at", sa.DateTime),
        sa.Column("heartbeat_at", sa.DateTime),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("rows", sa.BigInteger),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_run_queue_ready", "run_queue", ["project", "status", "ready_at"])
    op.create_table(
        "workers",
        sa.Column("worker_id", sa.String(100), primary_key=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("host", sa.String(255)),
        sa.Column("pid", sa.Integer),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("run_id", sa.String(40)),
        sa.Column("asset", sa.String(300)),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("heartbeat_at", sa.DateTime),
        sa.Column("built", sa.Integer, nullable=False),
    )
    op.create_index("ix_workers_project", "workers", ["project", "heartbeat_at"])


def downgrade() -> None:
    op.drop_index("ix_workers_project", "workers")
    op.drop_table("workers")
    op.drop_index("ix_run_queue_ready", "run_queue")
    op.drop_table("run_queue")
