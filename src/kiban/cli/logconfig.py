"""Where kiban's log lines go when it runs as a command: the scheduler, the server (`kiban serve`), workers and every
other command write them to standard error as ``time level logger: message``, at the level of ``--log-level`` or
``KIBAN_LOG_LEVEL`` (default ``warning``). Library code only logs (``logging.getLogger(__name__)``); choosing where
the lines go is the front end's business, so a program that embeds kiban keeps its own logging configuration.
"""

from __future__ import annotations

import logging
import sys

from kiban.errors import UsageError

LEVELS = ("debug", "info", "warning", "error", "critical")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Stderr(logging.StreamHandler):
    """Always the current ``sys.stderr`` (a test runner or a daemon may replace it after start-up)."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def configure(level: str | None) -> None:
    """Send the ``kiban`` loggers' lines at ``level`` and above to standard error (once per process)."""
    name = (level or "warning").strip().lower()
    if name not in LEVELS:
        raise UsageError(f"unknown log level '{level}'", f"use one of {', '.join(LEVELS)} (--log-level or "
                         "KIBAN_LOG_LEVEL)")
    logger = logging.getLogger("kiban")
    logger.setLevel(name.upper())
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter(FORMAT))
        logger.addHandler(handler)
