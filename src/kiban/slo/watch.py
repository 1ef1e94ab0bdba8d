"""Watching a run for breaches: re-forecast on every event and every second, warn before the deadline."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kiban.graph import Graph
from kiban.incidents import Incident, IncidentDraft, IncidentLog
from kiban.messages import part, say
from kiban.notify import Message, Notifier
from kiban.project import Project
from kiban.run import Event
from kiban.slo.calendar import wall_seconds
from kiban.slo.cause import START_MARGIN, cause, explain, said_of, usual_start
from kiban.slo.deadlines import next_deadlines
from kiban.slo.durations import HISTORY, expected
from kiban.slo.evaluate import Context
from kiban.slo.facts import load_facts
from kiban.slo.impact import repair
from kiban.slo.predict import Concurrency, Durations, Forecast, Predictor, RunState
from kiban.slo.service import WARN_LEAD, console_link, tell_consumers
from kiban.status import AttemptStatus, IncidentStatus
from kiban.store import Store, utcnow
from kiban.team.oncall import channels as oncall_channels

log = logging.getLogger("kiban.slo")
TICK_SECONDS = 1.0
HORIZON = timedelta(hours=18)  # a run warns only about deadlines it is meant to feed, not next week's
HYSTERESIS = timedelta(minutes=10)  # a flag is dropped only when the p90 is back this far before the deadline
REVISE_S = 900.0  # a warning is revised when the expected lateness moves by 15 min (and a quarter) or more


class BreachWatcher:
    """A run listener. When a use case's p90 forecast passes its deadline (or an input it needs fails),
    it opens an at-risk incident and tells the consumers how late their data will be — while there is
    still time before the deadline."""

    def __init__(self, project: Project, graph: Graph, store: Store, notify: bool = True,
                 clock: Callable[[], datetime] = utcnow, threads: int | None = None,
                 tick_seconds: float | None = TICK_SECONDS) -> None:
        self.project, self.graph, self.store = project, graph, store
        self.notify, self.clock, self.threads = notify, clock, threads
        self.tick_seconds = tick_seconds  # None: no ticker thread (a simulated night calls ``update`` itself)
        self.run_start: datetime = clock()
        self.usual_leads: dict[str, float] = {}  # per use case: how long before the deadline its builds start
        self.unsure: dict[str, Forecast] = {}  # use cases without enough history to forecast: said, not alarmed
        self.revisions: dict[str, int] = {}
        self.state = RunState()
        self.flagged: dict[str, Forecast] = {}
        self.kinds: dict[str, str] = {}  # per flagged use case: the kind of its cause as last told
        self.consumers_told: set[str] = set()
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
            elif event.kind == "asset_finished" and event.status == AttemptStatus.SUCCESS:
                self.state.finished[key] = now
            elif event.kind == "asset_finished" and event.status in (AttemptStatus.FAILED, AttemptStatus.SKIPPED,
                                                                     AttemptStatus.CANCELLED):
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
        declared = {k for k, a in self.graph.assets.items() if a.config.expected_duration is not None}
        durations = Durations(expected(self.graph, facts, 0.5), expected(self.graph, facts, 0.9),
                              history={k: facts.of(k).durations[-HISTORY:] for k in self.graph.assets},
                              declared=declared)
        self.predictor = Predictor(self.graph, relevant, {n: d for n, (_, d) in self.due.items()}, durations,
                                   Concurrency(threads=self.threads or self.project.config.effective_threads,
                                               limits=dict(self.project.config.limits)))
        self.state.planned = planned
        self.run_start = now
        self.usual_leads = {}
        for name in relevant:
            lead = usual_start(self.ctx, facts, self.project.usecases[name], self.due[name][0])
            if lead is not None:
                self.usual_leads[name] = lead
        if self.tick_seconds is not None:
            self._ticker = threading.Thread(target=self._tick, daemon=True, name="kiban-breach-watch")
            self._ticker.start()
        self.update()

    def _tick(self) -> None:
        while not self._stop.wait(self.tick_seconds or TICK_SECONDS):
            self(Event("tick", ""))

    def update(self) -> list[Forecast]:
        """Re-forecast now; open at-risk incidents for newly endangered use cases, revise the told lateness
        when it changes materially, and forget a flag once the forecast is clearly back in time (hysteresis)."""
        if self.predictor is None:
            return []
        now = self.clock()
        with self._lock:
            forecasts = self.predictor.forecast(self.state, now)
        for forecast in forecasts:
            if now >= forecast.deadline:
                continue
            if not forecast.confident and not forecast.blocked_by:
                if forecast.usecase not in self.unsure:
                    self.unsure[forecast.usecase] = forecast
                    log.info("no forecast for %s: not enough history for %s", forecast.usecase,
                             ", ".join(forecast.unknown))
                continue
            told = self.flagged.get(forecast.usecase)
            if told is None and forecast.at_risk:
                self.flagged[forecast.usecase] = forecast
                self._raise(forecast, now, revision=0)
            elif told is not None and self._clear(forecast):
                del self.flagged[forecast.usecase]  # back in time with margin: a new breach is news again
            elif told is not None and (self._revised(told, forecast) or self._now_worth_telling(forecast, now)):
                # a revision — or a breach withheld from the consumers as a coin toss that is one no longer
                self.flagged[forecast.usecase] = forecast
                self.revisions[forecast.usecase] = self.revisions.get(forecast.usecase, 0) + 1
                self._raise(forecast, now, revision=self.revisions[forecast.usecase])
        return forecasts

    @staticmethod
    def _clear(forecast: Forecast) -> bool:
        return not forecast.blocked_by and forecast.p90 is not None and \
            forecast.p90 < forecast.deadline - HYSTERESIS

    @staticmethod
    def _revised(told: Forecast, now: Forecast) -> bool:
        """Expected lateness changed materially (by 15 min and a quarter) since it was last told."""
        if told.blocked_by or now.blocked_by or told.p50 is None or now.p50 is None:
            return False
        before = (told.p50 - told.deadline).total_seconds()
        after = (now.p50 - now.deadline).total_seconds()
        change = abs(after - before)
        return change >= REVISE_S and change >= 0.25 * max(abs(before), 1.0)

    def _raise(self, forecast: Forecast, now: datetime, revision: int) -> None:
        assert self.ctx is not None
        due_day, _ = self.due[forecast.usecase]
        tz = self.ctx.tz
        deadline = forecast.deadline.replace(tzinfo=UTC).astimezone(tz).strftime("%m-%d %H:%M")
        usecase = self.project.usecases[forecast.usecase]
        running = bool(self.state.started.keys() - self.state.finished.keys() - self.state.broken)
        eta: str | None = None
        if forecast.blocked_by:
            found = self._failure(forecast.blocked_by)
            said = [part("event.blocked", reason=said_of(found), deadline=deadline)]
        else:
            assert forecast.p50 is not None and forecast.p90 is not None
            local = {k: t.replace(tzinfo=UTC).astimezone(tz).strftime("%H:%M")
                     for k, t in (("p50", forecast.p50), ("p90", forecast.p90))}
            eta = f"{local['p50']} (up to {local['p90']})"
            late = (forecast.p50 - forecast.deadline).total_seconds()
            late_start = self._late_start(forecast.usecase, now) if forecast.cause != "queued" else None
            if late_start is not None:
                found = {**late_start, "eta": eta}
            elif forecast.cause == "queued":
                reason = [part("cause.waits_for_thread", asset=forecast.slowest, queued_s=forecast.queued_s,
                               threads=self.predictor.threads if self.predictor else "?")]
                found = cause("queued", forecast.slowest or "?", reason, forecast.queued_s, eta=eta)
            else:
                key = forecast.slowest or "?"
                started, ended = self.state.started.get(key), self.state.finished.get(key)
                took = ((ended or now) - started).total_seconds() if started else None
                usual = self.predictor.p50.get(key) if self.predictor else None
                extra = self.predictor.overrun(key, took) if self.predictor and took is not None else None
                slow = "cause.slow" if took is None else "cause.was_slow" if ended else "cause.is_slow"
                reason = [part(slow, asset=key, took_s=took)]
                if usual:
                    reason.append(part("cause.usually", " ", usual_s=usual))
                found = cause("slow", key, reason, extra, eta=eta)
            expected = part("event.expected_after", p50=local["p50"], p90=local["p90"], late_s=late,
                            deadline=deadline) if late > 0 else \
                part("event.expected_before", p50=local["p50"], p90=local["p90"], early_s=-late, deadline=deadline)
            said = [expected, *said_of(found)]
            if revision:
                said.append(part("event.revised", " "))
        message = say(said)
        incidents = IncidentLog(self.store, self.project.name)
        known = incidents.open_for(forecast.usecase, due_day)
        if known is not None and known.status != IncidentStatus.RESOLVED \
                and known.root_cause.get("kind") == "late_source" and found.get("kind") == "late_start":
            found = {**known.root_cause, "eta": eta}  # the run started late because it waited for the source
        fix, action = repair(found, usecase.assets, busy=running, eta=eta)
        found["action"] = action
        incident, _ = incidents.record(IncidentDraft(forecast.usecase, due_day, "at_risk", "at_risk", message,
                                                     root_cause=found, workaround=fix,
                                                     event="revised" if revision else "at_risk", said=said), at=now)
        # consumers hear it when the data is more likely late than not, or a failure leaves no room
        # (a failure is the scheduler's check's to tell them of: it waits for the last chance of a repair)
        # ... and only when something is off its normal course: a step past its normal variation, queueing or a
        # late start; a normal night whose history holds slow nights must not alarm the consumers
        overrun = self._abnormal(now)
        abnormal = found.get("kind") in ("queued", "late_start", "late_source") or overrun
        tell = not forecast.blocked_by and abnormal and self._likely_late(forecast, now, overrun)
        self.kinds[forecast.usecase] = str(found.get("kind"))
        if tell:
            self.consumers_told.add(forecast.usecase)
        if tell and not any(e.kind == "warned" for e in incidents.events(incident.id)):
            told = [part("event.consumers_told", reason=said_of(found))]
            incidents.note_event(incident.id, "warned", say(told), at=now, said=told)
        elif not revision:
            tell = False
        if self.notify:  # sent off the run's path: a slow channel must not slow the run
            sender = threading.Thread(target=self._send, args=(incident, message, action, tell, eta, revision),
                                      daemon=True)
            sender.start()
            self._senders.append(sender)

    def _now_worth_telling(self, forecast: Forecast, now: datetime) -> bool:
        """A flagged breach the consumers have not heard of, which they should hear of now."""
        if forecast.usecase in self.consumers_told or forecast.blocked_by:
            return False
        overrun = self._abnormal(now)
        abnormal = self.kinds.get(forecast.usecase) in ("queued", "late_start", "late_source") or overrun
        return abnormal and self._likely_late(forecast, now, overrun)

    @staticmethod
    def _likely_late(forecast: Forecast, now: datetime, overrun: bool = False) -> bool:
        """Whether consumers should hear of a forecast breach now.

        Before the last :data:`WARN_LEAD` (the last moment to tell them ≥ 30 min ahead) only a breach that will
        not be taken back: late even at the forecast's optimistic end (``p10``: every running step as quick as
        the quickest tenth of its past builds that ran this long), by more than a minute. A likely breach that is
        not sure yet — a slow step whose history holds both quick and very slow builds says "probably late" for
        hours, and then finishes in time a third of the nights — costs nothing to hold until the last chance,
        when the most is known: then the expected time (p50) past the deadline at all tells them, and so does a
        p90 past it while a step overruns its normal variation (``overrun``: its remaining time has a long tail)."""
        if forecast.p50 is None or forecast.p90 is None:
            return False
        early = forecast.p10 or forecast.p50
        sure = (early - forecast.deadline).total_seconds() > 60.0
        last_chance = forecast.deadline - now <= WARN_LEAD
        past = (forecast.p50 - forecast.deadline).total_seconds()
        return sure or (last_chance and (past > 0 or (overrun and forecast.p90 > forecast.deadline)))

    def _failure(self, key: str) -> dict[str, Any]:
        """The failed step's cause with the error the run recorded (the owner gets it with the warning) — judged
        like the check judges it: a blocking check that refused the data names the first bad upstream."""

        now = self.clock()
        error = ""
        try:
            attempt = self.store.latest_attempts(self.project.name).get(key)
            error = (attempt.error or "") if attempt else ""
            facts = load_facts(self.store, self.project.name, now - timedelta(days=2))
            assert self.ctx is not None
            failure = {"asset": key, "status": AttemptStatus.FAILED, "at": now.isoformat(), "error": error}
            found = explain(self.ctx, facts, "at_risk", {"failures": [failure]}, self.run_start - timedelta(hours=6),
                            now)
            if found is not None:
                return found
        except Exception as exc:  # the warning goes out with less detail rather than not at all
            log.warning("breach watcher: cannot explain the failure of %s: %s", key, exc)
        said = part("cause.step_failed", asset=key, status=AttemptStatus.FAILED, error=error[:300]) if error else \
            part("status.step", asset=key, status=AttemptStatus.FAILED)
        return cause("failed", key, [said], None)

    def _abnormal(self, now: datetime) -> bool:
        """Whether a running step has run past its normal variation (as ``kiban.slo.cause.slow_by`` judges it)."""
        if self.predictor is None:
            return False
        return any(self.predictor.overrun(key, (now - began).total_seconds()) is not None
                   for key, began in self.state.started.items()
                   if key not in self.state.finished and key not in self.state.broken)

    def _late_start(self, usecase: str, now: datetime) -> dict[str, Any] | None:
        """The run started later than this use case's builds usually start, and no step overruns: a late start."""
        usual = self.usual_leads.get(usecase)
        if usual is None or self.predictor is None:
            return None
        overrun = any((now - t).total_seconds() > self.predictor.p90.get(k, 0.0) * 1.25 + 60
                      for k, t in self.state.started.items() if k not in self.state.finished)
        deadline = self.due[usecase][1]
        behind = usual - (wall_seconds(self.run_start, deadline, self.ctx.tz) if self.ctx
                          else (deadline - self.run_start).total_seconds())
        if overrun or behind <= START_MARGIN:
            return None
        first = next((k for k in self.predictor.paths[usecase] if self.graph.assets[k].layer != "lake"), usecase)
        local = self.run_start.replace(tzinfo=UTC).astimezone(self.ctx.tz).strftime("%H:%M") if self.ctx else "?"
        return cause("late_start", first, [part("cause.late_start", at=local, behind_s=behind)], behind)

    def _send(self, incident: Incident, message: str, action: str, tell: bool, eta: str | None,
              revision: int) -> None:
        usecase = self.project.usecases[incident.usecase]
        if tell:
            assert self.ctx is not None
            tell_consumers(self.project, self.store, incident, "at_risk", self.ctx, eta=eta)
        on_call, paged = oncall_channels(self.project)
        channels = sorted(set(usecase.config.owner_notify) | set(paged))
        if not channels:
            return
        found = incident.root_cause or {}
        Notifier.of(self.project, self.store).send(channels, Message(
            subject=f"[kiban] incident #{incident.id} {incident.usecase} {incident.due_date}: at risk"
                    + (" (revised)" if revision else ""),
            text=f"{message}\nWhat to do: {action}", severity="warning",
            dedupe_key=f"at_risk:{self.project.name}:{incident.usecase}:{incident.id}:{revision}",
            link=console_link(self.project, incident),
            fields={"use case": incident.usecase, "root cause": f"{found.get('asset')} ({found.get('kind')})",
                    "workaround": incident.workaround or "-", "incident": f"#{incident.id}",
                    **({"on call": on_call} if on_call else {})}))

    def close(self, timeout: float = 30.0) -> None:
        """Stop ticking and give pending notifications a chance to go out."""
        self._stop.set()
        for sender in self._senders:
            sender.join(timeout)
