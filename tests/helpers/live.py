"""A real uvicorn server on a free loopback port serving ``kiban serve``'s app, and polling until a condition holds."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.helpers.timing import wait_for


def free_port() -> int:
    """A loopback port free at the time of asking."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(root: Path, poll: float = 0.1, heartbeat: float = 0.4) -> Iterator[tuple[str, Any]]:
    """(base URL, app) of ``kiban serve``'s app in a real uvicorn on a free loopback port."""
    import uvicorn

    from kiban.web import create_app

    app = create_app(root)
    app.state.live.update(poll=poll, heartbeat=heartbeat)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 60, 0.05, "uvicorn to start")
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(10)
        assert not thread.is_alive(), "the server did not stop (an event stream held it?)"


def wait_until(check: Callable[[], Any], timeout: float = 30.0) -> None:
    """Poll ``check()`` every 50 ms until it is true; fail after ``timeout`` seconds (generous: a loaded machine
    is slow to repaint, and only a broken page ever waits it out). (In a browser test, Playwright's
    wait_for_function evaluates a string, which the console's CSP rightly forbids: poll instead.)"""
    wait_for(check, timeout, 0.05, "the page")
