"""What each planned fingerprint was planned from: the content of the model's definition files, so the console
tells a model whose code changed since its build by content rather than by the files' modification times.

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fingerprint_code",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("fingerprint", sa.String(100), nullable=False),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_fingerprint_code", "fingerprint_code", ["project", "fingerprint"])


def downgrade() -> None:
    op.drop_index("ix_fingerprint_code", table_name="fingerprint_code")
    op.drop_table("fingerprint_code")
