"""Machine learning: the model registry (versions, metrics, promotion decisions).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("project", sa.String(200), primary_key=True),
        sa.Column("model", sa.String(300), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("metric_value", sa.Float),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("data_fingerprint", sa.String(64), nullable=False),
        sa.Column("code_fingerprint", sa.String(64), nullable=False),
        sa.Column("artefact", sa.String(1000), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("baseline", sa.Text),
        sa.Column("trained_at", sa.DateTime, nullable=False),
        sa.Column("changed_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_model_versions_status", "model_versions", ["project", "model", "status"])


def downgrade() -> None:
    op.drop_index("ix_model_versions_status", "model_versions")
    op.drop_table("model_versions")
