"""Tables of the state store (SQLAlchemy Core). Changed only through an Alembic migration."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Date, DateTime, Float, Index, Integer, MetaData, String, Table, Text

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
    Column("watermark", Date),  # how far the data reaches: max(time_column) after this build
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

check_results = Table(  # filled by data-quality checks; read by service levels (bad_data)
    "check_results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(40)),
    Column("asset", String(300), nullable=False),
    Column("check_name", String(300), nullable=False),
    Column("severity", String(10), nullable=False),  # error, warn
    Column("status", String(10), nullable=False),  # pass, fail
    Column("failures", BigInteger),
    Column("detail", Text),
    Column("checked_at", DateTime, nullable=False),
    Index("ix_check_results_asset", "asset", "checked_at"),
)

slo_evaluations = Table(
    "slo_evaluations",
    metadata,
    Column("usecase", String(200), primary_key=True),
    Column("due_date", Date, primary_key=True),
    Column("project", String(200), nullable=False),
    Column("deadline", DateTime, nullable=False),  # UTC
    Column("verdict", String(20), nullable=False),  # met, late, failed, incomplete, bad_data, pending, at_risk
    Column("lateness_s", Float),
    Column("satisfied_at", DateTime),
    Column("evidence", Text, nullable=False, default="{}"),
    Column("evaluated_at", DateTime, nullable=False),
)

incidents = Table(
    "incidents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", String(200), nullable=False),
    Column("usecase", String(200), nullable=False),
    Column("due_date", Date, nullable=False),
    Column("status", String(20), nullable=False),  # open, acknowledged, resolved
    Column("kind", String(20), nullable=False),  # at_risk, missed
    Column("verdict", String(20)),
    Column("opened_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("resolved_at", DateTime),
    Column("impact", Text, nullable=False, default="{}"),
    Column("root_cause", Text, nullable=False, default="{}"),
    Column("workaround", Text),
    Column("note", Text),
    Index("ux_incidents_usecase_day", "project", "usecase", "due_date", unique=True),
)

incident_events = Table(
    "incident_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", Integer, nullable=False),
    Column("at", DateTime, nullable=False),
    Column("kind", String(30), nullable=False),  # at_risk, failed, retried, recovered, met_late, ack, resolved
    Column("message", Text, nullable=False),
    Column("actor", String(200)),
    Index("ix_incident_events_incident", "incident_id"),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("channel", String(200), nullable=False),
    Column("dedupe_key", String(300), nullable=False),
    Column("subject", Text, nullable=False),
    Column("status", String(20), nullable=False),  # sent, failed, suppressed
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", Text),
    Column("created_at", DateTime, nullable=False),
    Column("sent_at", DateTime),
    Index("ix_notifications_key", "channel", "dedupe_key", "created_at"),
)
