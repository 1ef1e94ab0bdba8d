"""The value ledger (initiative_measurements) and incidents' postmortems.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "initiative_measurements",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("initiative", sa.String(200), nullable=False),
        sa.Column("measured_at", sa.DateTime, nullable=False),
        sa.Column("method", sa.String(20), nullable=False),
        sa.Column("data_from", sa.Date, nullable=False),
        sa.Column("data_through", sa.Date, nullable=False),
        sa.Column("estimate", sa.Float, nullable=False),
        sa.Column("low", sa.Float, nullable=False),
        sa.Column("high", sa.Float, nullable=False),
        sa.Column("p_value", sa.Float),
        sa.Column("unit_days", sa.Integer, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("value_low", sa.Float, nullable=False),
        sa.Column("value_high", sa.Float, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_initiative_measurements", "initiative_measurements", ["project", "initiative", "measured_at"])
    op.create_table(
        "postmortems",
        sa.Column("incident_id", sa.Integer, primary_key=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("updated_by", sa.String(200)),
    )


def downgrade() -> None:
    op.drop_table("postmortems")
    op.drop_index("ix_initiative_measurements", table_name="initiative_measurements")
    op.drop_table("initiative_measurements")
