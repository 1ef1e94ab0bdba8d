"""Notifications over real loopback servers: SMTP (aiosmtpd) and HTTP (http.server). No mocks."""

from __future__ import annotations

import email
import email.message
import email.policy
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from kiban.notify import DeliveryResult, Message, Notifier
from kiban.project.config import ChannelConfig
from kiban.schedule.clock import FakeClock
from kiban.store import Store, utcnow
from kiban.store.schema import notifications

SUBJECT_JA = "売上データが遅れています"
TEXT_JA = "本日の売上データは約40分遅れます。\n09:40 頃に更新される見込みです。"


def message(key: str = "incident:morning_sales:2026-11-30:at_risk", **overrides: Any) -> Message:
    values: dict[str, Any] = {"subject": "morning_sales will be about 40 minutes late",
                              "text": "Expected at 09:40 instead of 09:00.", "severity": "warning",
                              "dedupe_key": key, "fields": {"use case": "morning_sales", "deadline": "09:00"},
                              "link": "https://kiban.example/usecases/morning_sales"}
    return Message(**{**values, **overrides})


def channel(**values: Any) -> ChannelConfig:
    """A channel exactly as kiban.yml would spell it (``from``, not ``sender``)."""
    return ChannelConfig.model_validate(values)


def part(mail: email.message.EmailMessage, subtype: str) -> str:
    body = mail.get_body((subtype,))
    assert body is not None, f"no text/{subtype} part"
    return str(body.get_content())


def free_port() -> int:
    """A port with nothing listening: bound once, then closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    st = Store(f"sqlite:///{tmp_path}/state.db")
    yield st
    st.close()


def rows(store: Store) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(sa.select(notifications).order_by(notifications.c.id)))


# --- a real HTTP server ----------------------------------------------------------------------------------


class Hook(ThreadingHTTPServer):
    """Records every POST; answers from ``script`` (status, headers, body) in order, then 200."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _HookHandler)
        self.requests: list[dict[str, Any]] = []
        self.script: list[tuple[int, dict[str, str], str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _HookHandler(BaseHTTPRequestHandler):
    server: Hook

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                     "at": time.monotonic()})
        status, headers, text = self.server.script.pop(0) if self.server.script else (200, {}, "ok")
        data = text.replace("{path}", self.path).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = Hook()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


# --- a real SMTP server ----------------------------------------------------------------------------------


class Inbox:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def only_alice(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (_text(auth_data.login), _text(auth_data.password)) == (
        "alice", "s3cret!")
    return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535 itself


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, authenticator=only_alice,
                            auth_require_tls=False)
    controller.start()
    yield inbox, port
    controller.stop()


# --- e-mail ----------------------------------------------------------------------------------------------


def test_email_in_japanese_arrives_with_headers_and_both_bodies(store: Store, tmp_path: Path,
                                                                   smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    mail = channel(type="email", smtp=f"smtp://127.0.0.1:{port}", **{"from": "kiban <kiban@example.com>"},
                   to=["sales-team@example.com", "担当 <owner@example.com>"])
    msg = message(subject=SUBJECT_JA, text=TEXT_JA, fields={"ユースケース": "morning_sales", "期限": "09:00"})
    [result] = Notifier(store, {"mail": mail}, tmp_path).send(["mail"], msg)

    assert result == DeliveryResult("mail", "sent", 1, None)
    [envelope] = inbox.envelopes
    assert envelope.mail_from == "kiban@example.com"
    assert envelope.rcpt_tos == ["sales-team@example.com", "owner@example.com"]
    received = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert isinstance(received, email.message.EmailMessage)
    assert received["Subject"] == SUBJECT_JA  # decoded from RFC 2047
    assert received["From"] == "kiban <kiban@example.com>"
    assert "owner@example.com" in received["To"]
    assert "担当" in received["To"]
    # Text bodies travel in canonical CRLF form (RFC 2045) inside base64.
    plain = part(received, "plain").replace("\r\n", "\n")
    html = part(received, "html")
    assert TEXT_JA in plain
    assert "ユースケース" in plain
    assert "https://kiban.example/usecases/morning_sales" in plain
    assert "本日の売上データは約40分遅れます。" in html
    assert "<table>" in html
    assert [(r.channel, r.status, r.attempts) for r in rows(store)] == [("mail", "sent", 1)]


def test_email_login_from_env_and_a_wrong_password_is_not_retried(store: Store, tmp_path: Path,
                                                                   smtp: tuple[Inbox, int],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    inbox, port = smtp
    mail = channel(type="email", smtp="env:SMTP_URL", **{"from": "kiban@example.com"}, to=["ops@example.com"])
    notifier = Notifier(store, {"mail": mail}, tmp_path, backoff=0.01)

    monkeypatch.setenv("SMTP_URL", f"smtp://alice:wrong-pass-9f3@127.0.0.1:{port}")
    [bad] = notifier.send(["mail"], message("k1"))
    assert (bad.status, bad.attempts) == ("failed", 1)
    assert "refused the login of alice" in (bad.error or "")
    assert "wrong-pass-9f3" not in (bad.error or "")

    monkeypatch.setenv("SMTP_URL", f"smtp://alice:s3cret%21@127.0.0.1:{port}")  # percent-encoded "!"
    [good] = notifier.send(["mail"], message("k2"))
    assert good.status == "sent"
    assert len(inbox.envelopes) == 1


# --- HTTP ------------------------------------------------------------------------------------------------


def test_slack_payload(store: Store, tmp_path: Path, hook: Hook) -> None:
    slack = channel(type="slack", url=hook.url + "/services/T1/B2/abc")
    [result] = Notifier(store, {"slack": slack}, tmp_path).send(["slack"], message(subject="a < b & c"))

    assert result.status == "sent"
    [request] = hook.requests
    assert request["path"] == "/services/T1/B2/abc"
    assert request["headers"]["Content-Type"] == "application/json"
    payload = json.loads(request["body"])
    assert "a &lt; b &amp; c" in payload["text"]  # Slack mrkdwn escaping
    header, section, facts, link, context = payload["blocks"]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": "a < b & c", "emoji": True}}
    assert section["text"]["text"] == "Expected at 09:40 instead of 09:00."
    assert {"type": "mrkdwn", "text": "*deadline*\n09:00"} in facts["fields"]
    assert "https://kiban.example/usecases/morning_sales" in link["text"]["text"]
    assert "warning" in context["elements"][0]["text"]


def test_webhook_posts_the_message_as_json_with_headers_from_env(store: Store, tmp_path: Path, hook: Hook,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "Bearer t0ken-123")
    web = channel(type="webhook", url=hook.url + "/events", headers={"Authorization": "env:HOOK_TOKEN",
                                                                    "X-Team": "data"})
    msg = message(subject=SUBJECT_JA)
    [result] = Notifier(store, {"web": web}, tmp_path).send(["web"], msg)

    assert result.status == "sent"
    [request] = hook.requests
    assert json.loads(request["body"]) == {"subject": SUBJECT_JA, "text": msg.text, "severity": "warning",
                                           "dedupe_key": msg.dedupe_key, "fields": msg.fields, "link": msg.link}
    assert request["headers"]["Authorization"] == "Bearer t0ken-123"
    assert request["headers"]["X-Team"] == "data"


def test_503_twice_then_delivered_on_the_third_attempt(store: Store, tmp_path: Path, hook: Hook) -> None:
    hook.script = [(503, {}, "busy"), (503, {}, "busy")]
    web = channel(type="webhook", url=hook.url, retries=3)
    waits: list[float] = []
    [result] = Notifier(store, {"web": web}, tmp_path, sleep=waits.append).send(["web"], message())

    assert (result.status, result.attempts, result.error) == ("sent", 3, None)
    assert len(hook.requests) == 3
    assert len(waits) == 2
    assert 0.4 <= waits[0] <= 0.6  # 0.5 s, then 1 s, each ±20 %
    assert 0.8 <= waits[1] <= 1.2
    [row] = rows(store)
    assert (row.status, row.attempts, row.sent_at is not None) == ("sent", 3, True)


def test_429_retry_after_is_honoured(store: Store, tmp_path: Path, hook: Hook) -> None:
    hook.script = [(429, {"Retry-After": "1"}, "slow down")]
    slack = channel(type="slack", url=hook.url, retries=1)
    clock = FakeClock(utcnow())
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # the fake clock's time passes; the test's does not
        waits.append(seconds)
        clock.advance(seconds)

    [result] = Notifier(store, {"slack": slack}, tmp_path, backoff=0.01, sleep=sleep, now=clock.now).send(
        ["slack"], message())

    assert (result.status, result.attempts) == ("sent", 2)
    assert len(hook.requests) == 2
    assert waits == [pytest.approx(1.0, abs=0.25)]  # the server's Retry-After, not the 0.01 s backoff


def test_dead_channel_fails_quietly_is_recorded_and_retried_next_time(store: Store, tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    web = channel(type="webhook", url=f"http://127.0.0.1:{free_port()}/x", retries=2)
    notifier = Notifier(store, {"web": web}, tmp_path, backoff=0.01)
    with caplog.at_level(logging.INFO, logger="kiban.notify"):
        [result] = notifier.send(["web"], message())  # no exception, whatever happens

    assert (result.status, result.attempts) == ("failed", 3)
    assert "cannot reach webhook http://127.0.0.1:" in (result.error or "")
    [row] = rows(store)
    assert (row.status, row.attempts, row.error, row.sent_at) == ("failed", 3, result.error, None)
    assert any(r.levelno == logging.WARNING and "failed after 3 attempt(s)" in r.getMessage()
               for r in caplog.records)
    # A failure is not a delivery: the same message is tried again rather than suppressed as a duplicate.
    [again] = notifier.send(["web"], message())
    assert (again.status, again.attempts) == ("failed", 3)


def test_400_is_not_retried(store: Store, tmp_path: Path, hook: Hook) -> None:
    hook.script = [(400, {}, "invalid_payload")]
    slack = channel(type="slack", url=hook.url, retries=3)
    [result] = Notifier(store, {"slack": slack}, tmp_path).send(["slack"], message())

    assert (result.status, result.attempts) == ("failed", 1)
    assert "HTTP 400" in (result.error or "")
    assert "invalid_payload" in (result.error or "")
    assert len(hook.requests) == 1


def test_same_key_within_min_interval_is_suppressed_then_sent_again(store: Store, tmp_path: Path,
                                                                     hook: Hook) -> None:
    slack = channel(type="slack", url=hook.url, min_interval=0.2)
    clock = FakeClock(utcnow())
    notifier = Notifier(store, {"slack": slack}, tmp_path, now=clock.now)

    first, second, other = (notifier.send(["slack"], m)[0] for m in (message("k"), message("k"), message("k2")))
    assert [first.status, second.status, other.status] == ["sent", "suppressed", "sent"]
    assert second.attempts == 0
    assert "duplicate" in (second.error or "")
    assert len(hook.requests) == 2

    clock.advance(0.25)  # past min_interval, without waiting for it
    [later] = notifier.send(["slack"], message("k"))
    assert later.status == "sent"
    assert len(hook.requests) == 3
    assert [r.status for r in rows(store)] == ["sent", "suppressed", "sent", "sent"]


def test_rate_limit_20_per_channel_per_minute(store: Store, tmp_path: Path, hook: Hook) -> None:
    slack = channel(type="slack", url=hook.url)
    notifier = Notifier(store, {"slack": slack}, tmp_path)
    results = [notifier.send(["slack"], message(f"key-{i}"))[0] for i in range(21)]

    assert [r.status for r in results] == ["sent"] * 20 + ["suppressed"]
    assert "rate limit" in (results[-1].error or "")
    assert len(hook.requests) == 20


def test_secret_webhook_path_never_appears_in_errors_store_or_logs(store: Store, tmp_path: Path, hook: Hook,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    token = "T0AB12CD/B0EF34GH/zYx9SecretToken"
    monkeypatch.setenv("HOOK_URL", f"http://127.0.0.1:{free_port()}/services/{token}")
    monkeypatch.setenv("LIVE_HOOK_URL", f"{hook.url}/services/{token}")
    hook.script = [(500, {}, "no route for {path}")]  # a server that echoes the URL back
    channels = {"dead": channel(type="slack", url="env:HOOK_URL", retries=1),
                "echo": channel(type="slack", url="env:LIVE_HOOK_URL", retries=0)}
    with caplog.at_level(logging.DEBUG, logger="kiban.notify"):
        dead, echo = Notifier(store, channels, tmp_path, backoff=0.01).send(["dead", "echo"], message())

    assert (dead.status, echo.status) == ("failed", "failed")
    assert "127.0.0.1" in (dead.error or "")
    assert "HTTP 500" in (echo.error or "")
    texts = [dead.error or "", echo.error or "", *(r.error or "" for r in rows(store)), caplog.text]
    for text in texts:
        assert "SecretToken" not in text
        assert "T0AB12CD" not in text


def test_unknown_channel_and_missing_env_fail_without_raising(store: Store, tmp_path: Path, hook: Hook,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_HOOK", raising=False)
    channels = {"ops": channel(type="slack", url=hook.url), "gone": channel(type="slack", url="env:NOT_SET_HOOK")}
    opz, gone, ops = Notifier(store, channels, tmp_path).send(["opz", "gone", "ops"], message())

    assert opz.status == "failed"
    assert "unknown channel 'opz'" in (opz.error or "")
    assert "ops" in (opz.error or "")
    assert gone.status == "failed"
    assert "NOT_SET_HOOK is not set" in (gone.error or "")
    assert gone.attempts == 1
    assert ops.status == "sent"
    # one row per channel; the channels are sent in parallel, so the rows are in the order their threads finished
    assert sorted((r.channel, r.status) for r in rows(store)) == [("gone", "failed"), ("ops", "sent"),
                                                                  ("opz", "failed")]


def test_message_validates_severity_and_key() -> None:
    with pytest.raises(ValueError, match="severity"):
        message(severity="urgent")
    with pytest.raises(ValueError, match="dedupe_key"):
        message(key="")


# --- the outbox: parallel channels, retries for hours --------------------------------------------------------


def test_a_dead_channel_does_not_delay_the_others(store: Store, tmp_path: Path, hook: Hook) -> None:
    """Old: channels were tried one after another, so a dead one's retries held up the rest."""
    slow_dead = channel(type="webhook", url=f"http://127.0.0.1:{free_port()}/x", retries=3)
    live = channel(type="webhook", url=f"{hook.url}/live")
    waits: list[float] = []
    heard_in_backoff: list[bool] = []

    def sleep(seconds: float) -> None:
        """The dead channel's backoff lasts until the live channel was heard (30 s at most): one after the other,
        the live one would only be tried after it, so its first backoff would run out unheard. (A fixed 0.5 s
        backoff measured against wall time failed when a loaded machine took longer to deliver the live one.)"""
        waits.append(seconds)
        deadline = time.monotonic() + 30
        while not hook.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        heard_in_backoff.append(bool(hook.requests))

    notifier = Notifier(store, {"dead": slow_dead, "live": live}, tmp_path, sleep=sleep)
    results = notifier.send(["dead", "live"], message())
    assert [r.status for r in results] == ["failed", "sent"]
    assert waits  # the dead channel did back off
    assert heard_in_backoff[0]  # ... and the live channel was delivered during its first backoff


def test_a_failed_delivery_stays_in_the_outbox_and_goes_out_when_the_channel_is_back(
        store: Store, tmp_path: Path, hook: Hook) -> None:
    """Old: a dead channel was retried three times within seconds and the message dropped for good."""
    from datetime import timedelta

    from kiban.store.store import utcnow

    port = free_port()
    web = channel(type="webhook", url=f"http://127.0.0.1:{port}/x", retries=0)
    notifier = Notifier(store, {"web": web}, tmp_path, backoff=0.01)
    [first] = notifier.send(["web"], message())
    assert first.status == "failed"
    [row] = rows(store)
    assert row.retry_at is not None
    assert row.payload is not None
    assert notifier.retry_due(utcnow()) == []  # not due yet: a minute later
    assert [r.status for r in notifier.retry_due(utcnow() + timedelta(minutes=2))] == ["failed"]
    [row] = rows(store)
    assert row.retry_at is not None  # still kept: a longer wait now
    # the receiver comes back on that port: the next round delivers the very message
    back = ThreadingHTTPServer(("127.0.0.1", port), _HookHandler)
    back.requests, back.script = [], []  # type: ignore[attr-defined]
    thread = threading.Thread(target=back.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        [sent] = notifier.retry_due(utcnow() + timedelta(hours=1))
        assert sent.status == "sent"
        body = json.loads(back.requests[0]["body"])  # type: ignore[attr-defined]
        assert body["subject"] == message().subject
        assert body["link"] == message().link
    finally:
        back.shutdown()
        back.server_close()
    [row] = rows(store)
    assert (row.status, row.retry_at) == ("sent", None)
    assert notifier.retry_due(utcnow() + timedelta(hours=2)) == []


def test_a_delivery_is_given_up_after_hours(store: Store, tmp_path: Path) -> None:
    from datetime import timedelta

    from kiban.notify.outbox import OUTBOX_HOURS
    from kiban.store.store import utcnow

    web = channel(type="webhook", url=f"http://127.0.0.1:{free_port()}/x", retries=0)
    notifier = Notifier(store, {"web": web}, tmp_path, backoff=0.01)
    notifier.send(["web"], message())
    moment = utcnow()
    rounds = 0
    while notifier.retry_due(moment) or rows(store)[0].retry_at is not None:
        moment = rows(store)[0].retry_at or moment
        rounds += 1
        assert rounds < 40
    assert rounds >= 8  # 1, 2, 4 … 30 minutes apart, for hours
    assert moment - rows(store)[0].created_at <= timedelta(hours=OUTBOX_HOURS)


def test_consumer_wording_in_their_language_and_words() -> None:
    from kiban.notify.wording import ConsumerNotice, consumer_message

    subject, text = consumer_message("at_risk", "ja", ConsumerNotice(
        description="発注担当が在庫補充の前に需要予測を見る。", usecase="stock", due="2026-12-01",
        deadline="12-01 06:00", owner="data-team", cause_kind="late_source", eta="06:40 (up to 07:10)"))
    assert subject == "【kiban】発注担当が在庫補充の前に需要予測を見る：遅れる可能性があります"
    assert "元データの到着が遅れています" in text
    assert "06:40 (up to 07:10) 頃" in text
    assert "stock" not in text
    subject, text = consumer_message("ready", "en", ConsumerNotice(
        description="Store managers read yesterday's sales.", usecase="morning", due="2026-12-01",
        deadline="12-01 08:30", owner=None, late="20 s"))
    assert subject == "[kiban] Store managers read yesterday's sales: your data is ready"
    assert "20 s after the 12-01 08:30 deadline" in text
    assert "morning" not in text
    for event in ("at_risk", "failed", "incomplete", "bad_data", "late", "ready"):
        for language in ("en", "ja"):
            subject, _ = consumer_message(event, language, ConsumerNotice(
                description="Sales.", usecase="u", due="d", deadline="x", owner="o"))
            assert ".:" not in subject
            assert "。：" not in subject
            assert "..." not in subject


# --- live: the real scheduler, real receivers on loopback ------------------------------------------------


LIVE_MODEL = '''
import kiban
import pyarrow as pa
from pathlib import Path


@kiban.asset(inputs={"sales": "lake.sales"})
def totals(sales: pa.Table) -> pa.Table:
    if (Path(__file__).parent / "broken.flag").exists():
        raise OSError("No space left on device")
    return sales
'''


class Heard:
    """Every message the loopback receivers got, in order, with the (scheduler's) time it was sent at: who
    (owners' webhook, the area managers' webhook, the 店長's mail), subject and text."""

    def __init__(self, hook: Hook, inbox: Inbox, routes: dict[str, str]) -> None:
        self.hook, self.inbox, self.routes = hook, inbox, routes
        self.log: list[dict[str, Any]] = []
        self._seen_posts = self._seen_mails = 0

    def collect(self, when: str) -> list[dict[str, Any]]:
        """The messages that arrived since the last call, labelled ``when``."""
        new: list[dict[str, Any]] = []
        for request in self.hook.requests[self._seen_posts:]:
            body = json.loads(request["body"])
            new.append({"when": when, "to": self.routes[request["path"]], "subject": body["subject"],
                        "text": body["text"], "link": body.get("link"), "fields": body.get("fields") or {}})
        self._seen_posts = len(self.hook.requests)
        for envelope in self.inbox.envelopes[self._seen_mails:]:
            mail = email.message_from_bytes(envelope.content, policy=email.policy.default)
            new.append({"when": when, "to": self.routes["mail"], "subject": str(mail["Subject"]),
                        "text": part(mail, "plain").strip(), "link": None, "fields": {}})
        self._seen_mails = len(self.inbox.envelopes)
        self.log += new
        return new

    def markdown(self) -> str:
        """The transcript as docs/service-levels.md shows it."""
        lines = []
        for m in self.log:
            lines += [f"**{m['when']} → {m['to']}**", "", "```text", f"Subject: {m['subject']}", "", m["text"]]
            lines += [f"{k}: {v}" for k, v in m["fields"].items()]
            lines += [f"link: {m['link']}"] if m["link"] else []
            lines += ["```", ""]
        return "\n".join(lines)


def test_live_who_is_told_what_and_when_and_the_incident_closes_after_the_repair(
        project_dir: Any, hook: Hook, smtp: tuple[Inbox, int], cli: Any) -> None:
    """A failed night with the real scheduler's minute check and real receivers: the owners get the cause and
    the workaround at once; the consumers (Japanese mail, English webhook) only when the last chance of a repair
    has passed; the printed workaround is run; the check closes the incident and tells everyone who heard of
    the trouble that the data is ready (owners: what fixed it) — and nobody hears anything else.

    With ``KIBAN_TRANSCRIPT=path`` the messages are written there as the transcript of docs/service-levels.md."""
    import os
    import shlex
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    from kiban.incidents import IncidentLog
    from kiban.project import load_project
    from kiban.run.runner import RunOptions, run_project
    from kiban.schedule.clock import FakeClock
    from kiban.schedule.daemon import Scheduler
    from kiban.store.store import utcnow

    inbox, port = smtp
    tokyo = ZoneInfo("Asia/Tokyo")
    deadline_local = (datetime.now(tokyo) + timedelta(hours=3)).replace(second=0, microsecond=0)
    by = deadline_local.strftime("%H:%M")
    usecase = (f"description: 店長が朝礼の前に昨日の売上を見る。\nowner: data-team\nowner_notify: [ops]\n"
               "consumers:\n  - {name: 店長, language: ja, notify: [mail]}\n"
               "  - {name: Area managers, notify: [area]}\n"
               f"assets: [warehouse.totals]\nneed: {{by: '{by}', on: every_day, calendar: none}}\n")
    config = (f"console_url: http://kiban.example/\nchannels:\n"
              f"  ops: {{type: webhook, url: '{hook.url}/ops', min_interval: 0}}\n"
              f"  area: {{type: webhook, url: '{hook.url}/area', min_interval: 0}}\n"
              f"  mail: {{type: email, smtp: 'smtp://127.0.0.1:{port}', from: kiban@shop.example, "
              f"to: [tencho@shop.example], min_interval: 0}}\n")
    root = project_dir({"models/warehouse/totals.py": LIVE_MODEL, "usecases/sales.yml": usecase},
                       {"sales": "select 1 as x"}, config=config)
    (root / "models/warehouse/broken.flag").write_text("x")
    assert run_project(load_project(root), RunOptions()).status == "failed"
    project = load_project(root)
    clock = FakeClock(utcnow() + timedelta(minutes=1))
    scheduler = Scheduler(project, Store(project.state_url), clock=clock)
    deadline = deadline_local.astimezone(UTC).replace(tzinfo=None)
    heard = Heard(hook, inbox, {"/ops": "owners (data-team, webhook)", "/area": "Area managers (en, webhook)",
                                "mail": "店長 (ja, e-mail)"})
    owners, area, tencho = "owners (data-team, webhook)", "Area managers (en, webhook)", "店長 (ja, e-mail)"

    def step(at: datetime, when: str = "") -> dict[str, list[dict[str, Any]]]:
        clock.set(at)
        assert scheduler.step()
        time.sleep(0.3)  # a sender thread's last bytes
        got: dict[str, list[dict[str, Any]]] = {}
        for m in heard.collect(when):
            got.setdefault(m["to"], []).append(m)
        return got

    try:
        got = step(clock.now(), "the run fails, 3 h before the deadline (the scheduler's next check)")
        [incident] = IncidentLog(scheduler.store, project.name).recent()
        assert incident.kind == "at_risk"
        assert incident.workaround == "kiban run +warehouse.totals"
        assert set(got) == {owners}  # the owners at once; the consumers not yet: there is time to repair
        [owner] = got[owners]
        assert "No space left on device" in owner["text"]
        assert "kiban run +warehouse.totals" in owner["text"]
        assert owner["link"] == f"http://kiban.example/incidents/{incident.id}"
        assert step(deadline - timedelta(minutes=50)) == {}  # still time: nobody hears it again
        # less than 45 minutes left: the consumers hear it now
        got = step(deadline - timedelta(minutes=44), "44 min before the deadline")
        assert set(got) == {area, tencho}  # ... and only they: the owners know already
        [warned] = got[area]
        assert warned["subject"] == "[kiban] 店長が朝礼の前に昨日の売上を見る: may be late"
        assert "warehouse" not in warned["text"]
        assert "a processing step failed" in warned["text"]
        assert warned["link"] == f"http://kiban.example/incidents/{incident.id}"
        [mail] = got[tencho]
        assert mail["subject"] == "【kiban】店長が朝礼の前に昨日の売上を見る：遅れる可能性があります"
        assert "totals" not in mail["text"]
        assert "warehouse" not in mail["text"]
        assert step(deadline - timedelta(minutes=40)) == {}  # told once
        (root / "models/warehouse/broken.flag").unlink()  # the disk is cleaned up; now the printed workaround
        words = shlex.split(incident.workaround or "")
        done = cli("--project", root, *words[1:])
        assert done.returncode == 0, done.stdout + done.stderr
        # the repair's own check (after every kiban run) closes the incident and sends the all-clear
        got = step(deadline - timedelta(minutes=30), "the printed workaround has run (its own check)")
        closed = IncidentLog(scheduler.store, project.name).require(incident.id)
        assert closed.status == "resolved"
        # (the repair's check stamps real time, the scheduler's the test's clock: compare kinds, not order)
        assert sorted(e.kind for e in IncidentLog(scheduler.store, project.name).events(incident.id)) == \
            ["at_risk", "recovered", "warned"]
        assert set(got) == {owners, area, tencho}  # everyone who heard of the trouble hears it is over
        assert [m["subject"] for m in got[area]] == ["[kiban] 店長が朝礼の前に昨日の売上を見る: your data is ready"]
        ready_ja = "【kiban】店長が朝礼の前に昨日の売上を見る：データの準備ができました"
        assert [m["subject"] for m in got[tencho]] == [ready_ja]
        [last] = got[owners]
        assert "closed, the data is ready" in last["subject"]
        assert "recovered" in last["text"]
        assert "kiban run +warehouse.totals" in last["text"]  # what fixed it
        assert step(deadline + timedelta(minutes=5)) == {}  # closed stays closed: nothing after the deadline
        if os.environ.get("KIBAN_TRANSCRIPT"):
            Path(os.environ["KIBAN_TRANSCRIPT"]).write_text(heard.markdown(), encoding="utf-8")
    finally:
        scheduler.store.close()
