"""Usage: every console query, recipe run and export, who ran it for which team, and the assets it read.

One row per query in ``query_log`` (the query history), one row per asset read in ``query_assets``.
The reports answer: who uses the platform each week, which assets they read, how much is self-served
versus asked for through data requests, and which assets nobody has read in N days.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa

from kiban.catalog.safety import check_query
from kiban.errors import KibanError
from kiban.store import Store, utcnow
from kiban.store.schema import data_requests, query_assets, query_log

if TYPE_CHECKING:
    from kiban.graph import Graph
    from kiban.project import Project


@dataclass(frozen=True)
class Actor:
    """Who runs a query: the user, the team it counts for, and whether they may see PII values."""

    user: str
    team: str | None = None
    pii_clearance: bool = False


@dataclass(frozen=True)
class QueryRecord:
    id: int
    at: datetime
    user: str
    team: str | None
    kind: str
    name: str | None
    sql: str
    status: str
    rows: int | None
    seconds: float | None
    error: str | None
    pii_shown: bool = False


@dataclass(frozen=True)
class QueryEntry:
    """One query to record (``log_query``): what it was, how it ended and what it read.

    ``kind`` is query, recipe or export; ``status`` ok, refused, failed or timeout."""

    kind: str
    sql: str
    status: str
    assets: Iterable[str] = ()
    name: str | None = None
    rows: int | None = None
    seconds: float | None = None
    error: str | None = None
    pii_shown: bool = False


def log_query(store: Store, project: str, actor: Actor, entry: QueryEntry) -> int:
    """Record one query (ok, refused, failed or timeout) and the assets it read; returns its id."""
    now = utcnow()
    kind, name, sql, status, rows = entry.kind, entry.name, entry.sql, entry.status, entry.rows
    seconds, error, pii_shown, assets = entry.seconds, entry.error, entry.pii_shown, entry.assets
    with store._tx() as conn:
        result = conn.execute(query_log.insert().values(
            project=project, at=now, user_name=actor.user, team=actor.team, kind=kind, name=name, sql=sql,
            status=status, rows=rows, seconds=seconds, error=error, pii_shown=pii_shown))
        query_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        keys = sorted(set(assets))
        if keys:
            conn.execute(query_assets.insert(), [dict(query_id=query_id, asset=a, project=project, at=now)
                                                 for a in keys])
    return query_id


def history(store: Store, project: str, user: str | None = None, limit: int = 50) -> list[QueryRecord]:
    """The newest queries of the project (of one user when given), newest first."""
    query = query_log.select().where(query_log.c.project == project)
    if user is not None:
        query = query.where(query_log.c.user_name == user)
    with store.engine.connect() as conn:
        rows = conn.execute(query.order_by(query_log.c.id.desc()).limit(limit)).fetchall()
    return [QueryRecord(r.id, r.at, r.user_name, r.team, r.kind, r.name, r.sql, r.status, r.rows, r.seconds,
                        r.error, bool(r.pii_shown)) for r in rows]


@dataclass(frozen=True)
class TeamWeek:
    week: str  # ISO week, e.g. 2026-W48
    team: str
    users: int
    queries: int  # console queries and exports
    recipes: int  # recipe runs
    assets: int  # distinct assets read
    requests: int  # data requests opened


def weekly(store: Store, project: str, weeks: int = 8, now: datetime | None = None) -> list[TeamWeek]:
    """Active users, self-served queries, recipe runs, assets read and requests opened, per team and ISO week."""
    since = (now or utcnow()) - timedelta(weeks=weeks)
    with store.engine.connect() as conn:
        logs = conn.execute(sa.select(query_log.c.id, query_log.c.at, query_log.c.user_name, query_log.c.team,
                                      query_log.c.kind)
                            .where(query_log.c.project == project, query_log.c.at >= since,
                                   query_log.c.status == "ok")).fetchall()
        reads = conn.execute(sa.select(query_assets.c.query_id, query_assets.c.asset)
                             .where(query_assets.c.project == project, query_assets.c.at >= since)).fetchall()
        asks = conn.execute(sa.select(data_requests.c.created_at, data_requests.c.team, data_requests.c.requester)
                            .where(data_requests.c.project == project,
                                   data_requests.c.created_at >= since)).fetchall()
    read_by: dict[int, list[str]] = {}
    for query_id, asset in reads:
        read_by.setdefault(query_id, []).append(asset)
    users: dict[tuple[str, str], set[str]] = {}
    assets: dict[tuple[str, str], set[str]] = {}
    counts: dict[tuple[str, str], dict[str, int]] = {}

    def group(at: datetime, team: str | None) -> tuple[str, str]:
        year, week, _ = at.isocalendar()
        key = (f"{year}-W{week:02d}", team or "-")
        users.setdefault(key, set())
        assets.setdefault(key, set())
        counts.setdefault(key, {"queries": 0, "recipes": 0, "requests": 0})
        return key

    for row in logs:
        key = group(row.at, row.team)
        users[key].add(row.user_name)
        assets[key].update(read_by.get(row.id, []))
        counts[key]["recipes" if row.kind == "recipe" else "queries"] += 1
    for ask in asks:
        counts[group(ask.created_at, ask.team)]["requests"] += 1
    return [TeamWeek(week, team, len(users[(week, team)]), c["queries"], c["recipes"], len(assets[(week, team)]),
                     c["requests"]) for (week, team), c in sorted(counts.items())]


def last_read(store: Store, project: str) -> dict[str, datetime]:
    """The newest time each asset was read by a query, recipe or export."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(query_assets.c.asset, sa.func.max(query_assets.c.at))
                            .where(query_assets.c.project == project).group_by(query_assets.c.asset)).fetchall()
    return {asset: at for asset, at in rows}


def read_counts(store: Store, project: str, since: datetime) -> dict[str, int]:
    """How often each asset was read by a query, recipe or export since ``since``."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(query_assets.c.asset, sa.func.count())
                            .where(query_assets.c.project == project, query_assets.c.at >= since)
                            .group_by(query_assets.c.asset)).fetchall()
    return {asset: int(n) for asset, n in rows}


@dataclass(frozen=True)
class Unused:
    asset: str
    last_read: datetime | None  # None: never read by a query


def unused(store: Store, project: Project, graph: Graph, days: int, now: datetime | None = None) -> list[Unused]:
    """Assets that no use case or initiative lists, no recipe reads and no query has read in ``days`` days.

    An asset that feeds a used asset is in use too (it is read to build it), so only the assets with no
    used asset downstream are listed.
    """
    from kiban.catalog.recipes import load_recipes
    cutoff = (now or utcnow()) - timedelta(days=days)
    seen = last_read(store, project.name)
    used = {a for a, at in seen.items() if at >= cutoff}
    for usecase in project.usecases.values():
        used.update(usecase.config.assets)
    for initiative in project.initiatives.values():  # an asset an initiative relies on creates value (kiban.value)
        used.update(k for k in initiative.config.assets if k in graph.assets)
    for recipe in load_recipes(project).values():
        try:
            used.update(check_query(recipe.sql, graph.readable).assets)
        except KibanError:
            continue
    needed = set(used)
    for key in used:
        needed |= graph.upstream(key)
    return [Unused(key, seen.get(key)) for key in graph.order if key not in needed]
