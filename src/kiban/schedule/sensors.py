"""Sensors: start a job when something it reads changed, not only on its cron.

``landing: PATH``  the listing of a folder (path, size, mtime of each file matching ``pattern``) changed:
                   a partner dropped a file, or rewrote one. A sensor that sees a non-empty folder for
                   the first time fires (the data may have arrived while no scheduler ran).
``asset: NAME``    the asset was updated since the job last ran: a lake table's files changed, or a
                   model was built by someone else's run. The first look only remembers the version.

Each sensor fires at most once per ``min_interval``; a change seen sooner waits for the interval to pass.
What a sensor saw when it last fired is kept in ``trigger_states``; its update and the claim of the tick
are one transaction, so after a failover the new leader neither misses nor repeats a firing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from kiban.project import Project
from kiban.project.jobs import SensorConfig, resolve_asset
from kiban.schedule.ledger import Ledger
from kiban.store import Store
from kiban.store.schema import trigger_states


@dataclass(frozen=True)
class Observation:
    fingerprint: str
    empty: bool
    describe: str  # what is there, for the tick's reason


def _listing(folder: Path, pattern: str) -> list[tuple[str, int, int]]:
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob(pattern):
        if path.is_file() and not path.name.startswith("."):
            stat = path.stat()
            found.append((path.relative_to(folder).as_posix(), stat.st_size, stat.st_mtime_ns))
    return sorted(found)


def _digest(parts: list[tuple[object, ...]]) -> str:
    return hashlib.sha256("\n".join("|".join(map(str, p)) for p in parts).encode()).hexdigest()


def observe(project: Project, store: Store, sensor: SensorConfig) -> Observation:
    """What the sensor sees now."""
    if sensor.landing is not None:
        folder = Path(sensor.landing)
        folder = folder if folder.is_absolute() else project.root / folder
        files = _listing(folder, sensor.pattern)
        newest = max(files, key=lambda f: f[2])[0] if files else None
        text = f"{len(files)} file(s) in {sensor.landing}" + (f", newest {newest}" if newest else "")
        return Observation(_digest(list(files)), not files, text)
    assert sensor.asset is not None
    key = resolve_asset(sensor.asset, project.assets)
    asset = project.assets[key]
    if asset.layer == "lake":
        files = _listing(asset.path, "**/*.parquet")
        return Observation(_digest(list(files)), not files, f"{key} changed ({len(files)} Parquet file(s))")
    built = store.last_built(project.name).get(key)
    if built is None:
        return Observation(_digest([]), True, f"{key} was never built")
    return Observation(_digest([(built.run_id, built.ended_at)]), False, f"{key} was built by run {built.run_id}")


def fire_sensors(project: Project, store: Store, ledger: Ledger, holder: str, now: datetime,
                 jobs: list[str] | None = None) -> list[int]:
    """Look at every sensor; claim one tick per job whose sensors fired. Returns the claimed tick ids."""
    claimed: list[int] = []
    for name, job in project.config.jobs.items():
        if not job.sensors or (jobs is not None and name not in jobs):
            continue
        seen = [(sensor, observe(project, store, sensor)) for sensor in job.sensors]
        try:
            tick = _fire_job(project, store, ledger, holder, now, name, seen)
        except _Collision:  # a tick of this job at this very moment exists: the change waits for the next look
            continue
        if tick is not None:
            claimed.append(tick)
    return claimed


class _Collision(Exception):
    """Rolls back a sensor's state update when its tick could not be claimed."""


def _fire_job(project: Project, store: Store, ledger: Ledger, holder: str, now: datetime, name: str,
              seen: list[tuple[SensorConfig, Observation]]) -> int | None:
    with store.engine.begin() as conn:
        states = {row.trigger: row for row in conn.execute(trigger_states.select().where(
            trigger_states.c.project == project.name, trigger_states.c.job == name)).all()}
        reasons: list[str] = []
        for sensor, obs in seen:
            state = states.get(sensor.key)
            if state is None:
                fire = sensor.landing is not None and not obs.empty
                conn.execute(trigger_states.insert().values(
                    project=project.name, job=name, trigger=sensor.key, fingerprint=obs.fingerprint,
                    observed_at=now, fired_at=now if fire else None))
            elif state.fingerprint == obs.fingerprint:
                continue
            elif state.fired_at is not None and now - state.fired_at < timedelta(seconds=sensor.min_interval):
                continue  # changed, but fired too recently: the change waits
            else:
                fire = True
                conn.execute(trigger_states.update().where(
                    trigger_states.c.project == project.name, trigger_states.c.job == name,
                    trigger_states.c.trigger == sensor.key).values(
                    fingerprint=obs.fingerprint, observed_at=now, fired_at=now))
            if fire:
                reasons.append(f"sensor {sensor.key}: {obs.describe}")
        if not reasons:
            return None
        tick = ledger.claim(name, now, "sensor", holder, now, reason="; ".join(reasons), conn=conn)
        if tick is None:
            raise _Collision
        return tick


def forget(store: Store, project: str) -> None:
    """Drop every sensor's memory (tests, or after moving a landing folder)."""
    with store.engine.begin() as conn:
        conn.execute(sa.delete(trigger_states).where(trigger_states.c.project == project))
