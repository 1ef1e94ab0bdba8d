"""Scheduler: leader leases, job ticks (each tick runs once, even across failover), sensor states.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduler_leases",
        sa.Column("name", sa.String(300), primary_key=True),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("pid", sa.Integer),
        sa.Column("host", sa.String(255)),
        sa.Column("acquired_at", sa.DateTime, nullable=False),
        sa.Column("renewed_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "job_ticks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("job", sa.String(200), nullable=False),
        sa.Column("scheduled_at", sa.DateTime, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("holder", sa.String(64)),
        sa.Column("run_id", sa.String(40)),
        sa.Column("pid", sa.Integer),
        sa.Column("host", sa.String(255)),
        sa.Column("reason", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("started_at", sa.DateTime),
        sa.Column("ended_at", sa.DateTime),
        sa.Column("exit_code", sa.Integer),
    )
    op.create_index("ux_job_ticks_job_time", "job_ticks", ["project", "job", "scheduled_at"], unique=True)
    op.create_table(
        "trigger_states",
        sa.Column("project", sa.String(200), primary_key=True),
        sa.Column("job", sa.String(200), primary_key=True),
        sa.Column("trigger", sa.String(500), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("observed_at", sa.DateTime, nullable=False),
        sa.Column("fired_at", sa.DateTime),
    )


def downgrade() -> None:
    op.drop_table("trigger_states")
    op.drop_index("ux_job_ticks_job_time", "job_ticks")
    op.drop_table("job_ticks")
    op.drop_table("scheduler_leases")
