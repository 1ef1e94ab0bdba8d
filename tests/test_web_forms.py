"""Forms and uploads in the console: the page, a typed entry, an upload's preview and refused rows, the API, and
no entry lost or doubled when the server is killed (SIGKILL) while people submit."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx
import pytest

from kiban.project import load_project
from kiban.store import Store
from kiban.web.accounts import Accounts
from tests.helpers.console import bearer, sign_in
from tests.helpers.forms import WASTE_FILES


@pytest.fixture
def served(make_project):
    from fastapi.testclient import TestClient

    from kiban.web import create_app

    root = make_project(WASTE_FILES)
    accounts = Accounts(Store(load_project(root).state_url))
    accounts.add_user("tanaka", "tanaka-password", "viewer")  # named in the form's `who`
    accounts.add_user("suzuki", "suzuki-password", "viewer")  # not allowed
    accounts.add_user("ana", "ana-password", "analyst")
    tokens = {name: accounts.create_token(name) for name in ("tanaka", "suzuki", "ana")}
    with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
        yield client, root, tokens


def lake(root: Path, sql: str) -> list[tuple]:
    files = sorted(str(p) for p in (root / "lake" / "forms" / "waste").rglob("*.parquet"))
    return duckdb.connect().execute(sql.replace("T", f"read_parquet({files!r})")).fetchall() if files else []


def test_a_person_enters_a_row_on_the_form_and_a_resend_lands_nothing(served):
    client, root, _ = served
    csrf = sign_in(client, "tanaka")
    page = client.get("/forms/waste")
    assert page.status_code == 200
    assert 'name="store_id"' in page.text
    assert "/static/forms.js" in page.text
    assert 'inputmode="numeric"' in page.text
    assert '<option>bread</option>' in page.text
    submission = re.search(r'name="submission" value="([^"]+)"', page.text).group(1)
    entry = {"csrf": csrf, "submission": submission, "store_id": "12", "day": "2026-12-07", "item": "bread",
             "quantity": "3", "note": ""}
    wrong = client.post("/forms/waste", data={**entry, "quantity": "-2", "item": "cake"})
    assert wrong.status_code == 422
    assert "must be at least 0" in wrong.text
    assert "must be one of" in wrong.text
    assert lake(root, "select count(*) from T") == []
    sent = client.post("/forms/waste", data=entry, follow_redirects=False)
    assert sent.status_code == 303
    assert "landed%201%20row" in sent.headers["location"].replace(" ", "%20")
    again = client.post("/forms/waste", data=entry, follow_redirects=False)
    assert "already" in again.headers["location"]
    assert lake(root, "select store_id, item, quantity, _entered_by from T") == [(12, "bread", 3, "tanaka")]
    assert client.get("/static/forms.js").status_code == 200


def test_who_may_enter_is_the_forms_who(served):
    client, _, tokens = served
    sign_in(client, "suzuki")
    assert client.get("/forms/waste").status_code == 403
    assert "waste" not in client.get("/forms").text.split("<main")[-1] or "Daily waste" not in client.get("/forms").text
    answer = client.post("/api/v1/forms/waste/entries", headers=bearer(tokens["suzuki"]),
                         json={"submission": "s-0000001", "rows": [{"store_id": 1}]})
    assert answer.status_code == 403


def test_an_upload_previews_shows_refused_rows_then_lands_the_rest(served):
    client, root, _ = served
    csrf = sign_in(client, "ana")
    body = "store_id,day,item,quantity\n1,2026-12-01,milk,2\n0,2026-12-01,milk,2\n2,2026-12-02,bread,x\n"
    preview = client.post("/forms/waste/upload", data={"csrf": csrf},
                          files={"file": ("waste.csv", io.BytesIO(body.encode()), "text/csv")})
    assert preview.status_code == 200, preview.text
    assert re.search(r"<strong>1</strong> rows would land; <strong>2</strong> refused", preview.text)
    assert "must be at least 1" in preview.text
    assert "is not a whole number" in preview.text
    assert lake(root, "select count(*) from T") == []  # nothing lands from a preview
    action = re.search(r'action="(/forms/waste/upload/[^"]+)"', preview.text).group(1)
    landed = client.post(action, data={"csrf": csrf}, follow_redirects=False)
    assert landed.status_code == 303
    assert "landed 1 rows" in landed.headers["location"].replace("%20", " ")
    assert client.post(action, data={"csrf": csrf}, follow_redirects=False).status_code == 303  # twice: once
    assert lake(root, "select store_id, _entered_by, _row from T") == [(1, "ana", 1)]


def test_the_api_lands_all_or_nothing(served):
    client, root, tokens = served
    rows = [{"store_id": 5, "day": "2026-12-07", "item": "milk", "quantity": 1},
            {"store_id": 5, "day": "2026-12-07", "item": "tea", "quantity": 1}]
    refused = client.post("/api/v1/forms/waste/entries", headers=bearer(tokens["ana"]),
                          json={"submission": "api-000001", "rows": rows})
    assert refused.status_code == 422
    assert refused.json()["refused"] == [{"row": 2, "reasons": {
        "item": "must be one of bread, milk, vegetables, other"}}]
    ok = client.post("/api/v1/forms/waste/entries", headers=bearer(tokens["ana"]),
                     json={"submission": "api-000001", "rows": rows[:1]})
    assert ok.status_code == 200
    assert ok.json()["loaded"]
    assert ok.json()["rows"] == 1
    assert lake(root, "select count(*) from T") == [(1,)]


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve(root: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    process = subprocess.Popen([sys.executable, "-m", "kiban", "--project", str(root), "serve", "--port", str(port)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("kiban serve did not start")


@pytest.mark.soak
def test_sigkill_of_the_server_during_submissions_never_loses_or_doubles_a_row(served):
    """Clients send entries (each with its own submission id) and retry whatever got no answer; the server is
    killed with SIGKILL twice mid-stream. Every entry lands exactly once. (A soak: each start of `kiban serve`
    takes ~20 s on a loaded CI machine; tests/test_forms.py kills the landing process itself in CI.)"""
    _, root, tokens = served
    port = _port()
    wanted = {f"kill-{i:06d}": i for i in range(int(os.environ.get("KIBAN_FORMS_KILL_ENTRIES", "24")))}
    pending = dict(wanted)
    process = _serve(root, port)
    kills = 0
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=bearer(tokens["ana"]), timeout=10) as http:
            while pending:
                for submission, i in list(pending.items()):
                    if kills < 2 and len(pending) < len(wanted) - len(wanted) // 3 * (kills + 1):
                        process.send_signal(signal.SIGKILL)  # mid-stream: maybe mid-write, mid-load
                        process.wait()
                        kills += 1
                        process = _serve(root, port)
                    try:
                        answer = http.post("/api/v1/forms/waste/entries", json={"submission": submission, "rows": [
                            {"store_id": 1 + i % 999, "day": "2026-12-07", "item": "other", "quantity": i}]})
                    except httpx.HTTPError:
                        continue  # no answer: sent again on the next pass
                    if answer.status_code == 200:
                        pending.pop(submission)
            # what a kill left unloaded is taken by the next load (here: one more entry)
            last = http.post("/api/v1/forms/waste/entries", json={"submission": "kill-final", "rows": [
                {"store_id": 1, "day": "2026-12-07", "item": "other", "quantity": 0}]})
            assert last.status_code == 200
    finally:
        process.kill()
        process.wait()
    assert kills == 2
    found = lake(root, "select _submission, count(*) from T group by 1")
    assert {s: n for s, n in found} == {**dict.fromkeys(wanted, 1), "kill-final": 1}


def test_an_abandoned_preview_expires_and_is_removed(served):
    from kiban.forms.previews import PREVIEW_HOURS, sweep, uploads_dir

    client, root, _ = served
    project = load_project(root)
    csrf = sign_in(client, "ana")
    body = "store_id,day,item,quantity\n1,2026-12-01,milk,2\n"

    def upload() -> str:
        preview = client.post("/forms/waste/upload", data={"csrf": csrf},
                              files={"file": ("waste.csv", io.BytesIO(body.encode()), "text/csv")})
        assert preview.status_code == 200, preview.text
        return re.search(r'action="(/forms/waste/upload/[^"]+)"', preview.text).group(1)

    abandoned, kept = upload(), upload()
    old, fresh = (uploads_dir(project) / "waste" / f"{a.rsplit('/', 1)[1]}.parquet" for a in (abandoned, kept))
    assert old.exists()
    assert fresh.exists()
    past = time.time() - PREVIEW_HOURS * 3600 - 60
    os.utime(old, (past, past))  # walked away from a day ago
    gone = client.post(abandoned, data={"csrf": csrf}, follow_redirects=False)
    assert gone.status_code == 404
    assert "upload the file again" in gone.text
    assert not old.exists()
    assert lake(root, "select count(*) from T") == []  # an expired preview never lands
    os.utime(fresh, (past, past))
    assert sweep(project, time.time() - PREVIEW_HOURS * 3600 - 120) == 0  # not yet expired then
    upload()  # any upload sweeps what others left behind
    assert not fresh.exists()
    assert len(list(uploads_dir(project).glob("waste/*.parquet"))) == 1
    from kiban.schedule.clock import FakeClock
    from kiban.schedule.daemon import Scheduler

    [last] = uploads_dir(project).glob("waste/*.parquet")
    os.utime(last, (past, past))
    from datetime import UTC, datetime

    scheduler = Scheduler(project, Store(project.state_url), clock=FakeClock(datetime.now(UTC)),
                          launcher=lambda *a, **k: None)
    scheduler._housekeeping(scheduler.clock.now())  # the scheduler sweeps them too
    assert not last.exists()
