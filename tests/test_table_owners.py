"""Each store table is reached only through the module that owns it (issue 25, "context passed down").

A module imports a table from ``kiban.store.schema`` only if it owns it; everyone else calls the owner. The
reads that still go around an owner are listed in ``DEBT``, a list that may only shrink. (``run.backfill`` used to
count the scheduler's ``job_ticks`` itself; it asks ``store.ticks.work_waiting`` now.)"""

from __future__ import annotations

import ast
from pathlib import Path

import sqlalchemy as sa

import kiban
from kiban.store import schema

SRC = Path(kiban.__file__).parent
OWNERS: dict[str, set[str]] = {  # table → the modules that own it (write it, and answer the others' questions)
    "runs": {"store.store"}, "attempts": {"store.store"}, "locks": {"store.store", "store.asset_locks"},
    "metadata": {"store.store", "store.migrations.env"},
    "check_results": {"checks.history"}, "slo_evaluations": {"slo.service"},
    "incidents": {"incidents.log"}, "incident_events": {"incidents.log"}, "notifications": {"notify.outbox"},
    "scheduler_leases": {"schedule.leader"},
    # the scheduler writes its ticks; the layers below it (a backfill stepping aside) read them through store.ticks
    "job_ticks": {"schedule.ledger", "store.ticks"}, "trigger_states": {"schedule.ledger"},
    "backfills": {"store.backfills"}, "backfill_partitions": {"store.backfills"},
    "loads": {"collect.manifest"}, "load_files": {"collect.manifest"}, "consumed_files": {"collect.manifest"},
    "drift_events": {"collect.manifest"}, "quarantine_replays": {"collect.manifest"},
    "users": {"web.accounts"}, "sessions": {"web.accounts"}, "api_tokens": {"web.accounts"},
    "login_failures": {"web.accounts"}, "audit_log": {"web.accounts"},
    "query_log": {"catalog.usage"}, "query_assets": {"catalog.usage"}, "column_profiles": {"catalog.profile"},
    "data_requests": {"catalog.requests"}, "data_request_events": {"catalog.requests"},
    "model_versions": {"ml.registry"}, "run_queue": {"workers.queue"}, "workers": {"workers.queue"},
    "FENCE_TOKENS": {"workers.queue"}, "deliveries": {"deliveries.send", "deliveries.outbox"},
    "initiative_measurements": {"value.ledger"}, "postmortems": {"team.postmortem"},
}
DEBT = {  # (module, table) read around the owner → what to do
    ("web.views", "attempts"): "the run history through store.Store",
    ("web.views", "runs"): "the same",
    ("web.views", "check_results"): "checks.history",
    ("web.views", "incidents"): "incidents.log",
    ("slo.service", "attempts"): "store.Store",
    ("slo.service", "runs"): "store.Store",
    ("slo.facts", "attempts"): "one facts query in store.Store",
    ("slo.facts", "runs"): "the same",
    ("slo.facts", "check_results"): "checks.history",
    ("checks.history", "runs"): "store.Store",
    ("schedule.ledger", "runs"): "store.Store",
    ("schedule.daemon", "job_ticks"): "schedule.ledger",
    ("schedule.sensors", "trigger_states"): "schedule.ledger",
    ("team.review", "notifications"): "notify.outbox",
    ("catalog.usage", "data_requests"): "catalog.requests",
    ("workers.queue", "runs"): "store.Store",
}


def _reaches() -> set[tuple[str, str]]:
    found = set()
    for path in sorted(SRC.rglob("*.py")):
        module = ".".join(path.relative_to(SRC).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "kiban.store.schema":
                found |= {(module, alias.name) for alias in node.names}
    return found


def test_every_schema_table_has_an_owner() -> None:
    tables = {name for name, value in vars(schema).items() if isinstance(value, sa.Table)}
    assert sorted(tables - set(OWNERS)) == []


def test_tables_are_reached_through_their_owner() -> None:
    around = {(m, t) for m, t in _reaches() if m not in OWNERS.get(t, set())}
    assert sorted(around - set(DEBT)) == []


def test_the_debt_only_shrinks() -> None:
    assert sorted(set(DEBT) - _reaches()) == []
