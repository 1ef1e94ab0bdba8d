"""Workers that can never publish stale work: a fencing token per claim, the project version a run wants.

Revision ID: 0014
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("run_queue", sa.Column("token", sa.BigInteger))
    op.add_column("run_queue", sa.Column("project_version", sa.String(64)))
    if op.get_bind().dialect.name == "postgresql":  # the queue needs PostgreSQL; SQLite has no sequences
        op.execute("create sequence if not exists kiban_fence_token")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("drop sequence if exists kiban_fence_token")
    op.drop_column("run_queue", "project_version")
    op.drop_column("run_queue", "token")
