"""Loads on shared storage: the Delta version a load's commit (and a retraction) made.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("loads") as batch:
        batch.add_column(sa.Column("lake_version", sa.BigInteger))
        batch.add_column(sa.Column("retracted_version", sa.BigInteger))


def downgrade() -> None:
    with op.batch_alter_table("loads") as batch:
        batch.drop_column("retracted_version")
        batch.drop_column("lake_version")
