"""Incident timeline entries as parts: the message's kind and parameters (JSON) beside its English text, so the
console can say it in the reader's language. Older rows keep only their text (``said`` null).

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incident_events") as batch:
        batch.add_column(sa.Column("said", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("incident_events") as batch:
        batch.drop_column("said")
