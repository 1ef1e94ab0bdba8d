"""Two projects sharing one state store each have an outbox of their own. Before migration 0020 the rows had no
project: one project's scheduler retried the other's failed messages over *its own* channel of the same name
(project B's incident text went to project A's chat room), marked them failed for good when it had no such
channel, suppressed B's alert as a duplicate of A's, and counted A's traffic in B's rate limit."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from kiban.notify import Message, Notifier
from kiban.project.config import ChannelConfig
from kiban.store import Store, utcnow
from kiban.store.schema import notifications


class _Room(ThreadingHTTPServer):
    heard: list[dict[str, Any]]


class _Handler(BaseHTTPRequestHandler):
    server: _Room

    def do_POST(self) -> None:
        self.server.heard.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0")))))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _open(port: int) -> _Room:
    room = _Room(("127.0.0.1", port), _Handler)
    room.heard = []
    threading.Thread(target=room.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return room


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    st = Store(f"sqlite:///{tmp_path}/state.db")
    yield st
    st.close()


def _ops(port: int, **more: Any) -> dict[str, ChannelConfig]:
    return {"ops": ChannelConfig.model_validate({"type": "webhook", "url": f"http://127.0.0.1:{port}/", "retries": 0,
                                                 **more})}


def _alert(project: str) -> Message:
    return Message(subject=f"{project}: morning_sales failed", text=f"{project}'s nightly batch failed.",
                   severity="critical", dedupe_key="incident:morning_sales:2026-11-30:failed")


def test_a_project_retries_only_its_own_messages_over_its_own_channel(store: Store, tmp_path: Path) -> None:
    alpha_port, beta_port = _free_port(), _free_port()
    beta_room = _open(beta_port)
    alpha = Notifier(store, _ops(alpha_port), tmp_path / "alpha", project="alpha", backoff=0.01)
    beta = Notifier(store, _ops(beta_port), tmp_path / "beta", project="beta", backoff=0.01)
    lone = Notifier(store, {}, tmp_path / "gamma", project="gamma")  # a third project without an `ops`
    try:
        [failed] = alpha.send(["ops"], _alert("alpha"))  # alpha's room is down: kept in alpha's outbox
        assert failed.status == "failed"
        later = utcnow() + timedelta(hours=1)
        assert beta.retry_due(later) == []  # beta's scheduler does not send alpha's alert to beta's room
        assert lone.retry_due(later) == []  # ... nor does gamma's give it up for want of an `ops` channel
        assert beta_room.heard == []
        [sent] = beta.send(["ops"], _alert("beta"))  # same event key as alpha's: not a duplicate of it
        assert sent.status == "sent"
        assert [m["subject"] for m in beta_room.heard] == ["beta: morning_sales failed"]
        alpha_room = _open(alpha_port)
        try:
            [again] = alpha.retry_due(later)
            assert again.status == "sent"
            assert [m["subject"] for m in alpha_room.heard] == ["alpha: morning_sales failed"]
        finally:
            alpha_room.shutdown()
            alpha_room.server_close()
    finally:
        beta_room.shutdown()
        beta_room.server_close()
    with store.engine.connect() as conn:
        kept = conn.execute(sa.select(notifications.c.project, notifications.c.status)
                            .order_by(notifications.c.id)).all()
    assert [tuple(r) for r in kept] == [("alpha", "sent"), ("beta", "sent")]


def test_one_projects_traffic_neither_suppresses_nor_rate_limits_anothers(store: Store, tmp_path: Path) -> None:
    port = _free_port()
    room = _open(port)
    try:
        alpha = Notifier(store, _ops(port, min_interval=3600), tmp_path, project="alpha", rate_limit=3)
        beta = Notifier(store, _ops(port, min_interval=3600), tmp_path, project="beta", rate_limit=3)
        assert [r.status for r in alpha.send(["ops"], _alert("alpha"))] == ["sent"]
        assert [r.status for r in alpha.send(["ops"], _alert("alpha"))] == ["suppressed"]  # its own duplicate
        for n in range(2):
            alpha.send(["ops"], Message(subject=f"alpha {n}", text="x", severity="info", dedupe_key=f"alpha:{n}"))
        assert alpha.send(["ops"], Message(subject="alpha over", text="x", severity="info",
                                           dedupe_key="alpha:over"))[0].status == "suppressed"  # its rate limit
        assert [r.status for r in beta.send(["ops"], _alert("beta"))] == ["sent"]
    finally:
        room.shutdown()
        room.server_close()
