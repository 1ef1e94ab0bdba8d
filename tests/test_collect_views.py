"""The lake views of collected tables show committed loads only — in `kiban check` and `kiban backfill` too,
not just in `kiban run` — and DuckDB sessions of collection read naive timestamps as UTC whatever the machine's
time zone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb

from kiban.checks.on_demand import check_published
from kiban.collect.load import load_table
from kiban.collect.manifest import Manifests
from kiban.project import load_project
from kiban.store import Store

SOURCE = """type: files
settle: 0s
tables:
  products:
    path: data/products_*.csv
    checks:
      - row_count: {min: 1, max: 3}
"""


def collected(make_project: Any) -> tuple[Path, Any, Store]:
    root = make_project({"sources/shop.yml": SOURCE,
                         "data/products_1.csv": "id,name\n1,apple\n2,pear\n3,fig\n"})
    project = load_project(root)
    store = Store(project.state_url)
    load_table(project, "shop", "products", store)
    return root, project, store


def plant_leftover(project: Any, store: Store) -> Path:
    """What a load killed after writing its file (before its manifest committed) leaves in the lake."""
    state = Manifests(store).state(project.name, "lake.shop_products")
    assert state is not None
    assert len(state.files) == 1
    committed = project.lake_dir / state.files[0]
    leftover = committed.with_name("20991231T000000000-dead00.parquet")
    shutil.copy(committed, leftover)
    return leftover


def test_kiban_check_sees_only_committed_loads_of_a_collected_table(make_project: Any) -> None:
    root, project, store = collected(make_project)
    plant_leftover(project, store)
    report = check_published(load_project(root))  # a fresh warehouse: no run has made the views yet
    [result] = [r for r in report.results if r.kind == "row_count"]
    assert result.status == "pass", result.detail  # 3 rows, not the 6 of committed + leftover files


def test_kiban_backfill_sees_the_loads_committed_since_the_last_run(make_project: Any) -> None:
    from kiban.run import RunOptions, run_project
    from kiban.run.backfill import BackfillOptions, run_backfill

    source = ("type: files\nsettle: 0s\ntables:\n  sales:\n    path: data/sales_*.csv\n"
              "    columns:\n      - {name: day, type: DATE}\n      - {name: amount, type: INTEGER}\n")
    root = make_project({"sources/shop.yml": source, "data/sales_1.csv": "day,amount\n2024-01-01,10\n",
                         "models/warehouse/daily.sql": "select day, sum(amount) as total from lake.shop_sales "
                                                       "group by all",
                         "models/warehouse/daily.yml": "materialized: incremental\ntime_column: day\nlookback: 0\n"})
    assert run_project(load_project(root), RunOptions()).status == "success"  # collects, then builds
    (root / "data/sales_2.csv").write_text("day,amount\n2024-01-01,5\n")
    project = load_project(root)
    load_table(project, "shop", "sales", Store(project.state_url))  # committed after the run
    result = run_backfill(load_project(root), BackfillOptions(select=("warehouse.daily",), start="2024-01-01",
                                                              end="2024-01-01"))
    assert result.status == "success", result.failed
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        assert con.execute("select total from warehouse.daily").fetchall() == [(15,)]  # both loads
    finally:
        con.close()


def test_declared_timestamptz_is_utc_whatever_the_machine_time_zone(make_project: Any) -> None:
    root = make_project({"sources/shop.yml": "type: files\nsettle: 0s\ntables:\n  events:\n    path: data/events.csv\n"
                                             "    columns:\n      - {name: at, type: TIMESTAMPTZ}\n",
                         "data/events.csv": "id,at\n1,2024-01-01 00:00:00\n"})
    script = ("import sys; from kiban.project import load_project; from kiban.store import Store; "
              "from kiban.collect.load import load_table; p = load_project(sys.argv[1]); "
              "load_table(p, 'shop', 'events', Store(p.state_url))")
    done = subprocess.run([sys.executable, "-c", script, str(root)], env={**os.environ, "TZ": "Asia/Tokyo"},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    [file] = [p for p in (root / "lake").rglob("*.parquet") if "_quarantine" not in p.parts]
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    at = con.execute("select strftime(\"at\", '%Y-%m-%d %H:%M:%S%z') from read_parquet(?)", [str(file)]).fetchone()
    assert at == ("2024-01-01 00:00:00+00",)  # not 2023-12-31 15:00 UTC (midnight in Tokyo)
