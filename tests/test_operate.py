"""One entry point around a run for every front end (kiban.operate): the data-quality gate keeps a bad version
unpublished, the breach watcher raises an at-risk incident while the run goes, and the use cases are judged
afterwards — the same through ``kiban run`` and through the web console's workaround."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from kiban.store import utcnow
from tests.conftest import write_files, write_parquet


def build(root: Path, local_hour: int = 12) -> tuple[Path, datetime, date]:
    """lake.orders → warehouse.orders (a blocking not_null check its new version fails) → mart.sales, read by a
    use case due two hours from now (so within the watcher's horizon, and not yet missed), in a timezone where it
    is ``local_hour`` o'clock now (23: the due time falls on the next local date). Returns the deadline (UTC)
    and its local date."""
    now = utcnow()
    offset = (local_hour - now.hour + 12) % 24 - 12  # hours east of UTC, -12 … +11
    zone = "UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"  # POSIX names: Etc/GMT-9 is nine hours east
    due = (now + timedelta(hours=2)).replace(second=0, microsecond=0)
    local_due = due + timedelta(hours=offset)
    write_files(root, {
        "kiban.yml": f"name: operate\ntimezone: {zone}\n",
        "models/warehouse/orders.sql": "select id, case when id = 3 then null else amount end as amount "
                                       "from lake.orders\n",
        "models/warehouse/orders.yml": "columns:\n  - name: amount\n    checks: [not_null]\n",
        "models/mart/sales.sql": "select sum(amount) as total from warehouse.orders\n",
        "usecases/noon.yml": ("description: The dashboard.\nowner: data-team\nconsumers: [{name: Planners}]\n"
                              "assets: [mart.sales]\n"
                              f"need: {{by: \"{local_due:%H:%M}\", on: every_day, calendar: none}}\n"),
    })
    write_parquet(root / "lake" / "orders" / "part-0.parquet", "select i as id, i * 10 as amount from range(5) t(i)")
    return root, due, local_due.date()


def outcome(root: Path, due: datetime) -> dict[str, Any]:
    """What the store and the warehouse say after the run."""
    from kiban.incidents import IncidentLog
    from kiban.project import load_project
    from kiban.slo.service import stored_verdicts
    from kiban.store import Store

    project = load_project(root)
    store = Store(project.state_url)
    try:
        (run,) = store.runs(project.name, 5)
        attempts = {a.asset: a for a in store.attempts(run.run_id)}
        log = IncidentLog(store, project.name)
        incidents = log.recent(include_resolved=True)
        raised = min(e.at for i in incidents for e in log.events(i.id))
        verdicts = stored_verdicts(store, project.name, "noon", utcnow().date() - timedelta(days=1))
    finally:
        store.close()
    con = duckdb.connect(str(root / "kiban.duckdb"), read_only=True)
    try:
        tables = {r[0] for r in con.execute("select table_schema || '.' || table_name "
                                            "from information_schema.tables").fetchall()}
    finally:
        con.close()
    return {"status": run.status, "ended": run.ended_at, "raised": raised, "due": due,
            "orders": attempts["warehouse.orders"], "sales": attempts["mart.sales"].status,
            "incidents": [(i.usecase, i.kind) for i in incidents], "verdicts": verdicts, "tables": tables}


def through_cli(root: Path, cli: Any) -> None:
    result = cli("--project", root, "run")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "not_null" in result.stdout  # the CLI still prints the run's checks and the use cases
    assert "noon" in result.stdout


def through_web(root: Path, _cli: Any) -> None:
    from fastapi.testclient import TestClient

    from kiban.web import create_app
    from tests.helpers.console import add_users, bearer

    tokens = add_users(root)
    with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
        answer = client.post("/api/v1/actions/run", json={"selection": ["+mart.sales"]},
                             headers=bearer(tokens["operator"]))
        assert answer.status_code == 202, answer.text
        job = client.app.state.jobs.wait(answer.json()["id"], 60)
        assert job.status == "failed"
        assert "warehouse.orders" in (job.error or "")


@pytest.mark.parametrize("local_hour", [12, 23], ids=["midday", "before-midnight"])
@pytest.mark.parametrize("front_end", [through_cli, through_web], ids=["cli", "web"])
def test_the_gate_the_watcher_and_the_verdicts_are_the_same_from_every_front_end(front_end, local_hour, tmp_path,
                                                                                    cli):
    root, due, due_date = build(tmp_path / "proj", local_hour)
    front_end(root, cli)
    seen = outcome(root, due)
    assert seen["status"] == "failed"
    # the gate: the check failed inside the publish, so warehouse.orders was never published, mart.sales skipped
    assert seen["orders"].status == "failed"
    assert "not_null" in (seen["orders"].error or "")
    assert "warehouse.orders" not in seen["tables"]
    assert seen["sales"] == "skipped"
    # the watcher: the input the use case needs failed, so it was at risk while the run went (not only when the
    # use cases were judged after it), well before its deadline
    assert seen["incidents"] == [("noon", "at_risk")]
    assert seen["raised"] <= seen["ended"] < seen["due"]
    # the check afterwards: the use case's due day is judged and stored (at risk: its input failed)
    assert seen["verdicts"] == [(due_date, "at_risk", None)]
