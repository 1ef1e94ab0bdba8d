"""What a model's result depends on beyond its SQL and its tables is part of its fingerprint — and is used as is.

Each case served stale data as fresh (or failed every later run) before wave 10:

- the project's ``timezone:`` (set on every engine session) changes what ``cast(t as date)`` and ``hour(t)`` of a
  timestamp with time zone give, but was in no fingerprint: a changed zone left every table fresh;
- a Python model's helper modules (``import helpers`` next to it) are its code, but only its own file was
  fingerprinted, and a process that had imported a helper kept serving its old version;
- a blocking ``sql`` check may read other tables: it was neither ordered after them in a run nor judged again
  when they changed; a project macro called by a check was not part of the check either;
- on PostgreSQL a model materialized as a view over a table model blocked every later publish of that table
  ("views outside kiban depend on …"), so the table stayed old, run after run;
- a model reading ``current_date`` (or ``now()``, ``random()``) was fresh the next day, serving yesterday's
  "yesterday".
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest

from kiban import operate
from kiban.errors import ProjectError
from kiban.graph import build_graph
from kiban.project import load_project
from kiban.run import RunOptions, inputs
from tests.conftest import write_parquet


def run(root: Path) -> dict[str, str]:
    result = operate.run(load_project(root), RunOptions()).result
    statuses = {k: "fresh" for k in result.plan.fresh}
    statuses.update({k: str(o.status) for k, o in result.outcomes.items()})
    return statuses


def rows(root: Path, table: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        return sorted(con.execute(f"select * from {table}").fetchall())
    finally:
        con.close()


AT = "timezone('UTC', timestamp '2024-01-01 20:00')"  # 20:00 UTC: 05:00 the next day in Tokyo


def test_a_changed_time_zone_rebuilds_what_it_changes(make_project: Callable[..., Path]) -> None:
    root = make_project({"kiban.yml": "name: tz\ntimezone: UTC\n",
                         "models/warehouse/day.sql": f"select cast({AT} as date) as d, hour({AT}) as h",
                         "models/mart/hours.sql": "select sum(h) as h from warehouse.day"})
    assert run(root) == {"warehouse.day": "success", "mart.hours": "success"}
    assert rows(root, "warehouse.day") == [(date(2024, 1, 1), 20)]
    (root / "kiban.yml").write_text("name: tz\ntimezone: Asia/Tokyo\n")
    assert run(root) == {"warehouse.day": "success", "mart.hours": "success"}
    assert rows(root, "warehouse.day") == [(date(2024, 1, 2), 5)]
    assert rows(root, "mart.hours") == [(5,)]
    assert run(root) == {"warehouse.day": "fresh", "mart.hours": "fresh"}


def test_the_default_zone_adds_nothing_to_a_fingerprint(make_project: Callable[..., Path]) -> None:
    """Projects in UTC (the default) keep their fingerprints: upgrading rebuilds nothing there."""
    root = make_project({"kiban.yml": "name: tz\n", "models/warehouse/a.sql": "select 1 as x"})
    utc = build_graph(load_project(root)).sql_hashes["warehouse.a"]
    (root / "kiban.yml").write_text("name: tz\ntimezone: UTC\n")
    assert build_graph(load_project(root)).sql_hashes["warehouse.a"] == utc
    (root / "kiban.yml").write_text("name: tz\ntimezone: Asia/Tokyo\n")
    assert build_graph(load_project(root)).sql_hashes["warehouse.a"] != utc


MODEL = '''import kiban
import pyarrow as pa

from helpers import factor


@kiban.asset
def scaled(lake_src: pa.Table) -> pa.Table:
    import helpers

    return pa.table({"v": [v * factor() + helpers.OFFSET for v in lake_src["v"].to_pylist()]})
'''


def test_a_changed_helper_module_rebuilds_the_python_model_in_the_same_process(
        make_project: Callable[..., Path]) -> None:
    root = make_project({"kiban.yml": "name: py\n", "models/warehouse/scaled.py": MODEL,
                         "models/warehouse/helpers.py": "from consts import BASE\nOFFSET = 0\n\n\n"
                                                        "def factor():\n    return BASE\n",
                         "models/warehouse/consts.py": "BASE = 2\n"},
                        lake={"src": "select 1 as v union all select 2"})
    assert run(root) == {"warehouse.scaled": "success"}
    assert rows(root, "warehouse.scaled") == [(2,), (4,)]
    (root / "models/warehouse/consts.py").write_text("BASE = 10\n")  # a helper of the helper
    assert run(root) == {"warehouse.scaled": "success"}
    assert rows(root, "warehouse.scaled") == [(10,), (20,)]
    helpers = (root / "models/warehouse/helpers.py").read_text()
    (root / "models/warehouse/helpers.py").write_text(helpers.replace("OFFSET = 0", "OFFSET = 1"))
    assert run(root) == {"warehouse.scaled": "success"}
    assert rows(root, "warehouse.scaled") == [(11,), (21,)]
    assert run(root) == {"warehouse.scaled": "fresh"}
    (root / "models/warehouse/notes.py").write_text("UNUSED = 1\n")  # a module it does not import: no rebuild
    assert run(root) == {"warehouse.scaled": "fresh"}


def test_two_folders_helpers_of_one_name_are_refused(make_project: Callable[..., Path]) -> None:
    """A process imports ``helpers`` once: models/mart's model would run models/warehouse's ``helpers``."""
    root = make_project({"kiban.yml": "name: py\n",
                         "models/warehouse/scaled.py": MODEL, "models/mart/scaled_mart.py":
                             MODEL.replace("def scaled(", "def scaled_mart("),
                         "models/warehouse/helpers.py": "OFFSET = 0\n\n\ndef factor():\n    return 2\n",
                         "models/mart/helpers.py": "OFFSET = 100\n\n\ndef factor():\n    return 3\n"},
                        lake={"src": "select 1 as v"})
    with pytest.raises(ProjectError, match="another model imports helpers from"):
        build_graph(load_project(root))


CHECKED = {
    "models/warehouse/allowed.sql": "select a from lake.allowed",
    "models/warehouse/m.sql": "select a from lake.src",
    "models/warehouse/m.yml": "checks:\n  - sql: select * from this where a not in (select a from warehouse.allowed)\n",
}


def test_a_sql_check_reading_another_model_waits_for_it_and_judges_again_when_it_changes(
        make_project: Callable[..., Path]) -> None:
    root = make_project({"kiban.yml": "name: chk\nthreads: 8\n", **CHECKED},
                        lake={"src": "select 1 as a", "allowed": "select 1 as a"})
    assert run(root) == {"warehouse.allowed": "success", "warehouse.m": "success"}  # not racing its build
    write_parquet(root / "lake/allowed/part-0.parquet", "select 2 as a")
    statuses = run(root)
    assert statuses == {"warehouse.allowed": "success", "warehouse.m": "failed"}  # judged again: 1 is not allowed
    write_parquet(root / "lake/allowed/part-0.parquet", "select 1 as a union all select 2")
    assert run(root) == {"warehouse.allowed": "success", "warehouse.m": "success"}
    assert run(root) == {"warehouse.allowed": "fresh", "warehouse.m": "fresh"}


def test_a_macro_a_blocking_check_calls_is_part_of_the_check(make_project: Callable[..., Path]) -> None:
    root = make_project({"kiban.yml": "name: chk\n", "macros/limits.sql": "create macro most() as 10;\n",
                         "models/warehouse/m.sql": "select a from lake.src",
                         "models/warehouse/m.yml": "checks:\n  - expression: a <= most()\n"},
                        lake={"src": "select 5 as a"})
    assert run(root) == {"warehouse.m": "success"}
    (root / "macros/limits.sql").write_text("create macro most() as 3;\n")
    assert run(root) == {"warehouse.m": "failed"}  # the same table, judged by the stricter check


def test_a_view_over_a_table_on_postgres_does_not_block_the_table_s_next_publish(
        make_project: Callable[..., Path], postgres_url: str) -> None:
    root = make_project({"kiban.yml": f"name: pgv\ntimezone: UTC\nwarehouse: {postgres_url}\n",
                         "models/warehouse/t.sql": "select a, a * 2 as b from lake.src",
                         "models/warehouse/v.sql": "select a, b + 1 as c from warehouse.t",
                         "models/warehouse/v.yml": "materialized: view\n",
                         "models/warehouse/v2.sql": "select c from warehouse.v",  # a view over the view
                         "models/warehouse/v2.yml": "materialized: view\n",
                         "models/mart/m.sql": "select sum(c) as s from warehouse.v2"},
                        lake={"src": "select 1 as a"})

    def pg(query: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(postgres_url) as conn:
            return sorted(conn.execute(query).fetchall())

    assert set(run(root).values()) == {"success"}
    (root / "models/warehouse/t.sql").write_text("select a, a * 3 as b from lake.src")
    assert set(run(root).values()) == {"success"}
    assert pg("select * from warehouse.v2") == [(4,)]
    assert pg("select * from mart.m") == [(4,)]
    write_parquet(root / "lake/src/part-0.parquet", "select 5 as a")
    assert set(run(root).values()) == {"success"}
    assert pg("select * from mart.m") == [(16,)]
    assert set(run(root).values()) == {"fresh"}
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # someone else's view still stops it, saying so
        conn.execute("create view mart.theirs as select * from warehouse.t")
    (root / "models/warehouse/t.sql").write_text("select a, a * 4 as b from lake.src")
    result = operate.run(load_project(root), RunOptions()).result
    assert "views outside kiban depend on warehouse.t" in (result.outcomes["warehouse.t"].error or "")
    assert pg("select * from warehouse.v2") == [(16,)]  # the old version, whole


def test_a_model_reading_the_clock_is_as_fresh_as_what_it_reads(make_project: Callable[..., Path],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``current_date`` gives another value tomorrow, ``now()`` and ``random()`` at every run: a model reading
    them was fresh forever (yesterday's "yesterday"). Today's date is now an input (in the project's zone), the
    time and chance are as new as a URL's file (rebuilt every run); a macro reading them counts for its callers."""
    root = make_project({"kiban.yml": "name: clock\ntimezone: Asia/Tokyo\n",
                         "macros/stamp.sql": "create macro stamped() as now();\n",
                         "models/warehouse/yesterday.sql": "select a from lake.src where d = current_date - 1",
                         "models/warehouse/today.sql": "select today() as d",
                         "models/warehouse/stamped.sql": "select a, stamped() as at from lake.src",
                         "models/warehouse/sampled.sql": "select a from lake.src where random() < 2",
                         "models/warehouse/plain.sql": "select a from lake.src"},
                        lake={"src": "select 1 as a, current_date - 1 as d"})
    assert set(run(root).values()) == {"success"}
    assert run(root) == {"warehouse.yesterday": "fresh", "warehouse.today": "fresh", "warehouse.plain": "fresh",
                         "warehouse.stamped": "success", "warehouse.sampled": "success"}

    class Tomorrow(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.now(tz) + timedelta(days=1)

    monkeypatch.setattr(inputs, "datetime", Tomorrow)
    statuses = run(root)
    assert statuses["warehouse.yesterday"] == statuses["warehouse.today"] == "success"
    assert statuses["warehouse.plain"] == "fresh"


def test_a_view_over_a_lake_table_on_postgres_does_not_block_a_reload_that_changes_its_types(
        make_project: Callable[..., Path], postgres_url: str) -> None:
    root = make_project({"kiban.yml": f"name: pgl\ntimezone: UTC\nwarehouse: {postgres_url}\n",
                         "models/warehouse/v.sql": "select cast(a as varchar) as a from lake.src",
                         "models/warehouse/v.yml": "materialized: view\n",
                         "models/mart/m.sql": "select a from warehouse.v"},
                        lake={"src": "select 1 as a"})
    assert set(run(root).values()) == {"success"}
    write_parquet(root / "lake/src/part-0.parquet", "select 'x' as a")  # the column's type changed
    assert set(run(root).values()) == {"success"}
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("select a from mart.m").fetchall() == [("x",)]
        assert conn.execute("select a from warehouse.v").fetchall() == [("x",)]
