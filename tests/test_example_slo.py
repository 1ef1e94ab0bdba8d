"""The shop example's service-level story, end to end: generated data, generated history
(examples/shop/history.py), a real ``kiban run`` — then what kiban says about it."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from kiban.project import load_project
from kiban.slo.calendar import calendar_for
from kiban.store import Store
from kiban.store.schema import attempts, incident_events, incidents, runs, slo_evaluations

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "shop"
TZ = ZoneInfo("Asia/Tokyo")
TOLERANCE_S = 60


def ok(result: subprocess.CompletedProcess[str]) -> str:
    both = result.stdout + result.stderr
    assert result.returncode == 0, both
    assert "Traceback" not in both, both
    return result.stdout


def python(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=120,
                          check=False)


def module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("shop_history", path)
    assert spec is not None
    assert spec.loader is not None
    found = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = found  # its dataclasses look their module up while being defined
    spec.loader.exec_module(found)
    return found


def snapshot(root: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Everything history.py writes, without autoincrement ids of attempts."""
    store = Store(f"sqlite:///{root / '.kiban' / 'state.db'}")
    try:
        with store.engine.connect() as conn:
            return {
                "runs": [tuple(r) for r in conn.execute(sa.select(runs).order_by(runs.c.run_id))],
                "attempts": [tuple(r) for r in conn.execute(sa.select(*(c for c in attempts.c if c.name != "id"))
                                                            .order_by(attempts.c.run_id, attempts.c.asset,
                                                                      attempts.c.attempt))],
                "evaluations": [tuple(r) for r in conn.execute(sa.select(slo_evaluations).order_by(
                    slo_evaluations.c.usecase, slo_evaluations.c.due_date))],
                "incidents": [tuple(r) for r in conn.execute(sa.select(incidents).order_by(incidents.c.id))],
                "events": [tuple(r) for r in conn.execute(sa.select(incident_events).order_by(incident_events.c.id))],
            }
    finally:
        store.close()


def local(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC).astimezone(TZ)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, cli: Any) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("example_slo") / "shop"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("lake", ".kiban", "kiban.duckdb*", "__pycache__",
                                                                 "sources_data"))
    ok(python(root / "generate.py", "--scale", "0.01", "--out", root))
    first = json.loads(ok(python(root / "history.py", "--project", root, "--json")))
    before = snapshot(root)
    again = json.loads(ok(python(root / "history.py", "--project", root, "--json")))
    repeated = snapshot(root)
    run = cli("--project", root, "run")
    ok(run)
    project = load_project(root)
    calendar = calendar_for(project.config.calendar, project.config)
    slow, failed = date.fromisoformat(first["slow_night"]), date.fromisoformat(first["failed_night"])
    # the store managers' use case is the story; in a week of holidays it may not be due, then the every-day one is
    usecase = "morning_sales" if calendar.is_business_day(slow) and calendar.is_business_day(failed) \
        else "demand_forecast"
    return {"root": root, "first": first, "again": again, "before": before, "repeated": repeated, "run": run,
            "usecase": usecase, "slow": slow, "failed": failed, "project": project,
            "history": module(root / "history.py")}


def expected_lateness(shop: dict[str, Any], day: date, ready_at: Any) -> float:
    by = shop["project"].usecases[shop["usecase"]].config.need.deadline
    return (datetime.combine(day, ready_at, TZ) - datetime.combine(day, by, TZ)).total_seconds()


def test_history_tells_the_story_in_the_last_week(shop):
    today = date.fromisoformat(shop["first"]["today"])
    assert today - timedelta(days=6) <= shop["slow"] < shop["failed"] < today
    assert shop["first"]["runs"] >= 27  # a night per day, the repair run, tonight's only if it already ended


def test_exactly_two_late_days_with_the_encoded_lateness(shop):
    store = Store(shop["project"].state_url)
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(sa.select(slo_evaluations.c.due_date, slo_evaluations.c.verdict,
                                          slo_evaluations.c.lateness_s)
                                .where(slo_evaluations.c.usecase == shop["usecase"])).all()
    finally:
        store.close()
    verdicts = {day: (verdict, late) for day, verdict, late in rows}
    misses = {day: v for day, v in verdicts.items() if v[0] not in ("met", "pending")}  # pending: still ahead
    assert set(misses) == {shop["slow"], shop["failed"]}, misses
    assert len(verdicts) >= 10  # every due day of four weeks was judged
    history = shop["history"]
    for day, ready_at in ((shop["failed"], history.REPAIR_AT), (shop["slow"], history.SLOW_STEP_ENDS)):
        verdict, late = misses[day]
        assert verdict == "late"
        assert abs(late - expected_lateness(shop, day, ready_at)) < TOLERANCE_S, (day, late)


def test_slo_history_shows_the_two_late_days(shop, cli):
    out = ok(cli("--project", shop["root"], "slo", "history", shop["usecase"]))
    days = {line.split()[0]: line for line in out.splitlines() if re.match(r"\s*\d{4}-\d\d-\d\d\s+\d\d:\d\d", line)}
    assert len(days) >= 10, out
    not_met = sorted(day for day, line in days.items() if not re.search(r"\b(met|pending)\b", line))
    assert not_met == sorted([str(shop["slow"]), str(shop["failed"])]), out
    for day in not_met:
        assert re.search(r"\blate\b", days[day]), days[day]


def test_the_failed_night_failed_and_the_slow_night_did_not(shop):
    """In the store: the failed night has the failed attempt, skipped marts and a --resume repair; the
    slow night only a very slow order_lines."""
    history = shop["history"]
    store = Store(shop["project"].state_url)
    try:
        with store.engine.connect() as conn:
            found = conn.execute(sa.select(runs.c.run_id, runs.c.status, runs.c.options, runs.c.started_at,
                                           attempts.c.asset, attempts.c.status, attempts.c.error, attempts.c.seconds)
                                 .select_from(attempts.join(runs, runs.c.run_id == attempts.c.run_id))).all()
    finally:
        store.close()
    failed = [r for r in found if r[5] == "failed"]
    assert len(failed) == 1
    assert failed[0][4] == history.FAILED_STEP
    assert "No space left on device" in failed[0][6]
    assert local(failed[0][3]).date() == shop["failed"]
    skipped = {r[4] for r in found if r[0] == failed[0][0] and r[5] == "skipped"}
    from kiban.graph import build_graph

    # everything downstream of the failed step (the example's models grow: web, staffing, forecasts)
    assert skipped == build_graph(shop["project"]).downstream(history.FAILED_STEP)
    assert {"mart.customer_rfm", "mart.daily_sales", "mart.product_ranking"} <= skipped
    repair = [r for r in found if json.loads(r[2]).get("resume") and local(r[3]).date() == shop["failed"]]
    assert {r[4] for r in repair} == {history.FAILED_STEP, *skipped}
    assert all(r[5] == "success" for r in repair)
    slow = [r for r in found if r[4] == history.SLOW_STEP and local(r[3]).date() == shop["slow"]]
    assert len(slow) == 1
    assert slow[0][5] == "success"
    assert slow[0][7] > 6 * 3600


def test_generated_runs_are_labelled_and_the_real_run_is_not(shop):
    store = Store(shop["project"].state_url)
    try:
        rows = store.runs(shop["project"].name, limit=1000)
    finally:
        store.close()
    generated = [r for r in rows if r.options.get("generated_history") is True]
    real = [r for r in rows if "generated_history" not in r.options]
    assert len(generated) == shop["first"]["runs"]
    assert len(real) == 1
    assert real[0].started_at > max(r.ended_at for r in generated)


def events_of(root: Path, usecase: str, day: date) -> tuple[Any, list[tuple[str, str]]]:
    store = Store(f"sqlite:///{root / '.kiban' / 'state.db'}")
    try:
        with store.engine.connect() as conn:
            row = conn.execute(sa.select(incidents).where(incidents.c.usecase == usecase,
                                                          incidents.c.due_date == day)).first()
            assert row is not None, f"no incident for {usecase} {day}"
            events = conn.execute(sa.select(incident_events.c.kind, incident_events.c.message)
                                  .where(incident_events.c.incident_id == row.id)
                                  .order_by(incident_events.c.at, incident_events.c.id)).all()
    finally:
        store.close()
    return row, [(k, m) for k, m in events]


def test_incidents_record_failed_then_late_and_late(shop, cli):
    history = shop["history"]
    failed_row, failed_events = events_of(shop["root"], shop["usecase"], shop["failed"])
    slow_row, slow_events = events_of(shop["root"], shop["usecase"], shop["slow"])
    assert failed_row.workaround
    assert failed_row.workaround.startswith("kiban run")
    # a slow step still running has no command that helps: restarting it would start the chain again
    assert slow_row.workaround is None
    assert json.loads(slow_row.root_cause)["kind"] == "slow"
    for row, events in ((failed_row, failed_events), (slow_row, slow_events)):
        assert row.verdict == "late"
        assert row.kind == "missed"
        # the delivery closes the incident, saying what delivered it
        assert [k for k, _ in events[-2:]] == ["met_late", "repaired"], events
        assert row.status == "resolved"
    cause = f"{history.FAILED_STEP} failed"
    before_repair = [m for k, m in failed_events if k != "met_late"]
    assert any(cause in m and "No space left on device" in m for m in before_repair), failed_events
    assert any(k in ("failed", "incomplete") for k, _ in failed_events), failed_events  # the deadline passed
    assert any(k == "ack" for k, _ in failed_events)  # the on-call engineer
    assert not any(cause in m for _, m in slow_events), slow_events  # slow, nothing failed
    listed = ok(cli("--project", shop["root"], "incidents", "--all"))
    for day in (shop["failed"], shop["slow"]):
        assert any(shop["usecase"] in line and str(day) in line and "late" in line for line in listed.splitlines()), \
            listed
    shown = ok(cli("--project", shop["root"], "incidents", "show", failed_row.id))
    assert "workaround: kiban run" in shown, shown
    assert "No space left on device" in shown, shown


def test_the_failed_nights_incident_keeps_its_root_cause(shop):
    row, _ = events_of(shop["root"], shop["usecase"], shop["failed"])
    assert json.loads(row.root_cause).get("asset") == shop["history"].FAILED_STEP
    # rebuild what the use case misses (from the failed step on), never only the failed asset
    assert row.workaround is not None
    assert row.workaround.startswith("kiban run")
    mart = "daily_sales" if shop["usecase"] == "morning_sales" else "demand_forecast"
    assert row.workaround.endswith(f"+mart.{mart}")


def test_the_morning_report_lists_both_misses(shop, cli):
    path = shop["root"] / "report.md"
    ok(cli("--project", shop["root"], "report", "--format", "markdown", "-o", path))
    text = path.read_text(encoding="utf-8")
    misses = text.split("## Misses", 1)[1].split("\n## ", 1)[0]
    for day in (shop["failed"], shop["slow"]):
        assert re.search(rf"\| {shop['usecase']} \| {day} \| late \| (\d+ h )?\d+ min \|", misses), misses
    growing = [line for line in text.split("## Build times growing fastest", 1)[1].splitlines()
               if line.startswith("| ") and not line.startswith("| asset")]
    assert growing, text
    assert growing[0].startswith(f"| {shop['history'].GROWING} |"), text  # the trend history encodes


def test_generating_the_history_again_gives_the_same_history(shop):
    assert shop["again"]["replaced"] == shop["first"]["runs"]
    assert {k: v for k, v in shop["again"].items() if k != "replaced"} == \
        {k: v for k, v in shop["first"].items() if k != "replaced"}
    assert shop["repeated"] == shop["before"]


def test_generating_the_history_after_a_real_run_keeps_the_real_run(shop):
    root = shop["root"]
    after_run = snapshot(root)
    ok(python(root / "history.py", "--project", root, "--json"))
    now = snapshot(root)
    assert now["runs"] == after_run["runs"]
    assert now["attempts"] == after_run["attempts"]
    final = lambda s: [(i[2], i[3], i[4], i[5], i[6]) for i in s["incidents"]]  # noqa: E731 - use case, day, ...
    assert final(now) == final(after_run)


def test_the_shops_jobs_are_listed_with_next_runs_and_no_warning(shop, cli):
    listed = cli("--project", shop["root"], "jobs", "--json")
    rows = {r["job"]: r for r in json.loads(ok(listed))}
    assert set(rows) == {"nightly_stores", "nightly_forecast", "hourly_ranking", "partner_files"}
    assert rows["nightly_forecast"]["for"] == "demand_forecast"
    assert rows["nightly_forecast"]["latest_start"]
    assert rows["nightly_stores"]["for"] == "morning_sales"
    assert rows["nightly_stores"]["latest_start"]
    assert rows["nightly_stores"]["next_run"].endswith("T17:00:00Z")  # 02:00 in Tokyo
    assert rows["hourly_ranking"]["next_run"]
    assert rows["partner_files"]["sensors"] == ["landing:landing/partners:*.csv"]
    assert all(r["warning"] is None for r in rows.values())
    table = ok(cli("--project", shop["root"], "jobs"))
    assert "nightly_stores" in table
    assert "warning" not in table
