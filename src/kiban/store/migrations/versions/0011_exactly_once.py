"""Collection exactly once per change: how far the next load must read again, and retracted loads.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("loads") as batch:
        # seconds behind this load's cursor where the next load must start reading (open transactions, clock)
        batch.add_column(sa.Column("reread_s", sa.Float))
        batch.add_column(sa.Column("retracted_at", sa.DateTime))  # set: the load is in no view any more
        batch.add_column(sa.Column("retracted_note", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("loads") as batch:
        batch.drop_column("retracted_note")
        batch.drop_column("retracted_at")
        batch.drop_column("reread_s")
