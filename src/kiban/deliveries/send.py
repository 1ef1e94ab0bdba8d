"""One delivery from start to end: read, write the file, hand it over (retried), and record how it went.

The data is read like a notebook reads it (:class:`kiban.catalog.reading.Reader`): from the published snapshot,
as the actor ``delivery:NAME``, which has no PII clearance — a file that leaves the platform never carries a
clear PII value. Destinations: a folder (written under a temporary name, then renamed: a reader of the folder
never sees half a file), an ``email`` channel (the file as an attachment, via SMTP), or a ``slack``/``webhook``
channel (a message naming the file, its rows and where it is). A failure a retry can cure (a timeout, a 5xx, an
SMTP 4xx) is retried ``retries`` times with a growing wait; every delivery is a row of the ``deliveries`` table,
shown by ``kiban deliveries`` and with its use case.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from kiban.catalog.reading import Reader
from kiban.catalog.recipes import bind, get_recipe
from kiban.catalog.usage import Actor
from kiban.deliveries.links import keep
from kiban.deliveries.write import write_csv, write_xlsx
from kiban.errors import KibanError, UsageError, did_you_mean
from kiban.notify.channels import SENDERS, DeliveryError, send_email, send_webhook_file
from kiban.notify.message import Message
from kiban.project import Project
from kiban.project.config import DeliveryConfig
from kiban.quoting import relation
from kiban.status import DataDeliveryStatus
from kiban.store import Store, utcnow
from kiban.store.schema import deliveries

RETRY_WAIT = 1.0  # seconds before the first retry; doubled each time


@dataclass(frozen=True)
class DeliveryRecord:
    id: int
    name: str
    usecase: str | None
    started_at: datetime
    ended_at: datetime | None
    status: str
    rows: int | None
    file: str | None
    destination: str | None
    attempts: int
    error: str | None
    trigger: str | None = None
    scheduled_for: datetime | None = None
    retry_at: datetime | None = None


def config_of(project: Project, name: str) -> DeliveryConfig:
    found = project.config.deliveries.get(name)
    if found is None:
        raise UsageError(f"no delivery named '{name}'", did_you_mean(name, project.config.deliveries)
                         or "deliveries are declared under `deliveries:` in kiban.yml")
    return found


def file_name(project: Project, name: str, config: DeliveryConfig, now: datetime) -> str:
    local = now.astimezone(ZoneInfo(project.config.timezone)).date().isoformat()
    pattern = config.file or f"{{name}}_{{date}}.{config.format}"
    chosen = pattern.replace("{date}", local).replace("{name}", name)
    if "/" in chosen or "\\" in chosen or chosen.startswith("."):
        raise UsageError(f"delivery {name}: the file name '{chosen}' must be a plain name, not a path")
    return chosen


def deliver(project: Project, store: Store, name: str, *, reader: Reader | None = None,
            sleep: Callable[[float], None] = time.sleep, now: datetime | None = None) -> DeliveryRecord:
    """Deliver ``name`` once (with its retries); returns the recorded outcome. Never raises for a failed
    hand-over: the record says ``failed`` with the reason (a wrong name or config raises UsageError)."""
    config = config_of(project, name)
    started = utcnow()
    with store._tx() as conn:
        inserted = conn.execute(deliveries.insert().values(
            project=project.name, name=name, usecase=config.usecase, started_at=started,
            status=DataDeliveryStatus.RUNNING, trigger=DeliveryTrigger.HAND, attempts=0)).inserted_primary_key
        assert inserted is not None
        row_id = int(inserted[0])
    outcome = attempt(project, store, name, config, Tries(reader=reader, sleep=sleep, retries=config.retries), now)
    settle(store, row_id, outcome)
    return DeliveryRecord(row_id, name, config.usecase, started, utcnow(), outcome.status, outcome.rows,
                          outcome.target, outcome.destination, outcome.attempts, outcome.error)


class DeliveryTrigger:
    """What started a delivery (column ``trigger``)."""

    HAND = "hand"  # kiban deliver
    SCHEDULE = "schedule"  # its `schedule:` cron tick, claimed by the scheduler
    USECASE = "usecase"  # `after: usecase_met`, claimed by the scheduler once per due day


@dataclass
class Tries:
    """How one call of :func:`attempt` tries: the hand-overs it retries in place (``kiban deliver`` waits; the
    scheduler's outbox tries once and comes back later)."""

    reader: Reader | None = None
    sleep: Callable[[float], None] = time.sleep
    retries: int = 0
    before: int = 0  # attempts made by earlier calls (the outbox's count)


@dataclass
class Outcome:
    status: DataDeliveryStatus
    rows: int | None
    target: str | None
    destination: str
    attempts: int  # in all, earlier calls included
    error: str | None
    retryable: bool = False  # the last failure is one a later attempt can cure
    retry_at: datetime | None = None


def attempt(project: Project, store: Store, name: str, config: DeliveryConfig, tries: Tries,
            now: datetime | None = None) -> Outcome:
    """Read, write the file, hand it over (``tries.retries`` times more in place when it fails curably)."""
    now = now or datetime.now(UTC)
    destination = config.folder or f"channel {config.channel}"
    outcome = Outcome(DataDeliveryStatus.FAILED, None, None, destination, tries.before, None)
    work = Path(tempfile.mkdtemp(prefix="kiban-delivery-"))
    try:
        reader = tries.reader or Reader(project, store, kind="delivery")
        sql, params = _query(project, config)
        table = reader.arrow(sql, Actor(f"delivery:{name}"), params).table
        outcome.rows = table.num_rows
        chosen = file_name(project, name, config, now)
        path = work / chosen
        if config.format == "xlsx":
            write_xlsx(table, path, name)
        else:
            write_csv(table, path, config.encoding)
        made = 0
        while True:
            made += 1
            outcome.attempts += 1
            try:
                outcome.target = _hand_over(project, name, config, path, table.num_rows)
                outcome.status, outcome.error, outcome.retryable = DataDeliveryStatus.DELIVERED, None, False
                break
            except DeliveryError as exc:
                outcome.error, outcome.retryable = exc.message, exc.retryable
                if not exc.retryable or made > tries.retries:
                    break
                tries.sleep(exc.retry_after if exc.retry_after is not None else RETRY_WAIT * 2 ** (made - 1))
    except KibanError as exc:
        outcome.attempts += 1
        outcome.error = exc.message
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return outcome


def settle(store: Store, row_id: int, outcome: Outcome) -> None:
    with store._tx() as conn:
        conn.execute(deliveries.update().where(deliveries.c.id == row_id).values(
            ended_at=utcnow(), status=outcome.status, rows=outcome.rows, file=outcome.target,
            destination=outcome.destination, attempts=outcome.attempts, error=outcome.error,
            retry_at=outcome.retry_at))


def _query(project: Project, config: DeliveryConfig) -> tuple[str, dict[str, object] | None]:
    if config.mart is not None:
        return f"select * from {relation(config.mart.lower())}", None
    assert config.recipe is not None
    recipe = get_recipe(project, config.recipe)
    return recipe.config.sql, bind(recipe, dict(config.params)) or None


def _hand_over(project: Project, name: str, config: DeliveryConfig, path: Path, rows: int) -> str:
    """Put the file where it goes; returns where it went (a path, or the channel)."""
    if config.folder is not None:
        folder = Path(config.folder)
        folder = folder if folder.is_absolute() else project.root / folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
            temporary = folder / f".{path.name}.part"
            shutil.copyfile(path, temporary)
            os.replace(temporary, folder / path.name)
        except OSError as exc:
            raise DeliveryError(f"cannot write {path.name} to {folder}: {exc.strerror or exc}",
                                retryable=True) from None
        return str(folder / path.name)
    assert config.channel is not None
    channel = project.config.channels.get(config.channel)
    if channel is None:
        raise DeliveryError(f"delivery {name}: no channel named '{config.channel}' in kiban.yml")
    message = Message(subject=f"{name}: {path.name}", severity="info", dedupe_key=f"delivery:{name}:{path.name}",
                      text=f"The delivery {name} is ready: {path.name} ({rows:,} rows).",
                      fields={"file": path.name, "rows": f"{rows:,}", "project": project.name},
                      link=project.config.console_url)
    mime = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" if path.suffix == ".xlsx" \
        else "text/csv"
    if channel.type == "email":
        send_email(channel, message, root=project.root, attachments=[(path.name, path.read_bytes(), mime)])
        return f"email to {', '.join(channel.to)}"
    mode = config.chat_file
    if mode == "upload":
        if channel.type != "webhook":
            raise DeliveryError(f"delivery {name}: a {channel.type} webhook cannot carry a file; "
                                "use `chat_file: link` (a served download) or a webhook channel")
        send_webhook_file(channel, message, (path.name, path.read_bytes(), mime), root=project.root)
        return f"{channel.type} {config.channel} (file attached)"
    if mode == "link":
        if not project.config.console_url:
            raise DeliveryError(f"delivery {name}: `chat_file: link` needs `console_url:` in kiban.yml "
                                "(where the console serves the download)")
        where, expires = keep(project, path, utcnow(), config.link_hours)
        link = project.config.console_url.rstrip("/") + where
        message = replace(message, text=f"{message.text}\nDownload (until {expires:%Y-%m-%d %H:%M} UTC): {link}",
                          link=link, fields={**message.fields, "download": link,
                                             "expires": f"{expires:%Y-%m-%d %H:%M} UTC"})
    SENDERS[channel.type](channel, message, root=project.root)
    return f"{channel.type} {config.channel}" + (" (download link)" if mode == "link" else "")


def history(store: Store, project: str, name: str | None = None, limit: int = 50, *,
            usecase: str | None = None) -> list[DeliveryRecord]:
    """The latest deliveries, newest first (of one delivery, or of the deliveries serving one use case)."""
    query = sa.select(deliveries).where(deliveries.c.project == project)
    if name is not None:
        query = query.where(deliveries.c.name == name)
    if usecase is not None:
        query = query.where(deliveries.c.usecase == usecase)
    with store.engine.connect() as conn:
        found = conn.execute(query.order_by(deliveries.c.id.desc()).limit(limit)).all()
    return [record(r) for r in found]


def record(r: Any) -> DeliveryRecord:
    return DeliveryRecord(r.id, r.name, r.usecase, r.started_at, r.ended_at, r.status, r.rows, r.file,
                          r.destination, r.attempts, r.error, r.trigger, r.scheduled_for, r.retry_at)
