"""A use case on mart.daily_sales due at 08:30 JST, and nightly runs written straight into the store's history
(shared by the SLO and team tests)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from kiban.graph import build_graph
from kiban.project import load_project
from kiban.store import Store
from tests.slo_history import add_run

MODELS = {
    "models/warehouse/orders.sql": "select * from lake.orders",
    "models/mart/daily_sales.sql": "select order_date, count(*) as n from warehouse.orders group by 1",
    "models/mart/daily_sales.yml": "time_column: order_date\n",
    "models/mart/other.sql": "select count(*) as n from warehouse.orders",
    "usecases/morning.yml": """\
description: Store managers read yesterday's sales before the meeting.
owner: data-team
consumers:
  - name: Store managers
    team: stores
    contact: [email:stores@example.com]
assets: [daily_sales]
need: {by: "08:30", on: every_day, calendar: none, data_through: yesterday}
target: {attainment: 0.9, window_days: 10}
""",
}
LAKE = {"orders": "select i as order_id, date '2026-11-01' + (i % 20)::int as order_date from range(100) t(i)"}
FIRST = datetime(2026, 11, 1, 12, 0)  # the project's first run: everything before is not judged


def utc_deadline(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 8, 30) - timedelta(hours=9)


def nightly(store, day: date, offset_s: float, *, watermark: date | None = None, fail: bool = False,
            run_id: str | None = None) -> datetime:
    """A run that starts at 02:00 JST on ``day`` and publishes daily_sales ``offset_s`` later."""
    start = utc_deadline(day) - timedelta(hours=6, minutes=30)
    steps = [("warehouse.orders", "failed" if fail else "success", offset_s / 2, None,
              "IO Error: No space left on device" if fail else None),
             ("mart.daily_sales", "skipped" if fail else "success", offset_s,
              None if fail else (watermark or day - timedelta(days=1)),
              "upstream warehouse.orders failed" if fail else None)]
    return add_run(store, "test", run_id or f"run-{day}-{offset_s}", start, steps)


@contextmanager
def opened(root: Path) -> Iterator[tuple[Any, Any, Store]]:
    """The project at ``root``, its graph and its store, with one run before everything judged (``FIRST``)."""
    project = load_project(root)
    graph = build_graph(project)
    store = Store(project.state_url)
    add_run(store, project.name, "first", FIRST, [("warehouse.orders", "success", 5, None, None)])
    try:
        yield project, graph, store
    finally:
        store.close()
