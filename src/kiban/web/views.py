"""The data behind each page and API answer, read from the same core functions the CLI uses.

``Site`` holds the loaded project, its graph and the state store; every view is a function of a site that
returns one model of ``kiban.web.models``. What is costly to read (the service-level assessment, the board, the
runs list, an asset's history) is shared by all requests until the store's *pulse* moves: a run starts or
progresses, a check result or an incident is recorded, by this server or any other process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, overload
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from kiban.catalog import definitions
from kiban.checks import history as check_history
from kiban.errors import KibanError, SelectionError, did_you_mean
from kiban.graph import Graph, build_graph, select
from kiban.incidents import IncidentLog
from kiban.messages import Part, part, say
from kiban.project import Project, load_project
from kiban.slo.impact import blast_radius
from kiban.slo.predict import Durations, Predictor, RunState
from kiban.slo.service import assess
from kiban.status import AttemptStatus, IncidentStatus, RunStatus, Verdict
from kiban.store import AttemptRecord, RunRecord, Store, utcnow
from kiban.store.schema import attempts as attempts_table
from kiban.store.schema import check_results
from kiban.store.schema import incidents as incidents_table
from kiban.store.schema import runs as runs_table
from kiban.web import fixes
from kiban.web import models as m

log = logging.getLogger(__name__)
T = TypeVar("T")
ASSESS_TTL = 60.0  # seconds an assessment is shared while nothing happens; see Site.assessment
STATES_TTL = 60.0  # every asset's latest state (the lineage graph's colours)
TODAY_TTL = 5.0  # the board as a whole (its forecasts move with the clock while a run goes)
PULSE = 0.5  # seconds the store's pulse is shared (the live pages' event streams look this often)
RUNS_TTL = 10.0  # the runs list (computed again at once when a run moves; meanwhile running runs' durations)


class Site:
    """The project being served. Reloaded from disk before an action runs, so a fix on disk is picked up."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Any]] = {}
        self._computing: dict[str, threading.Lock] = {}
        self._kept: dict[str, tuple[Any, Any]] = {}  # name → (version, value); one entry per name
        self._seen: dict[str, tuple[Any, datetime | None]] = {}  # following(): the pulse a value was computed at
        defined = definitions.version(root)  # before the load: a change during it shows at the next look
        self.project: Project = load_project(root)
        self.graph: Graph = build_graph(self.project)
        self.served = (defined, definitions.published_at(self.project))  # what the masks were planned from
        self.store = Store(self.project.state_url)  # writes: reaping dead runs, incidents, accounts
        self.reader = read_only(self.store)  # every page's reads

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.project.config.timezone)

    def reload(self) -> None:
        defined = definitions.version(self.root)
        project = load_project(self.root)
        graph = build_graph(project)
        with self._lock:
            self.project, self.graph = project, graph
            self.served = (defined, definitions.published_at(project))
            self._cache.clear()
            self._kept.clear()
            self._seen.clear()

    def check_selection(self, terms: list[str]) -> None:
        """Raise the selection's clear error now (not in a background job later); a name the served project does
        not know is looked for again in the project on disk, where a model may have been added since."""
        try:
            select(self.graph, terms)
        except KibanError:
            self.reload()
            select(self.graph, terms)

    def cached(self, key: str, ttl: float, compute: Callable[[], T]) -> T:
        """``compute()`` at most once per ``ttl`` seconds. A stale value is answered at once while one background
        thread computes the next (pages never wait for a refresh); only the very first caller waits."""
        with self._lock:
            hit = self._cache.get(key)
            guard = self._computing.setdefault(key, threading.Lock())
        if hit is not None:
            if time.monotonic() - hit[0] >= ttl and guard.acquire(blocking=False):
                threading.Thread(target=self._refresh, args=(key, compute, guard), daemon=True).start()
            return hit[1]
        with guard:
            with self._lock:
                hit = self._cache.get(key)
            if hit is not None:
                return hit[1]
            value = compute()
            with self._lock:
                self._cache[key] = (time.monotonic(), value)
            return value

    def keep(self, name: str, version: Any, compute: Callable[[], T]) -> T:
        """``compute()`` once per ``version`` of ``name`` (e.g. an asset's charts per its newest attempt): the
        value is reused until the version changes. One entry per name, so memory stays bounded."""
        hit = self._kept.get(name)
        if hit is not None and hit[0] == version:
            value: T = hit[1]
            return value
        value = compute()
        self._kept[name] = (version, value)
        return value

    def peek(self, name: str, version: Any) -> Any:
        """What ``keep(name, version, …)`` holds, or None (nothing is computed)."""
        hit = self._kept.get(name)
        return hit[1] if hit is not None and hit[0] == version else None

    def _refresh(self, key: str, compute: Callable[[], Any], guard: threading.Lock) -> None:
        try:
            value = compute()
            with self._lock:
                self._cache[key] = (time.monotonic(), value)
        except Exception:  # the stale value stays; the next request tries again
            log.warning("web: refreshing the cached %s failed; the stale value is served", key, exc_info=True)
        finally:
            guard.release()

    def forget(self) -> None:
        """Drop every shared value: the next request computes afresh (after a workaround ends)."""
        with self._lock:
            self._cache.clear()

    def following(self, key: str, ttl: float, compute: Callable[[], T],
                  until: Callable[[T], datetime] | None = None) -> T:
        """``cached()``, but computed again as soon as the store's pulse moves (a run, a check, an incident — by any
        process), or ``until(value)`` has passed; else every ``ttl`` seconds (then in the background, as ``cached``).
        Not on a short timer: computing holds the interpreter, and every page in flight would wait behind it."""
        seen = self._seen.get(key)
        if seen is not None and (pulse(self) != seen[0] or (seen[1] is not None and utcnow() >= seen[1])):
            with self._lock:  # dropped, not marked stale: a live page re-reading itself after an event must see
                self._cache.pop(key, None)  # the change (the first request computes; the others wait for it)
                self._seen.pop(key, None)

        def measured() -> T:
            beat = pulse(self)
            value = compute()
            self._seen[key] = (beat, until(value) if until is not None else None)
            return value

        return self.cached(key, ttl, measured)

    def assessment(self) -> Any:
        """The service-level assessment (the costliest read, ~0.4 s at 1,000 assets), shared by every request;
        computed again after a run or when a use case's deadline passes (a pending day turns late)."""
        def next_deadline(result: Any) -> datetime:
            due = [deadline for _due, deadline in result.upcoming.values() if deadline > result.now]
            return min(due, default=result.now + timedelta(days=1))

        return self.following("assessment", ASSESS_TTL, lambda: assess(self.project, self.graph, self.reader),
                              next_deadline)

    def resolve(self, name: str) -> str:
        if name in self.graph.assets:  # the usual case (links carry the key): no walk over every asset
            return name
        matches = [k for k, a in self.graph.assets.items() if name in (k, a.name)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise SelectionError(f"'{name}' is ambiguous: {', '.join(matches)}", "qualify it with its layer")
        raise SelectionError(f"no asset named '{name}'",
                             did_you_mean(name, [*self.graph.assets, *(a.name for a in self.graph.assets.values())]))

    def close(self) -> None:
        if self.reader is not self.store:
            self.reader.close()
        self.store.close()


def read_only(store: Store) -> Store:
    """The same store for reading only. The store opens every SQLite transaction with ``BEGIN IMMEDIATE`` (right
    for writers: no upgrade deadlocks), which would queue every page behind every other page and behind a
    running run; WAL lets plain readers proceed side by side, so pages read through this one."""
    if not store.url.startswith("sqlite"):
        return store
    import copy

    engine = sa.create_engine(store.engine.url, connect_args={"timeout": 30, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("pragma query_only=1")  # a slip that writes through here fails loudly instead of racing
        cur.close()

    reader = copy.copy(store)
    reader.engine = engine
    reader.lite = None  # every read through the query-only engine (not the writer's sqlite3 connection)
    return reader


@overload
def utc(value: datetime) -> datetime: ...
@overload
def utc(value: None) -> None: ...
@overload
def utc(value: datetime | None) -> datetime | None: ...
def utc(value: datetime | None) -> datetime | None:
    """A stored naive-UTC time as an aware one."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def pulse(site: Site, run_id: str | None = None) -> tuple[Any, ...]:
    """What moves when the project's runs, check results or incidents do (``run_id``: only that run's status and
    attempts), shared for PULSE seconds: the live pages' events and the assessment's freshness both follow it."""
    return site.cached(f"pulse:{run_id or ''}", PULSE, lambda: _pulse(site, run_id))


def _pulse(site: Site, run_id: str | None) -> tuple[Any, ...]:
    a, r, i = attempts_table.c, runs_table.c, incidents_table.c
    with site.reader.engine.connect() as conn:
        if run_id is not None:
            status = conn.execute(sa.select(r.status).where(r.run_id == run_id)).scalar()
            return (status, conn.execute(sa.select(sa.func.max(a.id)).where(a.run_id == run_id)).scalar())
        recent = conn.execute(sa.select(r.run_id, r.status).where(r.project == site.project.name)
                              .order_by(r.started_at.desc()).limit(5)).all()
        ids = [x[0] for x in recent]
        last = conn.execute(sa.select(sa.func.max(a.id)).where(a.run_id.in_(ids))).scalar() if ids else None
        changed = conn.execute(sa.select(sa.func.count(), sa.func.max(i.updated_at))
                               .where(i.project == site.project.name)).one()
        checked = conn.execute(sa.select(sa.func.max(check_results.c.id))).scalar()
    return (tuple((x[0], x[1]) for x in recent), last, tuple(changed), checked)


# -- runs --------------------------------------------------------------------------------------------------------

def _final_counts(store: Store, run_ids: list[str]) -> dict[str, dict[str, int]]:
    """Per run: how many assets ended in each status (an asset's last attempt in the run counts)."""
    if not run_ids:
        return {}
    t = attempts_table
    last = (sa.select(sa.func.max(t.c.id).label("id")).where(t.c.run_id.in_(run_ids))
            .group_by(t.c.run_id, t.c.asset).subquery())
    query = (sa.select(t.c.run_id, t.c.status, sa.func.count()).where(t.c.id.in_(sa.select(last.c.id)))
             .group_by(t.c.run_id, t.c.status))
    out: dict[str, dict[str, int]] = {r: {} for r in run_ids}
    with store.engine.connect() as conn:
        for run_id, status, count in conn.execute(query).all():
            out[run_id][status] = int(count)
    return out


def _summary(run: RunRecord, counts: dict[str, int]) -> m.RunSummary:
    end = run.ended_at or (utcnow() if run.status == RunStatus.RUNNING else None)
    return m.RunSummary(run_id=run.run_id, status=run.status, started_at=utc(run.started_at),
                        ended_at=utc(run.ended_at), seconds=(end - run.started_at).total_seconds() if end else None,
                        selection=list(run.selection), counts=counts, error=run.error)


def _attempt(a: AttemptRecord) -> m.AttemptOut:
    return m.from_record(m.AttemptOut, a)


def run_list(site: Site, limit: int = 25) -> m.RunList:
    """Recent runs, newest first; shared between requests until a run moves (or RUNS_TTL seconds)."""
    return site.following(f"runs:{limit}", RUNS_TTL, lambda: _run_list(site, limit))


def _run_list(site: Site, limit: int) -> m.RunList:
    store = site.reader
    found = store.runs(site.project.name, limit)
    if any(r.status == RunStatus.RUNNING for r in found) and site.store.reap_abandoned(site.project.name):
        found = store.runs(site.project.name, limit)  # a killed run is shown as abandoned, as `kiban runs` does
    counts = _final_counts(store, [r.run_id for r in found])
    runs = [_summary(r, counts.get(r.run_id, {})) for r in found]
    return m.RunList(runs=runs, running=any(r.status == RunStatus.RUNNING for r in runs))


def run_detail(site: Site, run_id: str) -> m.RunDetail | None:
    run = site.reader.run(run_id) or site.reader.find_run(run_id)
    if run is None or run.project != site.project.name:
        return None
    tries = site.reader.attempts(run.run_id)
    counts: dict[str, int] = {}
    for status in {a.asset: a.status for a in tries}.values():
        counts[status] = counts.get(status, 0) + 1
    return m.RunDetail(run=_summary(run, counts), attempts=[_attempt(a) for a in tries])


# -- today and use cases -----------------------------------------------------------------------------------------

def _forecasts(site: Site, result: Any, running: list[RunRecord]) -> dict[str, Any]:
    """p90 forecasts of the use cases a running run works for (the same predictor the breach watcher uses)."""
    if not running or not result.upcoming:
        return {}
    run = running[0]
    graph = site.graph
    try:
        planned = {k for k in select(graph, run.selection, run.options.get("exclude", []))
                   if graph.assets[k].layer != "lake"}
    except KibanError as exc:  # the project changed since the run started
        log.info("web: no forecast for run %s: %s", run.run_id, exc)
        return {}
    state = RunState(planned=planned)
    for a in site.reader.attempts(run.run_id):
        if a.status in (AttemptStatus.SUCCESS, AttemptStatus.FRESH) and a.ended_at:
            state.finished[a.asset] = a.ended_at
        elif a.status in (AttemptStatus.FAILED, AttemptStatus.SKIPPED, AttemptStatus.CANCELLED):
            state.broken.add(a.asset)
    usecases = {n: u.assets for n, u in site.project.usecases.items() if n in result.upcoming}
    predictor = Predictor(graph, usecases, {n: d for n, (_, d) in result.upcoming.items()},
                          Durations(result.p50, result.p90))
    return {f.usecase: f for f in predictor.forecast(state, utcnow())}


def _status(site: Site, result: Any, name: str, forecasts: dict[str, Any]) -> m.UseCaseStatus:
    usecase = site.project.usecases[name]
    verdict = result.current.get(name)
    spent = result.budgets[name]
    forecast = forecasts.get(name)
    said: Part | None = None
    finish = None
    at_risk = verdict is not None and verdict.verdict == Verdict.AT_RISK
    if verdict is not None:
        if verdict.verdict == Verdict.LATE:
            said = part("status.late_min", minutes=round((verdict.lateness_s or 0) / 60))
        elif verdict.verdict == Verdict.MET:
            finish = verdict.satisfied_at
        failures = verdict.evidence.get("failures")
        if failures and verdict.verdict not in (Verdict.MET, Verdict.LATE):
            said = part("status.step", asset=failures[0]["asset"], status=failures[0]["status"])
    if forecast is not None:
        finish = forecast.p90
        at_risk = at_risk or forecast.at_risk
        if forecast.blocked_by:
            said = part("status.blocked_by", asset=forecast.blocked_by)
        elif forecast.at_risk and forecast.slowest:
            said = part("status.slow_at_risk", asset=forecast.slowest)
    detail = say(said)
    return m.UseCaseStatus(
        name=name, description=usecase.config.description, verdict=verdict.verdict if verdict else "not_due",
        due_date=verdict.due_date if verdict else None, deadline=utc(verdict.deadline) if verdict else None,
        estimated_finish=utc(finish), at_risk=at_risk, detail=detail, detail_said=[said] if said else None,
        attainment=spent.attainment,
        target=spent.target, budget_allowed=spent.allowed, budget_left=spent.left, burn_rate=spent.burn_rate)


def today(site: Site) -> m.Today:
    """The board; shared between requests until a run, check or incident moves (running: forecasts age, so at
    most TODAY_TTL seconds)."""
    return site.following("today", TODAY_TTL, lambda: _today(site))


def _today(site: Site) -> m.Today:
    result = site.assessment()
    recent = site.reader.runs(site.project.name, 5)
    running_records = [r for r in recent if r.status == RunStatus.RUNNING]
    if running_records and site.store.reap_abandoned(site.project.name):
        running_records = [r for r in site.reader.runs(site.project.name, 5) if r.status == RunStatus.RUNNING]
    forecasts = _forecasts(site, result, running_records)
    counts = _final_counts(site.reader, [r.run_id for r in running_records])
    statuses = [_status(site, result, n, forecasts) for n in sorted(site.project.usecases)]
    log = IncidentLog(site.reader, site.project.name)
    opened = log.recent(include_resolved=False)
    risks = fixes.todays_risks(site, result, statuses, site.reader.latest_attempts(site.project.name), opened) \
        if statuses else []
    return m.Today(project=site.project.name, generated_at=utc(result.now),
                   today=result.today, timezone=site.project.config.timezone, usecases=statuses,
                   running=[_summary(r, counts.get(r.run_id, {})) for r in running_records],
                   open_incidents=log.count_open(), headline=fixes.headline(statuses, risks) if statuses else "",
                   risks=risks, old_incidents=fixes.old_incidents(opened, result.today))


def usecase_detail(site: Site, name: str) -> m.UseCaseDetail | None:
    usecase = site.project.usecases.get(name)
    if usecase is None:
        return None
    result = site.assessment()
    history = [m.VerdictOut(due_date=v.due_date, deadline=utc(v.deadline), verdict=v.verdict,
                            lateness_s=v.lateness_s, satisfied_at=utc(v.satisfied_at))
               for v in result.verdicts if v.usecase == name]
    cfg = usecase.config
    return m.UseCaseDetail(
        status=_status(site, result, name, {}), owner=cfg.owner,
        consumers=[{"name": c.name, "team": c.team, "contact": list(c.contact)} for c in cfg.consumers],
        assets=list(cfg.assets), need=cfg.need.model_dump(mode="json"), window_days=cfg.target.window_days,
        history=history)


# -- assets ------------------------------------------------------------------------------------------------------

def asset_state(site: Site) -> dict[str, str]:
    """Every asset's latest state (lake assets: lake); shared for a few seconds (the graph colours by it)."""
    def compute() -> dict[str, str]:
        latest = site.reader.latest_attempts(site.project.name)
        return {k: "lake" if a.layer == "lake" else (latest[k].status if k in latest else "never run")
                for k, a in site.graph.assets.items()}

    return site.following("states", STATES_TTL, compute)


def asset_detail(site: Site, key: str, show_sql: bool) -> m.AssetDetail:
    asset = site.graph.assets[key]
    cfg = asset.config
    runs, checks = _asset_history(site, key)
    served = site.keep(f"served:{key}", id(site.graph), lambda: _served(site, key))
    bound, p50, p90 = None, None, None
    if served:
        result = site.assessment()
        bound = result.safe_finish.get(key)
        p50, p90 = result.p50.get(key), result.p90.get(key)
    return m.AssetDetail(
        key=key, layer=asset.layer, name=asset.name, description=cfg.description, owner=cfg.owner,
        tags=list(cfg.tags), materialized=cfg.materialized if asset.sql else "parquet",
        path=str(asset.path.relative_to(site.project.root) if asset.path.is_relative_to(site.project.root)
                 else asset.path),
        columns=[m.ColumnOut(name=c.name, description=c.description, tags=list(c.tags)) for c in cfg.columns],
        sql=asset.sql if show_sql else None, upstream=list(site.graph.deps[key]),
        downstream=sorted(site.graph.children[key]),
        state="lake" if asset.layer == "lake" else (runs[0].status if runs else "never run"),
        runs=list(runs), checks=list(checks), usecases=served,
        latest_safe_finish=utc(bound.latest_finish) if bound else None,
        safe_finish_for=bound.usecase if bound else None, p50_seconds=p50, p90_seconds=p90)


def _served(site: Site, key: str) -> list[str]:
    return blast_radius(site.project, site.graph, key).usecases if site.project.usecases else []


def _asset_history(site: Site, key: str) -> tuple[list[m.AttemptOut], list[m.CheckOut]]:
    """An asset's recent builds (a month of daily builds: the charts and the table) and check results, read again
    only when the store's pulse has moved (a new attempt or check result is always in it) — no query otherwise."""
    version = pulse(site)

    def read() -> tuple[list[m.AttemptOut], list[m.CheckOut]]:
        runs = [_attempt(a) for a in site.reader.asset_history(site.project.name, key, 30)]
        checks = [m.CheckOut(name=c.name, kind=c.kind, severity=c.severity, status=c.status, failures=c.failures,
                             checked_at=utc(c.checked_at), detail=c.detail)
                  for c in check_history.recent(site.reader, site.project.name, key, 30)]
        return runs, checks

    return site.keep(f"history:{key}", version, read)


# -- incidents ---------------------------------------------------------------------------------------------------

def incidents(site: Site, limit: int = 50, include_resolved: bool = True) -> m.IncidentList:
    log = IncidentLog(site.reader, site.project.name)
    return m.IncidentList(incidents=[_incident(log, i) for i in log.recent(include_resolved, limit)])


def incident(site: Site, incident_id: int) -> m.IncidentOut | None:
    log = IncidentLog(site.reader, site.project.name)
    found = log.get(incident_id)
    if found is None:
        return None
    fix = None
    if found.status != IncidentStatus.RESOLVED:
        root = found.root_cause.get("asset") if isinstance(found.root_cause, dict) else None
        fix = fixes.fix_for(site, found.workaround, root if isinstance(root, str) else None)
    return _incident(log, found, fix)


def _incident(log: Any, i: Any, fix: m.Fix | None = None) -> m.IncidentOut:
    return m.from_record(m.IncidentOut, i, fix=fix, events=[
        m.IncidentEventOut(at=utc(e.at), kind=e.kind, message=e.message, actor=e.actor, said=e.said)
        for e in log.events(i.id)])
