"""Each store table is reached only through the module that owns it (issue 25, "context passed down").

A module imports a table from ``kiban.store.schema`` only if it owns it; everyone else calls the owner. Raw SQL
counts too: a string literal (docstrings aside) that inserts into, updates or deletes from a store table, or
selects from or joins it, reaches that table as an import would (the standard library's hot paths write the store
that way, so they sit in the store layer: ``kiban.store.lite``). The reaches that still go around an owner are
listed in ``DEBT``, a list that may only shrink. (``run.backfill`` used to
count the scheduler's ``job_ticks`` itself; it asks ``store.ticks.work_waiting`` now.)"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import sqlalchemy as sa

import kiban
from kiban.store import schema

SRC = Path(kiban.__file__).parent
OWNERS: dict[str, set[str]] = {  # table → the modules that own it (write it, and answer the others' questions)
    # store.lite is the store without SQLAlchemy (stdlib sqlite3) for the hot paths: the no-op stamp (cli.quick)
    # records a run, its fresh attempts and empty loads; `kiban check` (checks.ledger) its results; store.Store and
    # store.asset_locks write a run's runs, attempts and locks through it on a SQLite file. It co-owns what it
    # writes; tests/test_noop_stamp.py, tests/test_check_ledger.py and tests/test_store_lite.py hold its rows to
    # the full path's.
    "runs": {"store.store", "store.lite"}, "attempts": {"store.store", "store.lite"},
    "fingerprint_code": {"store.store", "store.lite"},
    "locks": {"store.store", "store.asset_locks", "store.lite"},
    "metadata": {"store.store", "store.migrations.env"},
    "check_results": {"checks.history", "store.lite"}, "slo_evaluations": {"slo.service"},
    "incidents": {"incidents.log"}, "incident_events": {"incidents.log"}, "notifications": {"notify.outbox"},
    "scheduler_leases": {"schedule.leader"},
    # the scheduler writes its ticks; the layers below it (a backfill stepping aside) read them through store.ticks
    "job_ticks": {"schedule.ledger", "store.ticks"}, "trigger_states": {"schedule.ledger"},
    "backfills": {"store.backfills"}, "backfill_partitions": {"store.backfills"},
    "loads": {"collect.manifest", "store.lite"}, "load_files": {"collect.manifest"},
    "consumed_files": {"collect.manifest"},
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
    # the no-op stamp's identity of the store, read in one SQLite transaction without SQLAlchemy
    ("store.lite", "backfills"): "the backfilled partitions from store.backfills, stdlib-only",
    ("store.lite", "backfill_partitions"): "the same",
    ("store.lite", "column_profiles"): "whether profiles are in use, from catalog.profile, stdlib-only",
    ("store.lite", "load_files"): "a load's file count from collect.manifest, stdlib-only",
    ("store.lite", "consumed_files"): "the same",
    ("store.lite", "drift_events"): "the same",
}


TABLES = {value.name: name for name, value in vars(schema).items() if isinstance(value, sa.Table)}
WRITE = re.compile(r"\b(?:insert\s+(?:or\s+\w+\s+)?into|update|delete\s+from)\s+[\"`]?(\w+)", re.IGNORECASE)
READ = re.compile(r"\b(?:from|join)\s+[\"`]?(\w+)", re.IGNORECASE)
SELECT = re.compile(r"\bselect\b", re.IGNORECASE)


def sql_tables(text: str) -> set[str]:
    """The store tables (by their name in store.schema) a string of SQL writes, or reads in a select."""
    names = set(WRITE.findall(text))
    if SELECT.search(text):
        names |= set(READ.findall(text))
    return {TABLES[n] for n in names if n in TABLES}


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


@cache
def _trees() -> tuple[tuple[str, ast.Module], ...]:
    return tuple((".".join(path.relative_to(SRC).with_suffix("").parts), ast.parse(path.read_text(encoding="utf-8")))
                 for path in sorted(SRC.rglob("*.py")))


@cache
def _reaches() -> frozenset[tuple[str, str]]:
    found = set()
    for module, tree in _trees():
        migration = module.startswith("store.migrations.")  # its SQL creates and alters every table
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "kiban.store.schema":
                found |= {(module, alias.name) for alias in node.names}
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings \
                    and not migration:
                found |= {(module, table) for table in sql_tables(node.value)}
    return frozenset(found)


def test_every_schema_table_has_an_owner() -> None:
    tables = {name for name, value in vars(schema).items() if isinstance(value, sa.Table)}
    assert sorted(tables - set(OWNERS)) == []


def test_tables_are_reached_through_their_owner() -> None:
    around = {(m, t) for m, t in _reaches() if m not in OWNERS.get(t, set())}
    assert sorted(around - set(DEBT)) == []


def test_the_debt_only_shrinks() -> None:
    assert sorted(set(DEBT) - _reaches()) == []


def test_raw_sql_is_seen_as_a_reach() -> None:
    assert sql_tables("insert into runs (run_id) values (?)") == {"runs"}
    assert sql_tables("UPDATE attempts set status = ?") == {"attempts"}
    assert sql_tables("delete from check_results where id = ?") == {"check_results"}
    assert sql_tables("select count(*) from loads l join load_files f on f.load_id = l.load_id") == \
        {"loads", "load_files"}
    assert sql_tables("rows read from loads, then landed") == set()  # prose, not a select
    assert sql_tables("insert into lake.orders select * from staging") == set()  # not a store table
    assert {("store.lite", "runs"), ("store.lite", "check_results")} <= _reaches()


def test_raw_sql_writes_only_in_the_owners() -> None:
    """No module outside a table's owners writes it with raw SQL, debt or not."""
    writes = set()
    for module, tree in _trees():
        if module.startswith("store.migrations."):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                writes |= {(module, TABLES[t]) for t in WRITE.findall(node.value) if t in TABLES}
    assert sorted((m, t) for m, t in writes if m not in OWNERS.get(t, set())) == []
