"""Tables of the state store (SQLAlchemy Core). Changed only through an Alembic migration."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(40), primary_key=True),
    Column("project", String(200), nullable=False),
    Column("status", String(20), nullable=False),  # running, success, failed, abandoned, cancelled
    Column("selection", Text, nullable=False, default=""),
    Column("options", Text, nullable=False, default="{}"),
    Column("started_at", DateTime, nullable=False),
    Column("ended_at", DateTime),
    Column("heartbeat_at", DateTime),
    Column("pid", Integer),
    Column("host", String(255)),
    Column("error", Text),
    Index("ix_runs_project_started", "project", "started_at"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(40), nullable=False),
    Column("asset", String(300), nullable=False),
    Column("attempt", Integer, nullable=False, default=1),
    Column("status", String(20), nullable=False),  # success, fresh, failed, skipped, cancelled
    Column("started_at", DateTime),
    Column("ended_at", DateTime),
    Column("seconds", Float),
    Column("rows", BigInteger),
    Column("bytes", BigInteger),
    Column("fingerprint", String(64)),
    Column("error", Text),
    Index("ix_attempts_run", "run_id"),
    Index("ix_attempts_asset", "asset", "id"),
)

locks = Table(
    "locks",
    metadata,
    Column("name", String(300), primary_key=True),
    Column("run_id", String(40)),
    Column("pid", Integer),
    Column("host", String(255)),
    Column("acquired_at", DateTime),
    Column("heartbeat_at", DateTime),
)
