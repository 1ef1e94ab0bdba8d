"""Two projects sharing one state store (PostgreSQL for a team, or one SQLite file) may name their use cases
alike. Each project's stored verdicts, history and incidents are its own: one project's nightly failure is never
the other's verdict, and judging one never replaces or deletes the other's rows. (The key of ``slo_evaluations``
was (usecase, due_date) before migration 0020: the later project's verdict silently replaced the earlier's.)"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from kiban.graph import build_graph
from kiban.incidents import IncidentLog
from kiban.project import load_project
from kiban.slo.evaluate import Verdict
from kiban.slo.service import check, store_verdicts, stored_verdicts
from kiban.store import Store
from kiban.store.schema import slo_evaluations
from tests.conftest import write_files, write_parquet
from tests.helpers.migrations import keys_of, migrate
from tests.helpers.slo import FIRST, LAKE, MODELS, utc_deadline
from tests.slo_history import add_run

NAMES = ("alpha", "beta")


def _project(root: Path, name: str):
    write_files(root, {"kiban.yml": f"name: {name}\ntimezone: Asia/Tokyo\n", **MODELS})
    for table, sql in LAKE.items():
        write_parquet(root / "lake" / table / "part-0.parquet", sql)
    project = load_project(root)
    return project, build_graph(project)


def _night(store: Store, project: str, day: date, fail: bool, tag: str) -> None:
    start = utc_deadline(day) - timedelta(hours=6, minutes=30)
    add_run(store, project, f"{project}-{day}-{tag}", start, [
        ("warehouse.orders", "failed" if fail else "success", 300, None, "disk full" if fail else None),
        ("mart.daily_sales", "skipped" if fail else "success", 600, None if fail else day - timedelta(days=1),
         "upstream failed" if fail else None)])


def _opened(url: str) -> Store:
    store = Store(url)
    for name in NAMES:
        add_run(store, name, f"{name}-first", FIRST, [("warehouse.orders", "success", 5, None, None)])
    return store


def _judged(store: Store, name: str) -> tuple[list[tuple[date, str, float | None]], set[tuple[date, str]]]:
    incidents = IncidentLog(store, name).recent(include_resolved=True, limit=100)
    return stored_verdicts(store, name, "morning", date(2026, 11, 1)), {(i.due_date, i.status) for i in incidents}


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_url(request, tmp_path):
    sqlite = f"sqlite:///{tmp_path / 'state.db'}"
    return sqlite if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def test_two_projects_with_one_use_case_name_are_judged_as_if_each_had_the_store_alone(shared_url, tmp_path):
    """The oracle: each project judged in a store of its own, fed the same nights. Sharing must change nothing."""
    projects = {name: _project(tmp_path / name, name) for name in NAMES}
    shared = _opened(shared_url)
    alone = {name: _opened(f"sqlite:///{tmp_path / f'{name}-alone.db'}") for name in NAMES}
    rng = random.Random(20261208)
    try:
        for offset in range(10):
            day = date(2026, 11, 3) + timedelta(days=offset)
            order = list(NAMES)
            rng.shuffle(order)  # who is judged last on a day must not matter
            for name in order:
                fail = rng.random() < 0.5
                for store in (shared, alone[name]):
                    _night(store, name, day, fail, "n")
            now = utc_deadline(day) + timedelta(hours=rng.choice([-2, 1, 5]))
            for name in order:
                project, graph = projects[name]
                check(project, graph, shared, now, notify=False)
                check(project, graph, alone[name], now, notify=False)
            for name in NAMES:
                assert _judged(shared, name) == _judged(alone[name], name), (name, day)
        with shared.engine.connect() as conn:
            per_project = dict(conn.execute(sa.select(slo_evaluations.c.project, sa.func.count())
                                            .group_by(slo_evaluations.c.project)).all())
        assert per_project["alpha"] == per_project["beta"] >= 10
    finally:
        for store in (shared, *alone.values()):
            store.close()


def test_a_store_judged_before_0020_keeps_its_verdicts_under_their_project(shared_url):
    url = shared_url.replace("postgresql://", "postgresql+psycopg://")
    migrate(url, "0019")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "insert into slo_evaluations (usecase, due_date, project, deadline, verdict, evidence, evaluated_at) "
            "values ('morning', '2026-11-10', 'alpha', '2026-11-09 23:30:00', 'late', '{}', '2026-11-10 01:00:00')"))
    engine.dispose()
    store = Store(shared_url)  # opening it migrates to the head
    try:
        assert stored_verdicts(store, "alpha", "morning", date(2026, 11, 1)) == [(date(2026, 11, 10), "late", None)]
        store_verdicts(store, "beta", [Verdict("morning", date(2026, 11, 10), datetime(2026, 11, 9, 23, 30), "met")],
                       datetime(2026, 11, 10, 2))
        assert stored_verdicts(store, "beta", "morning", date(2026, 11, 1)) == [(date(2026, 11, 10), "met", None)]
        assert stored_verdicts(store, "alpha", "morning", date(2026, 11, 1))[0][1] == "late"
    finally:
        store.close()
    assert keys_of(url)["slo_evaluations"][0] == ("project", "usecase", "due_date")
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # a downgrade is possible once no two projects share a use case's day
        conn.execute(sa.text("delete from slo_evaluations where project = 'beta'"))
    engine.dispose()
    migrate(url, "0019", down=True)
    assert keys_of(url)["slo_evaluations"][0] == ("usecase", "due_date")
