"""Breach prediction: at risk before the deadline when a run is slow, silent when it is normal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import ClassVar
from zoneinfo import ZoneInfo

import pytest

from kiban.graph import build_graph
from kiban.incidents import IncidentLog
from kiban.project import load_project
from kiban.run import RunOptions, run_project
from kiban.slo.predict import Durations, Predictor, RunState
from kiban.slo.watch import BreachWatcher
from kiban.store import Store, utcnow
from tests.helpers.timing import slowdown

# Slow on every machine: a step that takes 8 s of real time however fast the machine is (the run starts 6 s before
# the deadline, so the forecast must turn at risk while the step runs past its 2 s estimate — before the deadline).
# On a loaded machine both are scaled by its measured slowdown: the run's start (loading the project, starting the
# step) takes longer, and a fixed 6 s of room ran out before the step had even started.
SLOW_STEP = """\
import time

import pyarrow as pa

import kiban


@kiban.asset
def step() -> pa.Table:
    time.sleep({seconds})
    return pa.table({{"s": [1]}})
"""


def room_factor() -> float:
    """The machine's slowdown, at most 10 (a minute of room): past that the run's start is not what is slow."""
    return min(slowdown(), 10.0)


def slow(seconds: float) -> dict[str, str]:
    return {"models/warehouse/step.py": SLOW_STEP.format(seconds=round(seconds, 1))}


FAST = {"models/warehouse/step.sql": "select 1 as s"}
BROKEN = {"models/warehouse/step.sql": "select cast('x' as int) as s"}


def project_files(step: dict[str, str], hook_port: int) -> dict[str, str]:
    return {
        **step,
        "models/warehouse/step.yml": "expected_duration: 2s\ntimeout: 300\n",  # slow on a busy machine, never cut
        "models/mart/out.sql": "select * from warehouse.step",
        "models/mart/out.yml": "expected_duration: 1s\n",  # shorter: the step is to blame
        "usecases/noon.yml": """\
description: The noon dashboard.
owner: data-team
owner_notify: [hook]
consumers: [{name: Planners, notify: [hook]}]
assets: [mart.out]
need: {by: "12:00", on: every_day, calendar: none}
""",
    }


@pytest.fixture
def hook(http_hook):
    port, received = http_hook
    Hook.received = received
    return port


class Hook:
    received: ClassVar[list[dict]] = []


def virtual_clock(seconds_before_deadline: float):
    """A clock that starts ``seconds_before_deadline`` before the next 12:00 in Tokyo and runs in real time."""
    tokyo = ZoneInfo("Asia/Tokyo")
    local = datetime.now(tokyo)
    noon = local.replace(hour=12, minute=0, second=0, microsecond=0)
    if noon <= local + timedelta(seconds=seconds_before_deadline + 60):
        noon += timedelta(days=1)
    deadline = noon.astimezone(UTC).replace(tzinfo=None)
    shift = deadline - timedelta(seconds=seconds_before_deadline) - utcnow()
    return (lambda: utcnow() + shift), deadline


def watch_run(project_dir, step: dict[str, str], port: int, room: float = 6.0):
    root = project_dir({**project_files(step, port)},
                       config=f"channels:\n  hook: {{type: webhook, url: 'http://127.0.0.1:{port}/hook', "
                              "min_interval: 0}\n")
    project = load_project(root)
    store = Store(project.state_url)
    clock, deadline = virtual_clock(room)  # room for the run's start (scaled by the callers on a loaded machine)
    watcher = BreachWatcher(project, build_graph(project), store, clock=clock)
    result = run_project(project, RunOptions(), [watcher])
    watcher.close()
    return project, store, watcher, result, deadline, clock


def test_a_slow_run_turns_the_use_case_at_risk_before_the_deadline(project_dir, hook):
    factor = room_factor()
    # the step outlives the moment the forecast turns (a step past its estimate needs half its elapsed time again,
    # so about room / 1.5 into it) by 4 s: 8 s on an idle machine, as before
    project, store, watcher, result, deadline, _clock = watch_run(project_dir, slow(4.0 * factor + 4.0), hook,
                                                                  6.0 * factor)
    try:
        assert result.status == "success"
        flagged = watcher.flagged["noon"]
        assert flagged.p90 is not None
        assert flagged.p90 > deadline
        assert flagged.slowest == "warehouse.step"
        incidents = IncidentLog(store, project.name).recent()
        assert [(i.usecase, i.kind) for i in incidents] == [("noon", "at_risk")]
        first = IncidentLog(store, project.name).events(incidents[0].id)[0]
        assert first.at < deadline  # warned while there was still time
        assert "about" in first.message
        assert "12:00 deadline" in first.message
        assert any("may be late" in str(m.get("subject")) for m in Hook.received)
    finally:
        store.close()


def test_a_normal_run_raises_nothing(project_dir, hook):
    project, store, watcher, result, _, _ = watch_run(project_dir, FAST, hook, 6.0 * room_factor())
    try:
        assert result.status == "success"
        assert watcher.flagged == {}
        assert IncidentLog(store, project.name).recent() == []
        assert Hook.received == []
    finally:
        store.close()


def test_a_failed_input_puts_the_use_case_at_risk_at_once(project_dir, hook):
    _project, store, watcher, result, _deadline, _ = watch_run(project_dir, BROKEN, hook)
    try:
        assert result.status == "failed"
        assert watcher.flagged["noon"].blocked_by == "warehouse.step"
    finally:
        store.close()


def test_forecast_uses_the_remaining_critical_path(project_dir):
    root = project_dir({
        "models/warehouse/a.sql": "select 1 as x", "models/warehouse/b.sql": "select 1 as x",
        "models/mart/c.sql": "select * from warehouse.a join warehouse.b using (x)",
        "usecases/u.yml": "assets: [mart.c]\nneed: {by: '08:00', on: every_day, calendar: none}\n",
    })
    project = load_project(root)
    graph = build_graph(project)
    p50 = {"warehouse.a": 60.0, "warehouse.b": 300.0, "mart.c": 30.0}
    p90 = {"warehouse.a": 120.0, "warehouse.b": 600.0, "mart.c": 60.0}
    now = datetime(2026, 11, 30, 0, 0)
    predictor = Predictor(graph, {"u": ("mart.c",)}, {"u": now + timedelta(minutes=10)}, Durations(p50, p90))
    state = RunState(planned={"warehouse.a", "warehouse.b", "mart.c"})
    state.started["warehouse.b"] = now - timedelta(seconds=100)  # b runs for 100 s already
    (forecast,) = predictor.forecast(state, now)
    assert forecast.p50 == now + timedelta(seconds=200 + 30)  # b's remaining 200 s, then c
    assert forecast.p90 == now + timedelta(seconds=500 + 60)
    assert not forecast.at_risk  # 560 s < 600 s
    tight = Predictor(graph, {"u": ("mart.c",)}, {"u": now + timedelta(minutes=9)}, Durations(p50, p90))
    assert tight.forecast(state, now)[0].at_risk
