"""Tables of the state store (SQLAlchemy Core). Changed only through an Alembic migration."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Sequence,
    String,
    Table,
    Text,
)

from kiban.store.lite import ALEMBIC_VERSION

metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(40), primary_key=True),
    Column("project", String(200), nullable=False),
    Column("status", String(20), nullable=False),  # kiban.status.RunStatus
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
    Column("status", String(20), nullable=False),  # kiban.status.AttemptStatus
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

slo_evaluations = Table(  # one verdict per project, use case and due day (two projects may share a use case's name)
    "slo_evaluations",
    metadata,
    Column("usecase", String(200), nullable=False),
    Column("due_date", Date, nullable=False),
    Column("project", String(200), nullable=False),
    Column("deadline", DateTime, nullable=False),  # UTC
    Column("verdict", String(20), nullable=False),  # met, late, failed, incomplete, bad_data, pending, at_risk
    Column("lateness_s", Float),
    Column("satisfied_at", DateTime),
    Column("evidence", Text, nullable=False, default="{}"),
    Column("evaluated_at", DateTime, nullable=False),
    PrimaryKeyConstraint("project", "usecase", "due_date", name="pk_slo_evaluations"),  # migration 0020
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
    Column("said", Text),  # the message as parts, JSON (kiban.messages); null on rows written before 0019
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
    Column("payload", Text),  # the message as JSON: a failed delivery is sent again from the outbox
    Column("retry_at", DateTime),  # when the outbox tries it again (None: delivered, given up, or suppressed)
    Column("project", String(200)),  # whose outbox (migration 0020; null on older rows)
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

# -- collection (migration 0006): a load's manifest commits in ONE transaction with its cursor ---------------

loads = Table(  # one load of one source table: committed (its files are the lake) or failed (nothing landed)
    "loads",
    metadata,
    Column("load_id", String(40), primary_key=True),
    Column("project", String(200), nullable=False),
    Column("asset", String(300), nullable=False),  # lake.<source>_<table>
    Column("source", String(200), nullable=False),
    Column("table_name", String(200), nullable=False),
    Column("run_id", String(40)),
    Column("kind", String(20), nullable=False),  # load, replay
    Column("status", String(20), nullable=False),  # committed, failed
    Column("started_at", DateTime, nullable=False),
    Column("ended_at", DateTime),
    Column("rows_read", BigInteger, nullable=False),
    Column("rows_landed", BigInteger, nullable=False),
    Column("rows_quarantined", BigInteger, nullable=False),
    Column("rows_dropped", BigInteger, nullable=False),  # duplicates and unchanged rows (read = landed + q + d)
    Column("rows_deleted", BigInteger, nullable=False),  # deletion rows landed for keys gone from the source
    Column("cursor", Text),  # JSON {"type", "value"}: the newest cursor value after this load
    Column("schema", Text),  # JSON [[column, type], ...] of the landed rows (metadata columns left out)
    Column("error", Text),
    Column("reread_s", Float),  # seconds behind the cursor where the next load reads again (open transactions)
    Column("retracted_at", DateTime),  # `kiban loads retract`: in no view any more (its files stay in the lake)
    Column("retracted_note", Text),
    # storage: on shared storage, the Delta version this load's commit made, and the one its retraction made
    Column("lake_version", BigInteger),
    Column("retracted_version", BigInteger),
    Index("ix_loads_asset", "project", "asset", "started_at"),
)

load_files = Table(  # the files a load wrote: data files (the lake view lists exactly these) and its quarantine
    "load_files",
    metadata,
    Column("load_id", String(40), primary_key=True),
    Column("path", String(1000), primary_key=True),  # relative to the lake folder
    Column("kind", String(20), nullable=False),  # data, quarantine
    Column("rows", BigInteger, nullable=False),
    Column("bytes", BigInteger, nullable=False),
)

consumed_files = Table(  # source files a committed load read: a landing folder loads each file once
    "consumed_files",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", String(200), nullable=False),
    Column("asset", String(300), nullable=False),
    Column("path", String(1000), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("load_id", String(40), nullable=False),
    Index("ix_consumed_files_asset", "project", "asset", "sha256"),
)

drift_events = Table(  # schema changes seen by loads, and what the table's on_drift policy did about them
    "drift_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", String(200), nullable=False),
    Column("asset", String(300), nullable=False),
    Column("load_id", String(40), nullable=False),
    Column("at", DateTime, nullable=False),
    Column("change", String(20), nullable=False),  # added, dropped, retyped
    Column("column_name", String(300), nullable=False),
    Column("old_type", String(200)),
    Column("new_type", String(200)),
    Column("action", String(20), nullable=False),  # evolved, warned, failed
    Index("ix_drift_events_asset", "project", "asset", "id"),
)

quarantine_replays = Table(  # quarantined rows that a later `kiban quarantine replay` landed
    "quarantine_replays",
    metadata,
    Column("load_id", String(40), primary_key=True),  # the load that quarantined the row
    Column("row_number", Integer, primary_key=True),  # its position in that load's quarantine file
    Column("replay_load_id", String(40), nullable=False),
    Column("replayed_at", DateTime, nullable=False),
)

# -- web console (migration 0007): local users, sessions, API tokens, login throttling, audit log ---------------

users = Table(  # people who may use the web console and API; passwords hashed with argon2
    "users",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("password_hash", String(200), nullable=False),
    Column("role", String(20), nullable=False),  # viewer, analyst, operator, admin
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

sessions = Table(  # signed-in browsers; the cookie holds a random token, the store only its sha256
    "sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_name", String(100), nullable=False),
    Column("csrf", String(64), nullable=False),  # sent back in forms and the X-CSRF-Token header
    Column("created_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
    Column("ip", String(100)),
    Index("ix_sessions_user", "user_name"),
)

api_tokens = Table(  # Bearer tokens for scripts; only their sha256 is kept
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_name", String(100), nullable=False),
    Column("token_hash", String(64), nullable=False),
    Column("label", String(200)),
    Column("created_at", DateTime, nullable=False),
    Column("last_used_at", DateTime),
    Index("ux_api_tokens_hash", "token_hash", unique=True),
)

login_failures = Table(  # failed sign-ins per user and address: the backoff before the next try is allowed
    "login_failures",
    metadata,
    Column("user_name", String(100), primary_key=True),
    Column("ip", String(100), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("last_failed_at", DateTime, nullable=False),
    Column("blocked_until", DateTime, nullable=False),
)

audit_log = Table(  # every state-changing action: who, what, when, from where, and how it went
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime, nullable=False),
    Column("actor", String(100)),  # a user name, or cli:<os user> for `kiban users`
    Column("action", String(60), nullable=False),  # login, logout, run.resume, user.add, …
    Column("target", Text),
    Column("ip", String(100)),
    Column("outcome", String(20), nullable=False),  # ok, denied, failed
    Column("detail", Text),
    Index("ix_audit_log_at", "at"),
)

# -- catalog (migration 0009): query history and usage, column profiles, data requests --------------------------

query_log = Table(  # every console query, recipe run and export: who, which team, what it read, how it went
    "query_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", String(200), nullable=False),
    Column("at", DateTime, nullable=False),
    Column("user_name", String(100), nullable=False),
    Column("team", String(100)),
    Column("kind", String(20), nullable=False),  # query, recipe, export
    Column("name", String(200)),  # the recipe's name, or the export's file
    Column("sql", Text, nullable=False),
    Column("status", String(20), nullable=False),  # ok, refused, failed, timeout
    Column("rows", BigInteger),
    Column("seconds", Float),
    Column("error", Text),
    Column("pii_shown", Boolean, nullable=False, default=False),  # values of PII columns were shown unmasked
    Index("ix_query_log_project_at", "project", "at"),
    Index("ix_query_log_user", "project", "user_name", "at"),
)

query_assets = Table(  # the assets each logged query read (from its parsed SQL): what `kiban usage unused` reads
    "query_assets",
    metadata,
    Column("query_id", Integer, primary_key=True),
    Column("asset", String(300), primary_key=True),
    Column("project", String(200), nullable=False),
    Column("at", DateTime, nullable=False),
    Index("ix_query_assets_asset", "project", "asset", "at"),
)

column_profiles = Table(  # cheap statistics of each published column, refreshed after publishes (pii examples masked)
    "column_profiles",
    metadata,
    Column("project", String(200), primary_key=True),
    Column("asset", String(300), primary_key=True),
    Column("column_name", String(300), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("data_type", String(200), nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("null_share", Float),
    Column("approx_distinct", BigInteger),
    Column("min_value", Text),
    Column("max_value", Text),
    Column("examples", Text),  # JSON list of a few values
    Column("profiled_at", DateTime, nullable=False),
)

data_requests = Table(  # a person's request for data: new → in_progress → delivered → closed
    "data_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", String(200), nullable=False),
    Column("title", String(300), nullable=False),
    Column("requester", String(100), nullable=False),
    Column("team", String(100)),
    Column("purpose", Text, nullable=False, default=""),
    Column("hypothesis", Text, nullable=False, default=""),
    Column("data_needed", Text, nullable=False, default=""),
    Column("needed_by", Date),
    Column("status", String(20), nullable=False),
    Column("assignee", String(100)),
    Column("deliverable", String(500)),  # recipe:NAME, mart.NAME, file:PATH
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("delivered_at", DateTime),
    Column("closed_at", DateTime),
    Index("ix_data_requests_project", "project", "status"),
)

data_request_events = Table(  # each state change of a request, for its timeline and lead times
    "data_request_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", Integer, nullable=False),
    Column("at", DateTime, nullable=False),
    Column("actor", String(100)),
    Column("from_status", String(20)),
    Column("to_status", String(20), nullable=False),
    Column("note", Text),
    Index("ix_data_request_events_request", "request_id"),
)

# -- machine learning (migration 0008): the model registry ---------------------------------------------------------

model_versions = Table(  # every trained version of every model: what it was trained on, how it scored, its fate
    "model_versions",
    metadata,
    Column("project", String(200), primary_key=True),
    Column("model", String(300), primary_key=True),  # the training asset's key, e.g. warehouse.demand_model
    Column("version", Integer, primary_key=True),  # 1, 2, 3 … per model
    Column("status", String(20), nullable=False),  # current, rejected, retired
    Column("reason", Text),  # why it was rejected or retired, or what made it current
    Column("metric", String(100), nullable=False),  # the hold-out metric that decides promotion
    Column("direction", String(3), nullable=False),  # min, max
    Column("metric_value", Float),
    Column("metrics", Text, nullable=False),  # JSON: every hold-out metric
    Column("params", Text, nullable=False),  # JSON: the training parameters
    Column("data_fingerprint", String(64), nullable=False),  # sha256 of the training inputs
    Column("code_fingerprint", String(64), nullable=False),  # the build's fingerprint (code and inputs' versions)
    Column("artefact", String(1000), nullable=False),  # path under .kiban/models/
    Column("sha256", String(64), nullable=False),  # of the artefact: it is loaded only if this matches
    Column("baseline", Text),  # JSON: the training features' distributions, for drift checks
    Column("trained_at", DateTime, nullable=False),
    Column("changed_at", DateTime, nullable=False),  # when the status last changed
    Index("ix_model_versions_status", "project", "model", "status"),
)

# -- workers (migration 0010): the shared run queue that `kiban worker` processes claim from ------------------------

run_queue = Table(  # one row per asset a distributed run builds; workers claim ready rows FOR UPDATE SKIP LOCKED
    "run_queue",
    metadata,
    Column("run_id", String(40), primary_key=True),
    Column("asset", String(300), primary_key=True),
    Column("project", String(200), nullable=False),
    Column("status", String(20), nullable=False),  # waiting, ready, running, success, failed, skipped, cancelled
    Column("deps", Text, nullable=False, default="[]"),  # JSON: assets of this run it waits for
    Column("fingerprint", String(64), nullable=False),  # what the published version will carry
    Column("code", String(64), nullable=False),  # hash of the model's SQL: a worker with other code refuses it
    Column("worker", String(100)),  # who holds it (running) or last held it
    Column("claims", Integer, nullable=False, default=0),  # how often it was claimed: > 1 after a worker died
    Column("enqueued_at", DateTime, nullable=False),
    Column("ready_at", DateTime),
    Column("claimed_at", DateTime),
    Column("heartbeat_at", DateTime),  # renewed by the holding worker; expired → the row is ready again
    Column("finished_at", DateTime),
    Column("rows", BigInteger),
    Column("error", Text),
    Column("token", BigInteger),  # the fencing token of the current claim (FENCE_TOKENS); older ones never publish
    Column("project_version", String(64)),  # the coordinator's project (every model's SQL): other workers refuse
    Index("ix_run_queue_ready", "project", "status", "ready_at"),
)

# Fencing tokens: every claim of a run-queue row takes the next number. The warehouse remembers the highest
# token per asset and publishes only for it, so a worker whose lease was taken can never publish (issue 18).
FENCE_TOKENS = Sequence("kiban_fence_token", metadata=metadata)

workers = Table(  # the `kiban worker` processes: what each is doing, and when it last said so
    "workers",
    metadata,
    Column("worker_id", String(100), primary_key=True),
    Column("project", String(200), nullable=False),
    Column("host", String(255)),
    Column("pid", Integer),
    Column("status", String(20), nullable=False),  # idle, busy, stopped
    Column("run_id", String(40)),
    Column("asset", String(300)),
    Column("started_at", DateTime, nullable=False),
    Column("heartbeat_at", DateTime),
    Column("built", Integer, nullable=False, default=0),  # assets this worker finished
    Index("ix_workers_project", "project", "heartbeat_at"),
)


deliveries = Table(  # every delivery of a mart or recipe as a file (kiban.deliver): what, where, how it went
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("usecase", String(200)),
    Column("started_at", DateTime, nullable=False),
    Column("ended_at", DateTime),
    Column("status", String(20), nullable=False),  # running, delivered, failed
    Column("rows", BigInteger),
    Column("file", Text),
    Column("destination", Text),
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", Text),
    Column("trigger", String(20)),  # hand (kiban deliver), schedule (its cron) or usecase (after: usecase_met)
    Column("scheduled_for", DateTime),  # the cron tick or the use case's due day it serves: claimed once
    Column("retry_at", DateTime),  # a failed one is attempted again then (the outbox); empty: final
    Index("ix_deliveries_project_name", "project", "name", "started_at"),
    Index("ux_deliveries_tick", "project", "name", "scheduled_for", unique=True),
)

initiative_measurements = Table(  # the value ledger: each measurement of an initiative's effect (kiban.value)
    "initiative_measurements",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", String(200), nullable=False),
    Column("initiative", String(200), nullable=False),
    Column("measured_at", DateTime, nullable=False),
    Column("method", String(20), nullable=False),  # ab, did, before_after
    Column("data_from", Date, nullable=False),
    Column("data_through", Date, nullable=False),
    Column("estimate", Float, nullable=False),  # per treated unit and day, in KPI units
    Column("low", Float, nullable=False),
    Column("high", Float, nullable=False),
    Column("p_value", Float),
    Column("unit_days", Integer, nullable=False),  # treated units × days after the start
    Column("value", Float, nullable=False),  # estimate × unit_days × value_per_unit (money)
    Column("value_low", Float, nullable=False),
    Column("value_high", Float, nullable=False),
    Column("detail", Text, nullable=False, default="{}"),  # the Effect as JSON (pre-period fit, notes)
    Index("ix_initiative_measurements", "project", "initiative", "measured_at"),
)

postmortems = Table(  # one per incident: drafted from its timeline, completed by people (kiban.team.postmortem)
    "postmortems",
    metadata,
    Column("incident_id", Integer, primary_key=True),
    Column("project", String(200), nullable=False),
    Column("status", String(20), nullable=False),  # draft, final
    Column("body", Text, nullable=False),  # the sections as JSON: summary, impact, root_cause, workaround, …
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("updated_by", String(200)),
)


fingerprint_code = Table(  # what each planned fingerprint was planned from: the definitions' content (graph.code)
    "fingerprint_code",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", String(200), nullable=False),
    Column("fingerprint", String(100), nullable=False),  # as attempts record it (an incremental model's is longer)
    Column("code", Text, nullable=False),  # JSON: each definition file's path → a digest of its content
    Column("recorded_at", DateTime, nullable=False),
    Index("ix_fingerprint_code", "project", "fingerprint"),
)


def sqlite_ddl() -> tuple[str, ...]:
    """A new SQLite store's schema as ``metadata.create_all`` and the revision table make it: ``sqlite_master``'s
    statements, each table (in creation order) followed by its indexes by name (``create_all`` makes a table's
    indexes in no fixed order). ``kiban.store.ddl.SQLITE`` is this, written out (``tests/test_store_lite.py``)."""
    import sqlite3

    from sqlalchemy import create_engine

    engine = create_engine("sqlite://")
    try:
        with engine.begin() as conn:
            metadata.create_all(conn)
            conn.exec_driver_sql(ALEMBIC_VERSION)
            dbapi = conn.connection.dbapi_connection
            assert isinstance(dbapi, sqlite3.Connection)
            found = dbapi.execute("select type, name, tbl_name, sql from sqlite_master where sql is not null "
                                  "order by rowid").fetchall()
    finally:
        engine.dispose()
    ordered: list[str] = []
    for kind, _name, table, sql in found:
        if kind == "table":
            ordered.append(sql)
            ordered += [i[3] for i in sorted(found, key=lambda f: f[1]) if i[0] == "index" and i[2] == table]
    return tuple(ordered)


DDL_HEADER = '''# ruff: noqa: E501
"""A new SQLite state store's schema, without SQLAlchemy: the statements ``metadata.create_all`` (and the
revision table) make, in ``sqlite_master``'s order. Written by ``kiban.store.schema.write_sqlite_ddl``;
``tests/test_store_ddl.py`` holds it to ``kiban.store.schema.sqlite_ddl()``: write it again after a migration."""

SQLITE: tuple[str, ...] = (
'''


def write_sqlite_ddl(path: str) -> None:
    """Write ``kiban/store/ddl.py`` from ``sqlite_ddl()`` (after a migration changes the schema)."""
    with open(path, "w") as out:
        out.write(DDL_HEADER + "".join(f"    {sql!r},\n" for sql in sqlite_ddl()) + ")\n")
