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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from kiban.catalog.reading import Reader
from kiban.catalog.recipes import bind, get_recipe
from kiban.catalog.usage import Actor
from kiban.deliveries.write import write_csv, write_xlsx
from kiban.errors import KibanError, UsageError, did_you_mean
from kiban.notify.channels import SENDERS, DeliveryError, send_email
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
    now = now or datetime.now(UTC)
    started = utcnow()
    with store._tx() as conn:
        inserted = conn.execute(deliveries.insert().values(
            project=project.name, name=name, usecase=config.usecase, started_at=started,
            status=DataDeliveryStatus.RUNNING,
            attempts=0)).inserted_primary_key
        assert inserted is not None
        row_id = int(inserted[0])
    rows: int | None = None
    target: str | None = None
    destination = config.folder or f"channel {config.channel}"
    attempts = 0
    error: str | None = None
    status = DataDeliveryStatus.FAILED
    work = Path(tempfile.mkdtemp(prefix="kiban-delivery-"))
    try:
        reader = reader or Reader(project, store, kind="delivery")
        sql, params = _query(project, config)
        table = reader.arrow(sql, Actor(f"delivery:{name}"), params).table
        rows = table.num_rows
        chosen = file_name(project, name, config, now)
        path = work / chosen
        if config.format == "xlsx":
            write_xlsx(table, path, name)
        else:
            write_csv(table, path, config.encoding)
        while True:
            attempts += 1
            try:
                target = _hand_over(project, name, config, path, rows)
                status, error = DataDeliveryStatus.DELIVERED, None
                break
            except DeliveryError as exc:
                error = exc.message
                if not exc.retryable or attempts > config.retries:
                    break
                sleep(exc.retry_after if exc.retry_after is not None else RETRY_WAIT * 2 ** (attempts - 1))
    except KibanError as exc:
        error = exc.message
    finally:
        shutil.rmtree(work, ignore_errors=True)
    with store._tx() as conn:
        conn.execute(deliveries.update().where(deliveries.c.id == row_id).values(
            ended_at=utcnow(), status=status, rows=rows, file=target, destination=destination, attempts=attempts,
            error=error))
    return DeliveryRecord(row_id, name, config.usecase, started, utcnow(), status, rows, target, destination,
                          attempts, error)


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
    if channel.type == "email":
        mime = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" if path.suffix == ".xlsx" \
            else "text/csv"
        send_email(channel, message, root=project.root, attachments=[(path.name, path.read_bytes(), mime)])
        return f"email to {', '.join(channel.to)}"
    SENDERS[channel.type](channel, message, root=project.root)
    return f"{channel.type} {config.channel}"


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
    return [DeliveryRecord(r.id, r.name, r.usecase, r.started_at, r.ended_at, r.status, r.rows, r.file,
                           r.destination, r.attempts, r.error) for r in found]
