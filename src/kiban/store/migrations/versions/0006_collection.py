"""Collection: loads (manifests), landed files, schema drift events, quarantine index.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loads",
        sa.Column("load_id", sa.String(40), primary_key=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("asset", sa.String(300), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("table_name", sa.String(200), nullable=False),
        sa.Column("run_id", sa.String(40)),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("ended_at", sa.DateTime),
        sa.Column("rows_read", sa.BigInteger, nullable=False),
        sa.Column("rows_landed", sa.BigInteger, nullable=False),
        sa.Column("rows_quarantined", sa.BigInteger, nullable=False),
        sa.Column("rows_dropped", sa.BigInteger, nullable=False),
        sa.Column("rows_deleted", sa.BigInteger, nullable=False),
        sa.Column("cursor", sa.Text),
        sa.Column("schema", sa.Text),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_loads_asset", "loads", ["project", "asset", "started_at"])
    op.create_table(
        "load_files",
        sa.Column("load_id", sa.String(40), primary_key=True),
        sa.Column("path", sa.String(1000), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "consumed_files",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("asset", sa.String(300), nullable=False),
        sa.Column("path", sa.String(1000), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("load_id", sa.String(40), nullable=False),
    )
    op.create_index("ix_consumed_files_asset", "consumed_files", ["project", "asset", "sha256"])
    op.create_table(
        "drift_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("asset", sa.String(300), nullable=False),
        sa.Column("load_id", sa.String(40), nullable=False),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("change", sa.String(20), nullable=False),
        sa.Column("column_name", sa.String(300), nullable=False),
        sa.Column("old_type", sa.String(200)),
        sa.Column("new_type", sa.String(200)),
        sa.Column("action", sa.String(20), nullable=False),
    )
    op.create_index("ix_drift_events_asset", "drift_events", ["project", "asset", "id"])
    op.create_table(
        "quarantine_replays",
        sa.Column("load_id", sa.String(40), primary_key=True),
        sa.Column("row_number", sa.Integer, primary_key=True),
        sa.Column("replay_load_id", sa.String(40), nullable=False),
        sa.Column("replayed_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("quarantine_replays")
    op.drop_index("ix_drift_events_asset", "drift_events")
    op.drop_table("drift_events")
    op.drop_index("ix_consumed_files_asset", "consumed_files")
    op.drop_table("consumed_files")
    op.drop_table("load_files")
    op.drop_index("ix_loads_asset", "loads")
    op.drop_table("loads")
