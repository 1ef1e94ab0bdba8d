"""Service levels: watermarks on attempts, check results, SLO evaluations, incidents, notifications.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("watermark", sa.Date))
    op.create_table(
        "check_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(40)),
        sa.Column("asset", sa.String(300), nullable=False),
        sa.Column("check_name", sa.String(300), nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("failures", sa.BigInteger),
        sa.Column("detail", sa.Text),
        sa.Column("checked_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_check_results_asset", "check_results", ["asset", "checked_at"])
    op.create_table(
        "slo_evaluations",
        sa.Column("usecase", sa.String(200), primary_key=True),
        sa.Column("due_date", sa.Date, primary_key=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("deadline", sa.DateTime, nullable=False),
        sa.Column("verdict", sa.String(20), nullable=False),
        sa.Column("lateness_s", sa.Float),
        sa.Column("satisfied_at", sa.DateTime),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("evaluated_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("usecase", sa.String(200), nullable=False),
        sa.Column("due_date", sa.Date, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("verdict", sa.String(20)),
        sa.Column("opened_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("resolved_at", sa.DateTime),
        sa.Column("impact", sa.Text, nullable=False),
        sa.Column("root_cause", sa.Text, nullable=False),
        sa.Column("workaround", sa.Text),
        sa.Column("note", sa.Text),
    )
    op.create_index("ux_incidents_usecase_day", "incidents", ["project", "usecase", "due_date"], unique=True)
    op.create_table(
        "incident_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.Integer, nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("actor", sa.String(200)),
    )
    op.create_index("ix_incident_events_incident", "incident_events", ["incident_id"])
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("channel", sa.String(200), nullable=False),
        sa.Column("dedupe_key", sa.String(300), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("sent_at", sa.DateTime),
    )
    op.create_index("ix_notifications_key", "notifications", ["channel", "dedupe_key", "created_at"])


def downgrade() -> None:
    op.drop_table("notifications")
    op.drop_table("incident_events")
    op.drop_table("incidents")
    op.drop_table("slo_evaluations")
    op.drop_table("check_results")
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("watermark")
