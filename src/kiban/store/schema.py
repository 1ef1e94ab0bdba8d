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
    Column("project", String(200)),  # runs know their project; `kiban check` results (run_id check-…) say it here
    Column("kind", String(30)),  # not_null, unique, … (check_name is the declared or default name)
    Column("fingerprint", String(64)),  # the version judged: a build's new version, or the published one
    Column("rows", BigInteger),  # rows of that version
    Column("observed", Text),  # JSON: what was measured (row count, sum, newest value) — the volume history
    Column("samples", Text),  # JSON: up to N failing rows of a failed check (pii columns masked)
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

scheduler_leases = Table(  # leader election: the scheduler that holds an unexpired lease is the active one
    "scheduler_leases",
    metadata,
    Column("name", String(300), primary_key=True),  # scheduler:<project>
    Column("holder", String(64), nullable=False),  # the daemon's id (uuid), unique per process start
    Column("pid", Integer),
    Column("host", String(255)),
    Column("acquired_at", DateTime, nullable=False),
    Column("renewed_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
)

job_ticks = Table(  # one row per cron tick or sensor firing; the unique key is what makes a tick run once
    "job_ticks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", String(200), nullable=False),
    Column("job", String(200), nullable=False),
    Column("scheduled_at", DateTime, nullable=False),  # UTC: the cron tick, or when the sensor fired
    Column("kind", String(20), nullable=False),  # cron, sensor
    Column("status", String(20), nullable=False),  # queued, running, success, failed, skipped, lost
    Column("holder", String(64)),  # the scheduler that claimed it
    Column("run_id", String(40)),
    Column("pid", Integer),  # of the `kiban run` process
    Column("host", String(255)),  # where that process runs
    Column("reason", Text),  # why: the sensor's change, or why it was skipped
    Column("created_at", DateTime, nullable=False),
    Column("started_at", DateTime),
    Column("ended_at", DateTime),
    Column("exit_code", Integer),
    Index("ux_job_ticks_job_time", "project", "job", "scheduled_at", unique=True),
)

trigger_states = Table(  # what each trigger last saw: a sensor's fingerprint; how far cron ticks were looked at
    "trigger_states",
    metadata,
    Column("project", String(200), primary_key=True),
    Column("job", String(200), primary_key=True),
    Column("trigger", String(500), primary_key=True),  # a sensor's key, or "cron"
    Column("fingerprint", String(64), nullable=False),
    Column("observed_at", DateTime, nullable=False),
    Column("fired_at", DateTime),
)

backfills = Table(  # one backfill: incremental models × a range of partitions; resumed while unfinished
    "backfills",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("project", String(200), nullable=False),
    Column("key", String(64), nullable=False),  # models, range and their code: the same backfill resumes
    Column("selection", Text, nullable=False),  # JSON: the selectors as given
    Column("assets", Text, nullable=False),  # JSON: the incremental models, in dependency order
    Column("range_from", DateTime, nullable=False),  # first partition's start
    Column("range_to", DateTime, nullable=False),  # end of the last partition (exclusive)
    Column("status", String(20), nullable=False),  # running, success, failed, cancelled, abandoned
    Column("total", Integer, nullable=False),  # partitions over all models
    Column("concurrency", Integer),
    Column("created_at", DateTime, nullable=False),
    Column("started_at", DateTime),  # of the latest session: a resumed backfill starts again
    Column("ended_at", DateTime),
    Column("heartbeat_at", DateTime),
    Column("pid", Integer),
    Column("host", String(255)),
    Column("error", Text),
    Index("ix_backfills_project_key", "project", "key"),
)

backfill_partitions = Table(  # each partition's latest outcome in its backfill
    "backfill_partitions",
    metadata,
    Column("backfill_id", String(40), primary_key=True),
    Column("asset", String(300), primary_key=True),
    Column("partition_start", DateTime, primary_key=True),
    Column("status", String(20), nullable=False),  # success, failed, skipped
    Column("attempts", Integer, nullable=False, default=1),
    Column("rows", BigInteger),
    Column("seconds", Float),
    Column("error", Text),
    Column("ended_at", DateTime, nullable=False),
)
