"""Data-quality checks: check results know their project, kind, judged version, row count, measures, samples.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("check_results") as batch:
        batch.add_column(sa.Column("project", sa.String(200)))
        batch.add_column(sa.Column("kind", sa.String(30)))
        batch.add_column(sa.Column("fingerprint", sa.String(64)))
        batch.add_column(sa.Column("rows", sa.BigInteger))
        batch.add_column(sa.Column("observed", sa.Text))
        batch.add_column(sa.Column("samples", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("check_results") as batch:
        for column in ("samples", "observed", "rows", "fingerprint", "kind", "project"):
            batch.drop_column(column)
