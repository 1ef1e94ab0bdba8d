"""Catalog: column profiles, query history and usage, recipes, data requests.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "query_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("user_name", sa.String(100), nullable=False),
        sa.Column("team", sa.String(100)),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("name", sa.String(200)),
        sa.Column("sql", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("rows", sa.BigInteger),
        sa.Column("seconds", sa.Float),
        sa.Column("error", sa.Text),
        sa.Column("pii_shown", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_query_log_project_at", "query_log", ["project", "at"])
    op.create_index("ix_query_log_user", "query_log", ["project", "user_name", "at"])
    op.create_table(
        "query_assets",
        sa.Column("query_id", sa.Integer, primary_key=True),
        sa.Column("asset", sa.String(300), primary_key=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_query_assets_asset", "query_assets", ["project", "asset", "at"])
    op.create_table(
        "column_profiles",
        sa.Column("project", sa.String(200), primary_key=True),
        sa.Column("asset", sa.String(300), primary_key=True),
        sa.Column("column_name", sa.String(300), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("data_type", sa.String(200), nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("null_share", sa.Float),
        sa.Column("approx_distinct", sa.BigInteger),
        sa.Column("min_value", sa.Text),
        sa.Column("max_value", sa.Text),
        sa.Column("examples", sa.Text),
        sa.Column("profiled_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "data_requests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("requester", sa.String(100), nullable=False),
        sa.Column("team", sa.String(100)),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("hypothesis", sa.Text, nullable=False),
        sa.Column("data_needed", sa.Text, nullable=False),
        sa.Column("needed_by", sa.Date),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("assignee", sa.String(100)),
        sa.Column("deliverable", sa.String(500)),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("delivered_at", sa.DateTime),
        sa.Column("closed_at", sa.DateTime),
    )
    op.create_index("ix_data_requests_project", "data_requests", ["project", "status"])
    op.create_table(
        "data_request_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.Integer, nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("actor", sa.String(100)),
        sa.Column("from_status", sa.String(20)),
        sa.Column("to_status", sa.String(20), nullable=False),
        sa.Column("note", sa.Text),
    )
    op.create_index("ix_data_request_events_request", "data_request_events", ["request_id"])


def downgrade() -> None:
    for table in ("data_request_events", "data_requests", "column_profiles", "query_assets", "query_log"):
        op.drop_table(table)
