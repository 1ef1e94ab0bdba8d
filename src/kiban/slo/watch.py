"""Watching a run for breaches: re-forecast on every event and every second, warn before the deadline."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from kiban.graph import Graph
from kiban.incidents import IncidentLog
from kiban.project import Project
from kiban.run import Event
from kiban.slo.deadlines import next_deadlines
from kiban.slo.durations import expected
from kiban.slo.evaluate import Context
from kiban.slo.facts import load_facts
from kiban.slo.predict import Forecast, Predictor, RunState
from kiban.store import Store, utcnow

log = logging.getLogger("kiban.slo")
TICK_SECONDS = 1.0
HORIZON = timedelta(hours=18)  # a run warns only about deadlines it is meant to feed, not next week's


class BreachWatcher:
    """A run listener. When a use case's p90 forecast passes its deadline (or an input it needs fails),
    it opens an at-risk incident and tells the consumers how late their data will be — while there is
    still time before the deadline."""

    def __init__(self, project: Project, graph: Graph, store: Store, notify: bool = True,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.project, self.graph, self.store = project, graph, store
        self.notify, self.clock = notify, clock
        self.state = RunState()
        self.flagged: dict[str, Forecast] = {}
        self.predictor: Predictor | None = None
        self.ctx: Context | None = None
        self.due: dict[str, tuple] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._senders: list[threading.Thread] = []

    def __call__(self, event: Event) -> None:
        try:
            self._handle(event)
        except Exception as exc:
            log.warning("breach watcher: %s on %s of run %s", exc, event.kind, event.run_id, exc_info=True)

    def _handle(self, event: Event) -> None:
        now = self.clock()
        if event.kind == "run_started":
            self._start(set(event.detail.get("assets", [])), now)
            return
        if self.predictor is None:
            return
        with self._lock:
            key = event.asset or ""
            if event.kind == "asset_started":
                self.state.started[key] = now
            elif event.kind == "asset_finished" and event.status == "success":
                self.state.finished[key] = now
            elif event.kind == "asset_finished" and event.status in ("failed", "skipped", "cancelled"):
                self.state.broken.add(key)
        if event.kind == "run_finished":
            self._stop.set()
            return
        self.update()

    def _start(self, planned: set[str], now: datetime) -> None:
        if not self.project.usecases or not planned:
            return
        self.ctx = Context.build(self.project, self.graph)
        facts = load_facts(self.store, self.project.name, now - timedelta(days=35))
        self.due = {n: d for n, d in next_deadlines(self.ctx, now).items() if d[1] - now <= HORIZON}
        relevant = {n: u.assets for n, u in self.project.usecases.items()
                    if n in self.due and any(k in planned or self.graph.upstream(k) & planned for k in u.assets)}
        if not relevant:
            return
        self.predictor = Predictor(self.graph, relevant, {n: d for n, (_, d) in self.due.items()},
                                   expected(self.graph, facts, 0.5), expected(self.graph, facts, 0.9))
        self.state.planned = planned
        self._ticker = threading.Thread(target=self._tick, daemon=True, name="kiban-breach-watch")
        self._ticker.start()
        self.update()

    def _tick(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            self(Event("tick", ""))

    def update(self) -> list[Forecast]:
        """Re-forecast now; open at-risk incidents for newly endangered use cases."""
        if self.predictor is None:
            return []
        now = self.clock()
        with self._lock:
            forecasts = self.predictor.forecast(self.state, now)
        for forecast in forecasts:
            if forecast.at_risk and now < forecast.deadline and forecast.usecase not in self.flagged:
                self.flagged[forecast.usecase] = forecast
                self._raise(forecast, now)
        return forecasts

    def _raise(self, forecast: Forecast, now: datetime) -> None:
        assert self.ctx is not None
        due_day, _ = self.due[forecast.usecase]
        tz = self.ctx.tz
        deadline = forecast.deadline.replace(tzinfo=UTC).astimezone(tz).strftime("%m-%d %H:%M")
        if forecast.blocked_by:
            message = f"at risk: {forecast.blocked_by} failed, so the data cannot be ready by {deadline}"
        else:
            assert forecast.p90 is not None
            late = max(1, round((forecast.p90 - forecast.deadline).total_seconds() / 60))
            eta = forecast.p90.replace(tzinfo=UTC).astimezone(tz).strftime("%H:%M")
            message = (f"at risk: expected ready at {eta} (p90), about {late} min after the {deadline} deadline; "
                       f"slowest step: {forecast.slowest}")
        incidents = IncidentLog(self.store, self.project.name)
        incident, _ = incidents.record(forecast.usecase, due_day, "at_risk", "at_risk", message,
                                       root_cause={"asset": forecast.slowest, "status": "slow" if not
                                                   forecast.blocked_by else "failed"},
                                       workaround="kiban run --resume" if forecast.blocked_by else None,
                                       event="at_risk", at=now)
        if self.notify:  # sent off the run's path: a slow channel must not slow the run
            sender = threading.Thread(target=self._send, args=(forecast, incident.id, message), daemon=True)
            sender.start()
            self._senders.append(sender)

    def _send(self, forecast: Forecast, incident_id: int, message: str) -> None:
        from kiban.notify import Message, Notifier

        usecase = self.project.usecases[forecast.usecase]
        channels = sorted({c for who in usecase.config.consumers for c in who.notify}
                          | set(usecase.config.owner_notify))
        if not channels:
            return
        Notifier(self.store, dict(self.project.config.channels), self.project.root).send(channels, Message(
            subject=f"[kiban] {forecast.usecase}: your data may be late", text=f"{forecast.usecase} {message}",
            severity="warning", dedupe_key=f"at_risk:{self.project.name}:{forecast.usecase}:{incident_id}",
            fields={"use case": forecast.usecase, "incident": f"#{incident_id}"}))

    def close(self, timeout: float = 30.0) -> None:
        """Stop ticking and give pending notifications a chance to go out."""
        self._stop.set()
        for sender in self._senders:
            sender.join(timeout)
