"""Simulated nights: a clock kiban is driven by, models with scripted durations and failures, late sources.

The *world* is scripted: when each source arrives (and whether its rows are bad), when the nightly run starts,
how many threads it has, how long each step takes, which step fails. What kiban sees goes through its real
interfaces at the simulated time: the runs, attempts and check results a run records in the state store,
the events a run emits to its :class:`~kiban.slo.watch.BreachWatcher` (driven by the simulated clock, no
ticker thread), and the scheduler's service-level check (:func:`kiban.slo.service.check`) every
``step`` minutes. Repairs are the incident's own workaround, *run as suggested*: its selection is read with
kiban's selection syntax, a command refused by the lock of an asset a running run still builds does nothing,
``--resume`` re-runs only what failed, and a step rebuilds only when its inputs changed or it did not succeed —
as ``kiban run`` does.

``simulate(root, kind, nights)`` returns one :class:`Outcome` per use case and night, with the truth (the
scripted cause) next to what kiban said; ``bench/nights.py`` measures them on many nights.
"""

from __future__ import annotations

import json
import random
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from kiban.graph import Graph, build_graph, select
from kiban.incidents import IncidentLog
from kiban.project import Project, load_project
from kiban.run import Event
from kiban.slo.evaluate import MISSES
from kiban.slo.service import check
from kiban.slo.watch import BreachWatcher
from kiban.status import RunStatus
from kiban.store import Store
from kiban.store.schema import attempts, check_results, runs, slo_evaluations

TZ = ZoneInfo("Asia/Tokyo")
KINDS = ("normal", "slow", "failed", "late_source", "bad_data", "queued", "late_start")
DEADLINES = {"morning": time(8, 30), "stock": time(6, 0)}
MINUTES = {"warehouse.orders": 30, "warehouse.order_lines": 50, "warehouse.customers": 40,
           "warehouse.history": 100, "mart.daily_sales": 10, "mart.forecast": 20, "mart.rfm": 30}
SOURCES = ("lake.pos_orders", "lake.pos_customers")

FILES = {
    "kiban.yml": "name: sim\ntimezone: Asia/Tokyo\nthreads: 4\ncalendar: none\n",
    "sources/pos.yml": "type: files\nsettle: 0s\ntables:\n"
                       "  orders: {path: 'in/orders/*.csv', time_column: order_date}\n"
                       "  customers: {path: 'in/customers/*.csv'}\n",
    "models/warehouse/orders.sql": "select * from lake.pos_orders",
    "models/warehouse/order_lines.sql": "select * from lake.pos_orders",
    "models/warehouse/customers.sql": "select * from lake.pos_customers",
    "models/warehouse/history.sql": "select * from lake.pos_customers",
    "models/mart/daily_sales.sql": "select * from warehouse.orders",
    "models/mart/daily_sales.yml": "time_column: order_date\n",
    "models/mart/forecast.sql": "select * from warehouse.order_lines, warehouse.customers",
    "models/mart/forecast.yml": "time_column: order_date\n",
    "models/mart/rfm.sql": "select * from warehouse.history",
    "usecases/morning.yml": "description: Store managers read yesterday's sales before the 09:00 meeting.\n"
                            "owner: data-team\nconsumers: [{name: Store managers}]\nassets: [mart.daily_sales]\n"
                            "need: {by: '08:30', on: every_day, data_through: yesterday}\n",
    "usecases/stock.yml": "description: 発注担当が在庫補充の前に需要予測を見る。\nowner: data-team\n"
                          "consumers: [{name: 発注担当, language: ja}]\nassets: [mart.forecast]\n"
                          "need: {by: '06:00', on: every_day, data_through: yesterday}\n",
}


def utc(day: date, at: time, days: int = 0) -> datetime:
    return datetime.combine(day + timedelta(days=days), at, TZ).astimezone(UTC).replace(tzinfo=None)


@dataclass
class Night:
    """One scripted night before due day ``day`` (local)."""

    kind: str
    day: date
    arrival: dict[str, datetime]  # source → when its load lands
    start: datetime  # when the nightly run starts (it waits for its sources, like a sensor)
    threads: int
    seconds: dict[str, float]
    fail_at: dict[str, float] = field(default_factory=dict)  # asset → seconds into its build it fails
    bad: bool = False  # the orders source has bad rows: a warn check upstream, a blocking check on the mart
    repair_after: float = 0.0  # seconds after the owner hears of it that the workaround is run
    truth: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # use case → (kind, asset)


@dataclass
class Outcome:
    kind: str
    day: date
    usecase: str
    verdict: str
    deadline: datetime
    warned_at: datetime | None  # consumers told (the incident's ``warned`` event)
    flagged_at: datetime | None  # the incident opened (owners told)
    cause: dict[str, Any] | None
    truth: tuple[str, str | None] | None
    workaround: str | None
    repaired: bool | None  # None: no repair was run

    @property
    def missed(self) -> bool:
        return self.verdict in MISSES

    @property
    def warned_ahead(self) -> bool:
        return self.warned_at is not None and self.warned_at <= self.deadline - timedelta(minutes=30)

    @property
    def false_alarm(self) -> bool:
        return not self.missed and self.warned_at is not None and self.warned_at <= self.deadline

    @property
    def cause_right(self) -> bool:
        if self.truth is None or self.cause is None:
            return False
        kind, asset = self.truth
        return self.cause.get("kind") == kind and (asset is None or self.cause.get("asset") == asset)


def script(kind: str, day: date, rng: random.Random) -> Night:
    """The world of one night of ``kind``."""
    base = {k: m * 60 * rng.uniform(0.9, 1.1) for k, m in MINUTES.items()}
    arrival = {s: utc(day, time(1, 0)) + timedelta(minutes=rng.uniform(0, 40)) for s in SOURCES}
    night = Night(kind, day, arrival, utc(day, time(2, 0)), 4, base)
    if kind == "slow":
        night.seconds["warehouse.order_lines"] *= rng.uniform(2.5, 9)
        night.truth["stock"] = ("slow", "warehouse.order_lines")
    elif kind == "failed":
        night.fail_at["warehouse.orders"] = night.seconds["warehouse.orders"] * rng.uniform(0.2, 0.9)
        night.repair_after = rng.uniform(1800, 8 * 3600)
        night.truth["morning"] = ("failed", "warehouse.orders")
    elif kind == "late_source":
        night.arrival["lake.pos_orders"] += timedelta(hours=rng.uniform(1.5, 7))
        night.truth["morning"] = night.truth["stock"] = ("late_source", "lake.pos_orders")
    elif kind == "bad_data":
        night.bad = True
        night.repair_after = rng.uniform(1800, 8 * 3600)
        night.truth["morning"] = ("bad_data", "lake.pos_orders")
    elif kind == "queued":
        night.threads = 1
        night.seconds["warehouse.history"] *= 1.6
        night.truth["stock"] = ("queued", None)
    elif kind == "late_start":
        night.start += timedelta(hours=rng.uniform(2, 5.5))
        night.truth["morning"] = night.truth["stock"] = ("late_start", None)
    return night


class World:
    """A project, its state store and what its tables hold, moved through simulated time."""

    def __init__(self, root: Path, seed: int = 7, step_minutes: int = 5) -> None:
        for name, text in FILES.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        self.project: Project = load_project(root)
        self.graph: Graph = build_graph(self.project)
        self.store = Store(self.project.state_url)
        self.rng = random.Random(seed)
        self.step = timedelta(minutes=step_minutes)
        self.version: dict[str, int] = dict.fromkeys(self.graph.order, 0)  # data version each asset holds
        self.built_from: dict[str, dict[str, int]] = {k: {} for k in self.graph.order}
        self.ok: dict[str, bool] = dict.fromkeys(self.graph.order, True)  # last attempt succeeded
        self.bad: set[str] = set()  # assets holding bad rows
        self.reach: dict[str, date | None] = dict.fromkeys(self.graph.order)
        self.lock_until: datetime | None = None  # when the last run ends
        self.busy: dict[str, datetime] = {}  # asset → when the run building it is done with it (its lock)
        self.runs = 0
        self.repairing = False

    def close(self) -> None:
        self.store.close()

    # -- recording, as a run does -----------------------------------------------------------------
    def _run_row(self, run_id: str, started: datetime, ended: datetime | None, status: str, selection: list[str],
                 resume: bool = False) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(runs.insert().values(run_id=run_id, project="sim", status=status,
                                              selection=json.dumps(selection), options=json.dumps({"resume": resume}),
                                              started_at=started, ended_at=ended, heartbeat_at=ended or started,
                                              pid=None, host=None))

    def _attempt(self, run_id: str, key: str, status: str, started: datetime, ended: datetime,
                 error: str | None = None) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(attempts.insert().values(
                run_id=run_id, asset=key, attempt=1, status=status, started_at=started, ended_at=ended,
                seconds=(ended - started).total_seconds(), watermark=self.reach.get(key) if status == "success"
                else None, error=error))

    def _check(self, key: str, name: str, severity: str, status: str, at: datetime) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(check_results.insert().values(run_id=None, project="sim", asset=key, check_name=name,
                                                       severity=severity, kind="not_null", status=status,
                                                       failures=3 if status == "fail" else 0, checked_at=at))

    # -- a run ------------------------------------------------------------------------------------------
    def plan_run(self, night: Night, start: datetime, selection: list[str], threads: int
                 ) -> list[tuple[datetime, str, str, str | None]]:
        """The events of a run (time, event, asset, status), as the executor makes them: list scheduling on
        ``threads``, a step skipped when an input failed, rebuilt only when its inputs changed or it did not
        succeed last time."""
        build = [k for k in self.graph.sorted(selection) if self.graph.assets[k].layer != "lake"]
        todo = [k for k in build if self._stale(k, set(build))]
        finish: dict[str, datetime] = {}
        failed: set[str] = set()
        bad = set(self.bad)
        events: list[tuple[datetime, str, str, str | None]] = []
        slots: list[datetime] = [start] * threads
        for key in todo:  # in dependency order: a greedy list schedule
            deps = [d for d in self.graph.deps[key] if d in todo]
            if any(d in failed for d in deps):
                failed.add(key)
                events.append((max([start, *(finish[d] for d in deps if d in finish)]), "finished", key, "skipped"))
                continue
            ready = max([start, *(finish[d] for d in deps)])
            slot = min(range(threads), key=lambda i: max(slots[i], ready))
            begin = max(slots[slot], ready)
            seconds = night.seconds[key]
            status = "success"
            if key in night.fail_at and not self.repairing:
                seconds, status = night.fail_at[key], "failed"
            if any(d in bad for d in self.graph.deps[key]):
                if key == "mart.daily_sales":
                    status = "failed"  # its blocking check finds the bad rows
                else:
                    bad.add(key)
            else:
                bad.discard(key)
            end = begin + timedelta(seconds=seconds)
            slots[slot] = end
            finish[key] = end
            if status != "success":
                failed.add(key)
            events += [(begin, "started", key, None), (end, "finished", key, status)]
        return sorted(events, key=lambda e: (e[0], e[1] != "finished"))

    def _stale(self, key: str, building: set[str]) -> bool:
        if not self.ok[key]:
            return True
        return any(self.version[d] != self.built_from[key].get(d) or d in building for d in self.graph.deps[key])

    def apply(self, run_id: str, event: tuple[datetime, str, str, str | None], started: dict[str, datetime]) -> None:
        at, kind, key, status = event
        if kind == "started":
            started[key] = at
            return
        begin = started.get(key, at)
        if status == "success":
            self.ok[key] = True
            self.built_from[key] = {d: self.version[d] for d in self.graph.deps[key]}
            self.version[key] += 1
            if any(d in self.bad for d in self.graph.deps[key]):
                self.bad.add(key)
            else:
                self.bad.discard(key)
            reaches = [r for d in self.graph.deps[key] if (r := self.reach.get(d)) is not None]
            self.reach[key] = min(reaches) if reaches else None
            if key == "warehouse.orders" and key in self.bad:
                self._check(key, "quantity_positive", "warn", "fail", at)
            if key == "mart.daily_sales":  # its blocking check passes on good rows
                self._check(key, "order_id_not_null", "error", "pass", at)
            self._attempt(run_id, key, "success", begin, at)
        else:
            self.ok[key] = False
            error = "upstream failed" if status == "skipped" else \
                "check failed: not_null order_id (3 rows)" if key == "mart.daily_sales" else "IO Error: disk full"
            if key == "mart.daily_sales" and status == "failed":
                self._check(key, "order_id_not_null", "error", "fail", at)
            self._attempt(run_id, key, status, begin, at, error)

    def land(self, key: str, at: datetime, day: date, bad: bool) -> None:
        """A source's load lands (a collection run of its own)."""
        self.runs += 1
        run_id = f"load-{self.runs}"
        self.version[key] += 1
        self.reach[key] = day - timedelta(days=1)
        self.ok[key] = True
        if bad:
            self.bad.add(key)
        else:
            self.bad.discard(key)
        self._run_row(run_id, at - timedelta(seconds=30), at, "success", [key])
        self._attempt(run_id, key, "success", at - timedelta(seconds=30), at)
        if bad:  # the source table's own (warning) check sees the bad rows
            self._check(key, "quantity_positive", "warn", "fail", at)

    # -- a night --------------------------------------------------------------------------------------
    def night(self, night: Night) -> list[Outcome]:
        day = night.day
        now = utc(day, time(0, 30))
        end = utc(day, time(11, 0))
        pending_loads = dict(night.arrival)
        run_start = max(night.start, *night.arrival.values())  # the job's sensor waits for its sources
        run: list[tuple[datetime, str, str, str | None]] = []
        run_id = ""
        started: dict[str, datetime] = {}
        watcher: BreachWatcher | None = None
        repair_at: datetime | None = None
        repaired: dict[str, bool | None] = {}
        used: dict[str, str | None] = {}

        moment: list[datetime] = []  # while a run's event is handed over: its own time (a watcher hears at once)

        def clock() -> datetime:
            return moment[-1] if moment else now

        while now <= end:
            for key, at in list(pending_loads.items()):
                if at <= now:
                    self.land(key, at, day, night.bad and key == "lake.pos_orders")
                    del pending_loads[key]
            if not run_id and now >= run_start:
                self.runs += 1
                run_id = f"night-{self.runs}"
                build = [k for k in self.graph.order if self.graph.assets[k].layer != "lake"]
                run = self.plan_run(night, run_start, build, night.threads)
                self.lock_until = max((e[0] for e in run), default=run_start)
                self.busy = {e[2]: e[0] for e in run if e[1] == "finished"}
                self._run_row(run_id, run_start, None, "running", build)
                watcher = BreachWatcher(self.project, self.graph, self.store, notify=False, clock=clock,
                                        threads=night.threads, tick_seconds=None)
                moment.append(run_start)
                started_keys = [e[2] for e in run if e[1] == "started"]
                watcher(Event("run_started", run_id, detail={"build": len(started_keys), "fresh": 0, "lake": 0,
                                                             "selected": len(build), "assets": started_keys}))
                moment.clear()
            while run and run[0][0] <= now:
                event = run.pop(0)
                self.apply(run_id, event, started)
                if watcher is not None:
                    moment.append(event[0])
                    watcher(Event("asset_" + event[1], run_id, asset=event[2], status=event[3]))
                    moment.clear()
            if watcher is not None and not run:
                watcher(Event("run_finished", run_id, status=RunStatus.SUCCESS))  # the watcher reads no status
                self._finish_run(run_id)
                watcher = None
            elif watcher is not None:
                watcher.update()
            check(self.project, self.graph, self.store, now, notify=False)
            if night.repair_after and repair_at is None:
                opened = self._incident(day, "morning")
                if opened is not None:
                    repair_at = now + timedelta(seconds=night.repair_after)
            if repair_at is not None and "morning" not in repaired and now >= repair_at:
                repaired["morning"], used["morning"] = self._repair(night, now)
            now += self.step
        return [self._outcome(night, name, repaired.get(name), used.get(name)) for name in DEADLINES]

    def _finish_run(self, run_id: str) -> None:
        status = "success" if all(self.ok[k] for k in self.graph.order) else "failed"
        with self.store.engine.begin() as conn:
            conn.execute(runs.update().where(runs.c.run_id == run_id).values(status=status,
                                                                               ended_at=self.lock_until))

    def _incident(self, day: date, usecase: str) -> Any:
        return IncidentLog(self.store, "sim").open_for(usecase, day)

    def _repair(self, night: Night, now: datetime) -> tuple[bool, str | None]:
        """Run the morning incident's workaround as suggested (after fixing the source, for bad data)."""
        incident = self._incident(night.day, "morning")
        command = incident.workaround if incident else None
        if not command:
            return False, None
        words = shlex.split(command)[2:]
        waits = "--wait" in words
        if waits:
            del words[words.index("--wait"):words.index("--wait") + 2]
        if "--resume" in words:
            selection = [k for k in self.graph.order if not self.ok[k]]
        else:
            selection = select(self.graph, [w for w in words if not w.startswith("-")], [])
        # locks per asset: only the assets of the selection a running run has still to build are waited for
        held = [at for k, at in self.busy.items() if k in selection and at > now]
        if held and not waits:
            return False, command  # refused: a running run still builds an asset it needs
        start = max([now, *held])
        if night.bad:  # the owner fixes the export; collecting it again lands the good rows
            self.land("lake.pos_orders", start, night.day, bad=False)
        self.runs += 1
        run_id = f"repair-{self.runs}"
        self.repairing = True
        try:
            events = self.plan_run(night, start, selection, night.threads)
        finally:
            self.repairing = False
        started: dict[str, datetime] = {}
        for event in events:
            self.apply(run_id, event, started)
        ended = max((e[0] for e in events), default=start)
        self._run_row(run_id, start, ended, "success", [w for w in words if not w.startswith("-")],
                      resume="--resume" in words)
        self.lock_until = max(self.lock_until or ended, ended)
        self.busy.update({k: ended for k in selection if self.graph.assets[k].layer != "lake"})
        return self.ok["mart.daily_sales"] and "mart.daily_sales" not in self.bad, command

    def _outcome(self, night: Night, usecase: str, repaired: bool | None, used: str | None) -> Outcome:
        with self.store.engine.connect() as conn:
            row = conn.execute(slo_evaluations.select().where(slo_evaluations.c.usecase == usecase,
                                                              slo_evaluations.c.due_date == night.day)).first()
        verdict = row.verdict if row is not None else "pending"
        incident = self._incident(night.day, usecase)
        events = IncidentLog(self.store, "sim").events(incident.id) if incident else []
        warned = next((e.at for e in events if e.kind == "warned"), None)
        flagged = events[0].at if events else None
        return Outcome(night.kind, night.day, usecase, verdict, utc(night.day, DEADLINES[usecase]), warned,
                       flagged, incident.root_cause if incident else None, night.truth.get(usecase),
                       used or (incident.workaround if incident else None), repaired)


def simulate(root: Path, kind: str, nights: int, seed: int = 7, warmup: int = 10, every: int = 2,
             step_minutes: int = 5, progress: Callable[[list[Outcome]], object] | None = None) -> list[Outcome]:
    """``warmup`` normal nights, then ``nights`` nights of ``kind``, each followed by ``every - 1`` normal
    nights (so the history stays mostly normal). Returns the outcomes of every night after the warm-up
    (``progress`` hears them after each measured night, so a long measurement can be cut short)."""
    world = World(root, seed, step_minutes)
    out: list[Outcome] = []
    day = date(2026, 10, 1)
    try:
        for i in range(warmup + nights * every):
            measured = i >= warmup
            this = kind if measured and (i - warmup) % every == 0 else "normal"
            outcomes = world.night(script(this, day, world.rng))
            if measured:
                out += outcomes
                if progress is not None:
                    progress(out)
            day += timedelta(days=1)
    finally:
        world.close()
    return out
