"""Live pages over server-sent events, against a real uvicorn on loopback with a real HTTP client: a run's
progress arrives as events, a quiet stream sends heartbeats, a finished run's stream ends, the stream is for
signed-in users only and closes when the client leaves; and a run started from the web is still in Runs after
the server restarts (its job list, kept in memory, is not)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.console import bearer
from tests.helpers.live import serving, wait_until

SLOW_SQL = "select sum(hash(i)) as s from range(150000000) t(i)\n"  # a second or so: the run is seen going


@pytest.fixture
def shop(console_template: tuple[Path, dict[str, str], int], tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "shop"
    shutil.copytree(console_template[0], root)
    (root / "models/warehouse/slow.sql").write_text(SLOW_SQL)
    return root, console_template[1]


def events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event, data) of a text/event-stream; heartbeats as ("heartbeat", "")."""
    kind, data = "message", ""
    for line in lines:
        if line.startswith(":"):
            yield "heartbeat", ""
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data = line[5:].strip()
        elif line == "" and data:
            yield kind, data
            kind, data = "message", ""


def test_a_runs_progress_arrives_as_events_then_heartbeats_and_the_stream_ends_when_the_client_leaves(shop):
    root, tokens = shop
    with serving(root) as (base, app), httpx.Client(base_url=base, timeout=30,
                                                    headers=bearer(tokens["viewer"])) as http:
        page = http.get("/runs")
        url = re.search(r'data-events="([^"]+)"', page.text).group(1).replace("&amp;", "&")
        assert url.startswith("/events?since=")
        seen: list[tuple[str, str]] = []
        with http.stream("GET", url) as answer:
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/event-stream")
            lines = answer.iter_lines()
            job = httpx.post(base + "/api/v1/actions/run", json={"selection": ["warehouse.slow", "warehouse.orders"]},
                             headers=bearer(tokens["operator"]), timeout=30)
            assert job.status_code == 202, job.text
            for kind, data in events(lines):  # until the run is over, then one heartbeat of quiet
                seen.append((kind, data))
                changes = [json.loads(d) for k, d in seen if k == "change"]
                if changes and not changes[-1]["running"] and kind == "heartbeat":
                    break
            assert app.state.live["clients"] == 1
        changes = [json.loads(d) for k, d in seen if k == "change"]
        assert len(changes) >= 2, seen  # the run was seen going, and then over
        assert changes[0]["running"]
        assert not changes[-1]["running"]
        assert len({c["version"] for c in changes}) == len(changes)  # each event is a new state
        wait_until(lambda: app.state.live["clients"] == 0, 30)  # the client left: the server's stream ended too
        done = http.get(f"/api/v1/jobs/{job.json()['id']}").json()
        assert done["status"] == "success"


def test_a_finished_runs_stream_says_end_and_closes(shop):
    root, tokens = shop
    with serving(root) as (base, _app), httpx.Client(base_url=base, timeout=10,
                                                     headers=bearer(tokens["viewer"])) as http:
        run_id = http.get("/api/v1/runs").json()["runs"][0]["run_id"]
        with http.stream("GET", f"/events/runs/{run_id}") as answer:
            got = list(events(answer.iter_lines()))  # ends by itself
        assert [k for k, _ in got] == ["change", "end"]
        assert json.loads(got[1][1]) == {"status": "failed"}
        assert http.get("/events/runs/no-such-run").status_code == 404
        page = http.get(f"/runs/{run_id}")  # not running: the page listens to nothing
        assert "data-events" not in page.text


def test_the_stream_is_for_signed_in_users_only(shop):
    root, _tokens = shop
    with serving(root) as (base, _app):
        for path in ("/events", "/events?since=x", "/events/runs/x"):
            answer = httpx.get(base + path, timeout=10)
            assert answer.status_code == 401
            assert "not signed in" in answer.json()["detail"]
        answer = httpx.get(base + "/events", headers={"Authorization": "Bearer wrong"}, timeout=10)
        assert answer.status_code == 401


def test_a_run_started_from_the_web_is_in_runs_after_a_restart(shop):
    root, tokens = shop
    with serving(root) as (base, app):
        job = httpx.post(base + "/api/v1/actions/run", json={"selection": ["warehouse.slow"]},
                         headers=bearer(tokens["operator"]), timeout=30).json()
        finished = app.state.jobs.wait(job["id"], 60)
        assert finished.status == "success"
        assert finished.run_id
    with serving(root) as (base, _app), httpx.Client(base_url=base, timeout=10,
                                                     headers=bearer(tokens["viewer"])) as http:
        assert http.get("/api/v1/jobs").json() == {"jobs": []}  # the job list lived in the old process
        runs = {r["run_id"]: r for r in http.get("/api/v1/runs").json()["runs"]}
        assert runs[finished.run_id]["status"] == "success"
        assert runs[finished.run_id]["selection"] == ["warehouse.slow"]
        page = http.get("/runs").text
        assert finished.run_id in page
        detail = http.get(f"/runs/{finished.run_id}").text
        assert "warehouse.slow" in detail
        assert "s-success" in detail
