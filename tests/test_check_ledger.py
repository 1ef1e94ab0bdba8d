"""``kiban check`` on a SQLite store at the newest revision keeps its results with sqlite3 (kiban.checks.ledger),
without importing SQLAlchemy: the rows must be those ``checks.history`` writes, read back the same by every
reader, and anything the ledger cannot speak for (an older store, another store) goes through the store."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from kiban.checks.evaluate import CheckResult
from kiban.checks.history import observations, of_run, record
from kiban.checks.ledger import CheckLedger, head_revision
from kiban.checks.on_demand import check_published
from kiban.project import load_project
from kiban.run import RunOptions, run_project
from kiban.store import Store, schema
from kiban.store.store import HEAD_REVISION

SIDECAR = """columns:
  - name: id
    checks: [not_null, unique]
  - name: email
    checks: [{pattern: email, severity: warn, samples: 3}]
checks:
  - row_count: {min: 1}
  - volume: {}
"""


def _result(name: str, observed: dict | None, samples: list | None = None) -> CheckResult:
    return CheckResult(asset="warehouse.t", name=name, kind="volume", severity="warn", status="fail", failures=2,
                       detail="d" * 5000, rows=10, observed=observed, samples=samples)


def test_the_newest_migration_is_the_store_s_head() -> None:
    assert head_revision() == HEAD_REVISION


def test_the_ledger_writes_what_the_store_writes(project_dir) -> None:
    root = project_dir({"models/warehouse/t.sql": "select 1 as id"})
    project = load_project(root)
    run_project(project, RunOptions())  # makes the store at the newest revision
    at = datetime(2026, 12, 7, 9, 30, 1, 250)
    results = [_result("a", {"rows": 10, "sum": 1.5}, [{"email": "ü@x"}]), _result("b", None)]
    store = Store(project.state_url)
    ledger = CheckLedger.open(project.state_url)
    assert ledger is not None
    try:
        record(store, "p", "check-1", "f" * 64, results, checked_at=at)
        ledger.record("p", "check-2", "f" * 64, results, at)
        conn = sqlite3.connect(root / ".kiban" / "state.db")
        cur = conn.execute("select * from check_results order by id")  # every column: a new one must be filled
        rows = cur.fetchall()  # by both writers (kiban.store.lite's SQL and checks.history's), or this fails
        columns = [d[0] for d in cur.description]
        conn.close()
        assert set(columns) == {c.name for c in schema.check_results.columns}
        assert columns[:2] == ["id", "run_id"]
        assert [r[2:] for r in rows[:2]] == [r[2:] for r in rows[2:]]  # all but id and run id
        assert [r.__dict__ | {"run_id": None} for r in of_run(store, "check-1")] == \
               [r.__dict__ | {"run_id": None} for r in of_run(store, "check-2")]
        assert ledger.of_run("check-1") == of_run(store, "check-1")  # `kiban run`'s summary reads it this way
        tz = ZoneInfo("Asia/Tokyo")
        assert ledger.observations("p", "warehouse.t", "a", tz) == observations(store, "p", "warehouse.t", "a", tz)
        assert ledger.observations("p", "warehouse.t", "a", tz) == [(datetime(2026, 12, 7).date(),
                                                                      {"rows": 10, "sum": 1.5})]
    finally:
        ledger.close()
        store.close()


def test_an_older_or_missing_store_is_left_to_the_store(project_dir) -> None:
    root = project_dir({"models/warehouse/t.sql": "select 1 as id"})
    url = load_project(root).state_url
    assert CheckLedger.open(url) is None  # no store yet: not created here
    assert not (root / ".kiban" / "state.db").exists()
    run_project(load_project(root), RunOptions())
    conn = sqlite3.connect(root / ".kiban" / "state.db")
    with conn:
        conn.execute("update alembic_version set version_num = '0001'")
    conn.close()
    assert CheckLedger.open(url) is None
    assert CheckLedger.open("postgresql://nobody@127.0.0.1:1/none") is None


def test_kiban_check_records_through_the_ledger_without_sqlalchemy(project_dir) -> None:
    root = project_dir({"models/warehouse/t.sql": "select range as id, 'x' || range || '@mail.example.com' as email "
                                                  "from range(20)",
                        "models/warehouse/t.yml": SIDECAR})
    run_project(load_project(root), RunOptions())
    probe = ("import sys\nfrom kiban.cli import main\nsys.argv = ['kiban', '--project', sys.argv[1], 'check']\n"
             "try:\n    main()\nfinally:\n    print('SQLALCHEMY', 'sqlalchemy' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", probe, str(root)], capture_output=True, text=True, check=False,
                          env={"PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src"), "COLUMNS": "200",
                               "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert "SQLALCHEMY False" in done.stdout
    assert "5 checks: 5 passed" in done.stdout
    report = check_published(load_project(root), now=datetime.now(UTC))  # the volume check reads its history
    volume = next(r for r in report.results if r.kind == "volume")
    store = Store(load_project(root).state_url)
    try:
        history = observations(store, "test", "warehouse.t", volume.name, ZoneInfo("UTC"))
    finally:
        store.close()
    assert history
    assert json.dumps(history[-1][1])  # both evaluations recorded what they measured
