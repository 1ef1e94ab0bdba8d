"""The outbox: deduplicate, rate-limit, retry, record — and never break the caller.

Notifications are a side effect of runs and service-level checks. A dead Slack webhook or an SMTP server
that is down must not turn a successful run into a failed one, so :meth:`Notifier.send` never raises: every
outcome, good or bad, is a :class:`DeliveryResult` and a row in the ``notifications`` table, and failures are
logged on the ``kiban.notify`` logger. The table doubles as the memory for deduplication ("told them already
five minutes ago") and rate limiting, so both hold across runs and processes that share a state store. Its
rows belong to a project: two projects sharing a store each deduplicate, rate-limit and retry their own (a
channel named ``ops`` in one project's kiban.yml is not the other's ``ops``). Within
a process, sends to one channel are serialised; two processes sending the same key in the same instant can
still both deliver (the check is a read, not a lock) — a rare duplicate is better than a lost alert.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from kiban.errors import did_you_mean
from kiban.notify.channels import DEFAULT_TIMEOUT, SENDERS, DeliveryError, scrub, secrets_of
from kiban.notify.message import Message
from kiban.project.config import ChannelConfig
from kiban.status import DeliveryStatus
from kiban.store import Store
from kiban.store.schema import notifications
from kiban.store.store import utcnow

if TYPE_CHECKING:
    from kiban.project import Project

log = logging.getLogger("kiban.notify")

RATE_LIMIT = 20  # messages per channel per RATE_WINDOW: a flapping pipeline must not flood a chat room
RATE_WINDOW = timedelta(minutes=1)
BACKOFF_BASE = 0.5  # seconds before the 2nd attempt; doubles each time, with ±20 % jitter
MAX_WAIT = 30.0  # longest single wait, also the cap on a server's Retry-After
# A delivery still failing after its quick retries stays in the outbox and is tried again (``retry_due``, from
# the scheduler every minute) after 1, 2, 4 … minutes, at most every 30 minutes, for OUTBOX_HOURS.
OUTBOX_FIRST = timedelta(minutes=1)
OUTBOX_LONGEST = timedelta(minutes=30)
OUTBOX_HOURS = 6


@dataclass(frozen=True)
class DeliveryResult:
    """What happened to a message on one channel.

    ``status`` is ``sent``, ``failed`` or ``suppressed``; ``error`` says why it failed or why it was
    suppressed (never containing a secret). ``attempts`` counts the tries actually made (0 when suppressed).
    """

    channel: str
    status: str
    attempts: int = 0
    error: str | None = None

    @property
    def sent(self) -> bool:
        return self.status == DeliveryStatus.SENT


class Notifier:
    """Send :class:`Message` s over the channels of ``kiban.yml``, remembering what went out in ``store``."""

    def __init__(self, store: Store, channels: Mapping[str, ChannelConfig], project_root: Path | str, *,
                 project: str = "", rate_limit: int = RATE_LIMIT, backoff: float = BACKOFF_BASE,
                 sleep: Callable[[float], None] = time.sleep, now: Callable[[], datetime] = utcnow) -> None:
        """``project``: whose outbox this is (its rows, and only those, are deduplicated against and retried).
        ``sleep`` and ``now`` are the clock (backoff waits; duplicate and rate windows): tests pass a fake one."""
        self.store = store
        self.project = project
        self.channels = dict(channels)
        self.root = Path(project_root)
        self.rate_limit = rate_limit
        self.backoff = backoff
        self.timeout = DEFAULT_TIMEOUT  # seconds a channel's one attempt may take
        self._sleep = sleep
        self._now = now
        self._guard = threading.Lock()
        self._channel_locks: dict[str, threading.Lock] = {}

    @classmethod
    def of(cls, project: Project, store: Store) -> Notifier:
        """The notifier of ``project``: its channels, its folder (for secrets files) and its rows of the outbox."""
        return cls(store, dict(project.config.channels), project.root, project=project.name)

    def send(self, channel_names: list[str], message: Message) -> list[DeliveryResult]:
        """Deliver ``message`` to each named channel (each name once, in order). Never raises."""
        if isinstance(channel_names, str):  # send("ops", ...) must not mean channels "o", "p" and "s"
            channel_names = [channel_names]
        names = list(dict.fromkeys(channel_names))
        if len(names) <= 1:
            return [self._send_one(name, message) for name in names]
        # in parallel: a dead channel's timeouts and retries must not delay the others
        with ThreadPoolExecutor(max_workers=min(8, len(names)), thread_name_prefix="kiban-notify") as pool:
            return list(pool.map(lambda name: self._send_one(name, message), names))

    def retry_due(self, now: datetime | None = None) -> list[DeliveryResult]:
        """Send again what the outbox holds and is due (failed for a transient reason, less than
        :data:`OUTBOX_HOURS` ago). Never raises."""
        now = now or utcnow()
        n = notifications.c
        try:
            with self.store.engine.connect() as conn:
                rows = conn.execute(sa.select(n.id, n.channel, n.payload, n.attempts, n.created_at)
                                    .where(self._ours(), n.status == DeliveryStatus.FAILED,
                                           n.retry_at.is_not(None), n.retry_at <= now)
                                    .order_by(n.retry_at).limit(100)).all()
        except Exception as exc:
            log.warning("cannot read the notification outbox: %s", exc)
            return []
        out = []
        for row in rows:
            try:
                message = Message(**json.loads(row.payload))
            except (TypeError, ValueError) as exc:
                self._settle(row.id, DeliveryStatus.FAILED, row.attempts, f"cannot read the stored message: {exc}",
                             None)
                continue
            config = self.channels.get(row.channel)
            if config is None:
                self._settle(row.id, DeliveryStatus.FAILED, row.attempts, f"channel {row.channel} no longer exists",
                             None)
                continue
            with self._lock(row.channel):
                attempts, failure, retryable = self._attempts(row.channel, config, message)
            total = row.attempts + attempts
            later = _next_try(now, row.created_at, total) if failure and retryable else None
            delivered = DeliveryStatus.SENT if failure is None else DeliveryStatus.FAILED
            self._settle(row.id, delivered, total, failure, later)
            out.append(DeliveryResult(row.channel, delivered, total, failure))
        return out

    def _settle(self, row_id: int, status: str, attempts: int, error: str | None, retry_at: datetime | None) -> None:
        now = utcnow()
        try:
            with self.store.engine.begin() as conn:
                conn.execute(notifications.update().where(notifications.c.id == row_id).values(
                    status=status, attempts=attempts, error=error, retry_at=retry_at,
                    sent_at=now if status == DeliveryStatus.SENT else None))
        except Exception as exc:
            log.warning("could not update the notification outbox: %s", exc)

    # -- one channel --------------------------------------------------------------------------------
    def _send_one(self, name: str, message: Message) -> DeliveryResult:
        try:
            return self._deliver(name, message)
        except Exception as exc:  # the last line of defence: a bug here must not break a run either
            config = self.channels.get(name)
            error = f"{type(exc).__name__}: {exc}"
            if config is not None:
                error = scrub(error, secrets_of(config, self.root))
            log.error("notification %r to channel %s failed unexpectedly: %s", message.subject, name, error)
            return DeliveryResult(name, DeliveryStatus.FAILED, 0, error)

    def _deliver(self, name: str, message: Message) -> DeliveryResult:
        config = self.channels.get(name)
        if config is None:
            known = ", ".join(sorted(self.channels)) or "none"
            hint = did_you_mean(name, self.channels)
            error = f"unknown channel '{name}'" + (f" ({hint})" if hint else f" (kiban.yml defines: {known})")
            return self._finish(name, message, DeliveryStatus.FAILED, 0, error)
        # One sender per channel at a time in this process, so that check-then-send cannot double up.
        with self._lock(name):
            reason = self._suppression(name, config, message)
            if reason:
                return self._finish(name, message, DeliveryStatus.SUPPRESSED, 0, reason)
            attempts, failure, retryable = self._attempts(name, config, message)
            return self._finish(name, message, DeliveryStatus.SENT if failure is None else DeliveryStatus.FAILED,
                                attempts, failure,
                                keep=failure is not None and retryable)

    def _ours(self) -> sa.ColumnElement[bool]:
        """This project's rows of the outbox (rows written before migration 0020 have no project: anyone's)."""
        return sa.or_(notifications.c.project == self.project, notifications.c.project.is_(None))

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._channel_locks.setdefault(name, threading.Lock())

    def _suppression(self, name: str, config: ChannelConfig, message: Message) -> str | None:
        """Why this message must not go out now, or None."""
        now, n = self._now(), notifications.c
        with self.store.engine.connect() as conn:
            if config.min_interval > 0:
                since = now - timedelta(seconds=config.min_interval)
                last = conn.execute(sa.select(sa.func.max(n.sent_at)).where(
                    self._ours(), n.channel == name, n.dedupe_key == _key(message), n.status == DeliveryStatus.SENT,
                    n.sent_at >= since)).scalar()
                if last is not None:
                    age = (now - last).total_seconds()
                    return f"duplicate: sent {age:.1f} s ago (min_interval is {config.min_interval:g} s)"
            recent = conn.execute(sa.select(sa.func.count()).select_from(notifications).where(
                self._ours(), n.channel == name, n.status.in_((DeliveryStatus.SENT, DeliveryStatus.FAILED)),
                n.created_at >= now - RATE_WINDOW)).scalar()
        if recent is not None and recent >= self.rate_limit:
            return f"rate limit: {recent} messages on this channel in the last minute (at most {self.rate_limit})"
        return None

    def _attempts(self, name: str, config: ChannelConfig, message: Message) -> tuple[int, str | None, bool]:
        """Try up to ``retries + 1`` times; only transient failures (network, 429, 5xx) are retried."""
        send, secrets = SENDERS[config.type], secrets_of(config, self.root)
        attempt = 0
        while True:
            attempt += 1
            try:
                send(config, message, root=self.root, timeout=self.timeout)
                return attempt, None, False
            except DeliveryError as exc:
                error, retryable, retry_after = scrub(str(exc), secrets), exc.retryable, exc.retry_after
            except Exception as exc:  # a sender bug or a malformed message: not worth retrying
                error, retryable, retry_after = scrub(f"{type(exc).__name__}: {exc}", secrets), False, None
            if not retryable or attempt > config.retries:
                return attempt, error, retryable
            delay = self._delay(attempt, retry_after)
            log.info("channel %s: attempt %d failed (%s); trying again in %.1f s", name, attempt, error, delay)
            self._sleep(delay)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:  # the server knows best, within reason
            return min(retry_after, MAX_WAIT)
        return min(self.backoff * 2 ** (attempt - 1) * random.uniform(0.8, 1.2), MAX_WAIT)

    def _finish(self, name: str, message: Message, status: str, attempts: int, error: str | None,
                keep: bool = False) -> DeliveryResult:
        """Record the outcome (a store that cannot be written is logged, not raised) and log it; with ``keep``
        the message stays in the outbox to be tried again later (:meth:`retry_due`)."""
        now = self._now()
        row = {"project": self.project, "channel": name[:200], "dedupe_key": _key(message),
               "subject": message.subject, "status": status,
               "attempts": attempts, "error": error, "created_at": now,
               "sent_at": now if status == DeliveryStatus.SENT else None,
               "payload": json.dumps(message.as_dict(), ensure_ascii=False) if keep else None,
               "retry_at": _next_try(now, now, 0) if keep else None}
        try:
            with self.store.engine.begin() as conn:
                conn.execute(notifications.insert().values(**row))
        except Exception as exc:
            log.warning("could not record notification to channel %s in the state store: %s", name, exc)
        if status == DeliveryStatus.FAILED:
            log.warning("notification %r to channel %s failed after %d attempt(s): %s",
                        message.subject, name, attempts, error)
        else:
            log.info("notification %r to channel %s: %s%s", message.subject, name, status,
                     f" ({error})" if error else "")
        return DeliveryResult(name, status, attempts, error)


def _next_try(now: datetime, created: datetime, tries: int) -> datetime | None:
    """When the outbox tries again: 1, 2, 4 … minutes later (at most 30), None after OUTBOX_HOURS."""
    wait = min(OUTBOX_FIRST * 2 ** min(tries, 10), OUTBOX_LONGEST)
    return now + wait if now + wait <= created + timedelta(hours=OUTBOX_HOURS) else None


def _key(message: Message) -> str:
    return message.dedupe_key[:300]  # the column's width; longer keys still deduplicate by their prefix


def withdraw_retries(store: Store, project: str, prefixes: list[str], reason: str) -> int:
    """Stop the outbox retrying ``project``'s messages whose dedupe key starts with one of ``prefixes`` (what they
    said no longer holds: their incident was closed). They stay ``failed``, with ``reason``; returns how many.
    Never raises."""
    if not prefixes:
        return 0
    n = notifications.c
    try:
        with store.engine.begin() as conn:
            result = conn.execute(notifications.update().where(
                sa.or_(n.project == project, n.project.is_(None)), n.status == DeliveryStatus.FAILED,
                n.retry_at.is_not(None), sa.or_(*(n.dedupe_key.startswith(p[:300], autoescape=True) for p in prefixes)))
                .values(retry_at=None, error=reason))
        return int(result.rowcount or 0)
    except Exception as exc:
        log.warning("could not withdraw retries from the notification outbox: %s", exc)
        return 0
