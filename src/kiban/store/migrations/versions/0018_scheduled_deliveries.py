"""Scheduled deliveries: what triggered each delivery, the tick or due day it serves (claimed once), and when a
failed one is attempted again (the outbox).

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("trigger", sa.String(20)))
        batch.add_column(sa.Column("scheduled_for", sa.DateTime))
        batch.add_column(sa.Column("retry_at", sa.DateTime))
    op.create_index("ux_deliveries_tick", "deliveries", ["project", "name", "scheduled_for"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_deliveries_tick", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("retry_at")
        batch.drop_column("scheduled_for")
        batch.drop_column("trigger")
