"""Notification outbox: a failed delivery keeps its message and when to try it again.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("payload", sa.Text))  # the message as JSON, to send it again later
        batch.add_column(sa.Column("retry_at", sa.DateTime))  # when the outbox tries a failed delivery again


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("retry_at")
        batch.drop_column("payload")
