"""Deliveries made by the real scheduler loop (``Scheduler.serve`` on a clock that moves 10 s per look): a
``schedule:`` tick claimed once and delivered; a use case met delivered once per due day; a flaky webhook
retried from the outbox until it answers; a dead one failed for good after its retries; and a chat delivery
carrying its file — posted as multipart/form-data, or as a served download link that expires — each against a
real HTTP receiver on loopback."""

from __future__ import annotations

import email
import email.policy
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from kiban.clock import FakeClock
from kiban.deliveries.send import deliver, history
from kiban.project import load_project
from kiban.run import RunOptions, run_project
from kiban.schedule.daemon import Scheduler
from kiban.store import Store
from tests.helpers.console import sign_in
from tests.helpers.shop import DELIVERY_FILES, SHOP_LAKE


class SteppingClock(FakeClock):
    """The fake clock of the real loop: each sleep moves it on, after a real pause (the delivery thread runs)."""

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> None:
        (stop or threading.Event()).wait(0.02)
        self.advance(max(0.0, seconds))


class NoLauncher:
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no job is scheduled here")


class Receiver(BaseHTTPRequestHandler):
    """Answers 503 to the first ``fail`` requests, then 200; keeps every request's content type and body."""

    fail: ClassVar[int] = 0
    got: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).got.append((self.headers["Content-Type"], body))
        status = 503 if len(type(self).got) <= type(self).fail else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver():
    def start(fail: int = 0) -> tuple[int, type[Receiver]]:
        handler = type("R", (Receiver,), {"fail": fail, "got": []})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1], handler

    servers: list[ThreadingHTTPServer] = []
    yield start
    for server in servers:
        server.shutdown()


def serve_until(scheduler: Scheduler, done: Any, seconds: float = 60.0) -> None:  # generous: a failure waits
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.serve, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + seconds
        while not done() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()


def project_with(make_project, deliveries: str, extra: str = "", files: dict[str, str] | None = None) -> Any:
    root = make_project({**DELIVERY_FILES, **(files or {}),
                         "kiban.yml": "name: shop\ntimezone: Asia/Tokyo\nscheduler: {poll: 10}\n"
                                      f"{extra}deliveries:\n{deliveries}"}, lake=SHOP_LAKE)
    project = load_project(root)
    assert run_project(project, RunOptions()).ok
    return project, Store(project.state_url)


def test_a_schedule_tick_is_delivered_once_and_a_flaky_webhook_is_retried_from_the_outbox(
        make_project, receiver, dead_port):
    port, flaky = receiver(fail=2)
    project, store = project_with(make_project, """  weekly:
    mart: mart.weekly_marketing
    folder: out
    file: "weekly_{date}.xlsx"
    schedule: "0 8 * * 1"
    usecase: marketing
  chat:
    mart: mart.weekly_marketing
    format: csv
    channel: hook
    schedule: "0 8 * * 1"
  lost:
    mart: mart.weekly_marketing
    channel: dead
    schedule: "0 8 * * 1"
    retries: 1
""", f"channels:\n  hook: {{type: webhook, url: 'http://127.0.0.1:{port}/h'}}\n"
     f"  dead: {{type: webhook, url: 'http://127.0.0.1:{dead_port}/h'}}\n")
    # Monday 2026-12-07 07:59:30 in Tokyo; the 08:00 tick comes three looks later
    clock = SteppingClock(datetime(2026, 12, 6, 22, 59, 30))
    scheduler = Scheduler(project, store, clock=clock, launcher=NoLauncher())

    def settled() -> bool:
        rows = history(store, project.name)
        final = [r for r in rows if r.status == "delivered" or (r.status == "failed" and r.retry_at is None)]
        return len(final) == 3

    serve_until(scheduler, settled)
    rows = {r.name: r for r in history(store, project.name)}
    assert len(history(store, project.name)) == 3, "each delivery claimed once for its tick"
    weekly, chat, lost = rows["weekly"], rows["chat"], rows["lost"]
    assert weekly.status == "delivered"
    assert weekly.trigger == "schedule"
    assert weekly.attempts == 1
    assert weekly.scheduled_for == datetime(2026, 12, 6, 23, 0)
    assert weekly.usecase == "marketing"
    assert (project.root / "out" / "weekly_2026-12-07.xlsx").exists()  # the tick's local date
    assert chat.status == "delivered"
    assert chat.attempts == 3
    assert len(flaky.got) == 3  # 503, 503, then 200
    assert lost.status == "failed"
    assert lost.attempts == 2
    assert lost.retry_at is None
    assert "cannot reach webhook" in (lost.error or "")
    # the loop went on: the retries waited (1 min, then 2 min of the clock), and nothing went out twice
    assert clock.now() >= datetime(2026, 12, 6, 23, 3)
    assert [r.usecase for r in history(store, project.name, usecase="marketing")] == ["marketing"]


def test_downtime_over_a_tick_delivers_once_late_and_a_second_scheduler_never_doubles(make_project):
    project, store = project_with(make_project, "  daily: {mart: mart.weekly_marketing, folder: out, "
                                                "schedule: '0 8 * * *'}\n")
    clock = FakeClock(datetime(2026, 12, 6, 22, 59, 0))
    first = Scheduler(project, store, clock=clock, launcher=NoLauncher())
    first.step()  # the cursor starts here
    clock.advance(hours=50)  # down over two 08:00 ticks
    first.step()
    first.deliveries.wait(30)
    second = Scheduler(project, store, clock=clock, launcher=NoLauncher())
    from kiban.schedule.deliveries import claim_deliveries

    assert claim_deliveries(project, store, None, clock.now()) == []
    second.shutdown()
    first.shutdown()
    rows = history(store, project.name, "daily")
    assert [(r.status, r.scheduled_for) for r in rows] == [("delivered", datetime(2026, 12, 8, 23, 0))]


def test_after_the_use_case_is_met_the_scheduler_delivers_once_per_due_day(make_project):
    project, store = project_with(make_project, "  weekly: {mart: mart.weekly_marketing, folder: out, "
                                                "usecase: marketing, after: usecase_met}\n",
                                  files={"usecases/marketing.yml": "description: m\nowner: m\n"
                                         "assets: [mart.weekly_marketing]\nneed: {by: '23:59', on: every_day}\n"})
    clock = SteppingClock(datetime.now().replace(microsecond=0))
    scheduler = Scheduler(project, store, clock=clock, launcher=NoLauncher())
    serve_until(scheduler, lambda: any(r.status == "delivered" for r in history(store, project.name)))
    scheduler = Scheduler(project, store, clock=clock, launcher=NoLauncher())
    scheduler.step()
    scheduler.deliveries.wait(30)
    scheduler.shutdown()
    [row] = history(store, project.name)
    assert row.status == "delivered"
    assert row.trigger == "usecase"
    assert row.scheduled_for is not None


def test_a_chat_delivery_uploads_the_file_as_multipart(make_project, receiver):
    port, got = receiver()
    project, store = project_with(make_project, "  weekly: {mart: mart.weekly_marketing, format: csv, "
                                                "channel: hook, chat_file: upload}\n",
                                  f"channels:\n  hook: {{type: webhook, url: 'http://127.0.0.1:{port}/h'}}\n")
    record = deliver(project, store, "weekly")
    assert record.status == "delivered", record.error
    assert "file attached" in (record.file or ""), record.error
    [(kind, body)] = got.got
    assert kind.startswith("multipart/form-data")
    parsed = email.message_from_bytes(f"Content-Type: {kind}\r\n\r\n".encode() + body, policy=email.policy.HTTP)
    parts = {p.get_param("name", header="content-disposition"): p for p in parsed.iter_parts()}
    assert '"rows": "30"' in parts["payload_json"].get_content()
    upload = parts["file"]
    assert upload.get_filename().startswith("weekly_")
    assert upload.get_filename().endswith(".csv")
    text = upload.get_payload(decode=True).decode("utf-8-sig")
    assert text.startswith("order_date,revenue,orders")
    assert len(text.splitlines()) == 31
    assert "'=HYPERLINK" in text  # formula-safe in the chat too


def test_a_chat_delivery_by_link_is_served_until_it_expires(make_project, receiver):
    from fastapi.testclient import TestClient

    from kiban.deliveries.links import find, sweep
    from kiban.web import create_app
    from kiban.web.accounts import Accounts

    port, got = receiver()
    project, store = project_with(make_project, "  weekly: {mart: mart.weekly_marketing, channel: hook, "
                                                "chat_file: link, link_hours: 1}\n",
                                  f"console_url: https://kiban.example.com\nchannels:\n"
                                  f"  hook: {{type: webhook, url: 'http://127.0.0.1:{port}/h'}}\n")
    record = deliver(project, store, "weekly")
    assert record.status == "delivered", record.error
    [(kind, body)] = got.got
    assert kind == "application/json"
    import json

    message = json.loads(body)
    link = message["fields"]["download"]
    assert link.startswith("https://kiban.example.com/deliveries/files/")
    assert link.endswith(".xlsx")
    path = link.removeprefix("https://kiban.example.com")
    Accounts(store).add_user("viewer", "viewer-password", "viewer")
    with TestClient(create_app(project.root), base_url="http://127.0.0.1") as client:
        assert client.get(path, follow_redirects=False).status_code in (303, 307, 401)  # signed in only
        sign_in(client, "viewer")
        got_file = client.get(path)
        assert got_file.status_code == 200
        assert got_file.content[:2] == b"PK"
        forged = path.rsplit("/", 2)
        assert client.get(f"/deliveries/files/{'A' * 43}/{forged[-1]}").status_code == 404
        assert client.get(f"/deliveries/files/{forged[-2]}/other.xlsx").status_code == 404
        # past its hour the link has expired: 410 once, then the file is gone
        token, name = forged[-2], forged[-1]
        later = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=1, minutes=1)
        assert find(project, token, name, later) is False
        assert client.get(path).status_code == 404
    assert deliver(project, store, "weekly").status == "delivered"  # a second link: swept by the scheduler
    assert sweep(project, later - timedelta(minutes=2)) == 0
    assert sweep(project, later) == 1
    assert not any((project.state_dir / "deliveries").iterdir())


def test_a_slack_channel_cannot_take_an_upload(make_project):
    project, store = project_with(make_project, "  weekly: {mart: mart.weekly_marketing, channel: s, "
                                                "chat_file: upload}\n",
                                  "channels:\n  s: {type: slack, url: 'http://127.0.0.1:9/x'}\n")
    record = deliver(project, store, "weekly")
    assert record.status == "failed"
    assert "cannot carry a file" in (record.error or "")
    assert record.attempts == 1
