"""The team pages' shop: an initiative's project with an on-call rota, run once, one user per role and an
incident (shared by the team and initiative-editing tests)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from tests.conftest import write_files, write_parquet
from tests.helpers.console import add_users
from tests.helpers.initiatives import BASE, LAKE, write_planted

ONCALL = """\
oncall:
  start: 2026-01-05
  people: [{name: Aiko}, {name: Ben}]
"""


@pytest.fixture(scope="module")
def team_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kiban.incidents import IncidentDraft, IncidentLog
    from kiban.project import load_project
    from kiban.run import RunOptions, run_project
    from kiban.store import Store

    root = tmp_path_factory.mktemp("webteam") / "shop"
    write_files(root, {"kiban.yml": f"name: test\ntimezone: Asia/Tokyo\n{ONCALL}", **BASE})
    for table, sql in LAKE.items():
        write_parquet(root / "lake" / table / "part-0.parquet", sql)
    write_planted(root)
    project = load_project(root)
    assert run_project(project, RunOptions()).status == "success"
    add_users(root)
    store = Store(project.state_url)
    IncidentLog(store, "test").record(IncidentDraft(
        "stocking", date(2026, 11, 30), "missed", "failed", "not ready by 06:00",
        root_cause={"asset": "mart.daily_sales", "kind": "failed", "reason": "Binder Error"},
        impact={"consumers": [{"name": "Stocking team", "team": "supply"}]}))
    store.close()
    return root
