"""Two projects sharing one state store keep their own verdicts and notifications.

- Stored service-level verdicts are keyed by project as well: both projects may have a use case called
  ``sales_dashboard``, and each one's verdict for a day used to replace the other's. Existing rows keep their
  project; the key becomes (project, usecase, due_date).
- The notification outbox says whose each row is: one project's scheduler retried the other's failed messages
  over its own channel of the same name, and counted them in its rate limit. Older rows have no project.

Revision ID: 0020
Revises: 0019
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def _table(*key: str) -> sa.Table:
    return sa.Table(
        "slo_evaluations",
        sa.MetaData(),
        sa.Column("usecase", sa.String(200), nullable=False),
        sa.Column("due_date", sa.Date, nullable=False),
        sa.Column("project", sa.String(200), nullable=False),
        sa.Column("deadline", sa.DateTime, nullable=False),
        sa.Column("verdict", sa.String(20), nullable=False),
        sa.Column("lateness_s", sa.Float),
        sa.Column("satisfied_at", sa.DateTime),
        sa.Column("evidence", sa.Text, nullable=False),
        sa.Column("evaluated_at", sa.DateTime, nullable=False),
        sa.PrimaryKeyConstraint(*key, name="pk_slo_evaluations"),
    )


def _rekey(*key: str) -> None:
    if op.get_bind().dialect.name == "sqlite":  # SQLite cannot change a primary key: the table is made again
        with op.batch_alter_table("slo_evaluations", copy_from=_table(*key), recreate="always"):
            pass
        return
    pk = sa.inspect(op.get_bind()).get_pk_constraint("slo_evaluations")["name"] or "slo_evaluations_pkey"
    op.drop_constraint(pk, "slo_evaluations", type_="primary")
    op.create_primary_key("pk_slo_evaluations", "slo_evaluations", list(key))


def upgrade() -> None:
    _rekey("project", "usecase", "due_date")
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("project", sa.String(200)))


def downgrade() -> None:  # only possible while no two projects judged a same-named use case on one day
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("project")
    _rekey("usecase", "due_date")
