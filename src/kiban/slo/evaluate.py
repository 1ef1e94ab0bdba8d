"""Verdicts: for every use case and every due day, was the promise kept?

``met``        every asset was published (reaching ``data_through``) by the deadline
``late``       it was, but only after the deadline (``lateness_s`` says by how much)
``failed``     the deadline passed and the data was not published (something failed or never ran)
``incomplete`` the deadline passed; the data was published but does not reach ``data_through``
``bad_data``   the data arrived, but a blocking check on it failed
``pending``    the deadline has not come yet and nothing says it will be missed
``at_risk``    the deadline has not come yet, and an upstream failure (or the prediction) says it will be
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from kiban.graph import Graph
from kiban.project import Project, UseCase
from kiban.project.usecase import Need
from kiban.slo.arrival import late_sources
from kiban.slo.calendar import BusinessCalendar, calendar_for, deadline_utc, due_days, required_through
from kiban.slo.cause import late_delivery
from kiban.slo.completeness import delivered_at, must_be_whole, partial_read
from kiban.slo.facts import Facts, quiet_gc
from kiban.status import VERDICT_FINAL, VERDICT_MISSED
from kiban.status import Verdict as VerdictStatus

LOOKBACK_YEARS = 10  # how far back a due day's window looks for the previous due day
FINAL = VERDICT_FINAL  # the names this module's readers import (kiban.status holds the groups)
MISSES = VERDICT_MISSED


@dataclass
class Verdict:
    usecase: str
    due_date: date
    deadline: datetime  # naive UTC
    verdict: str
    lateness_s: float | None = None
    satisfied_at: datetime | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return self.verdict in FINAL


@dataclass
class Context:
    """What evaluation needs besides the facts; built once, reused for every use case."""

    project: Project
    graph: Graph
    tz: ZoneInfo
    calendars: dict[str, BusinessCalendar] = field(default_factory=dict)
    _upstream: dict[str, list[str]] = field(default_factory=dict)
    _layers: dict[tuple[str, bool], list[str]] = field(default_factory=dict)
    _ancestors: dict[str, int] | None = None
    _index: dict[str, int] = field(default_factory=dict)
    _masks: dict[str, int] = field(default_factory=dict)
    arrival_cache: dict[tuple[str, str, date], Any] = field(default_factory=dict)  # kiban.slo.arrival
    day_ends: dict[date, datetime] = field(default_factory=dict)  # kiban.slo.completeness.day_end

    @classmethod
    def build(cls, project: Project, graph: Graph) -> Context:
        return cls(project, graph, ZoneInfo(project.config.timezone))

    def depends_on(self, usecase: str) -> int:
        """A bitset over the graph's order: which assets this use case reads, directly or through others.

        Ancestor bitsets are computed once for the whole graph in one pass — O(assets + edges) big-integer
        ORs — so asking "does this use case depend on X" costs a shift and a mask."""
        ancestors = self._ancestor_bits()
        mask = self._masks.get(usecase)
        if mask is None:
            mask = 0
            for key in self.project.usecases[usecase].assets:
                mask |= ancestors[key] | (1 << self._index[key])
            self._masks[usecase] = mask
        return mask

    def reads(self, key: str, other: str) -> bool:
        """Whether ``key`` is built from ``other``, directly or through others (a shift and a mask)."""
        return bool(self._ancestor_bits()[key] >> self._index[other] & 1)

    def _ancestor_bits(self) -> dict[str, int]:
        if self._ancestors is None:
            self._index = {k: i for i, k in enumerate(self.graph.order)}
            ancestors: dict[str, int] = {}
            for key in self.graph.order:
                bits = 0
                for dep in self.graph.deps[key]:
                    bits |= ancestors[dep] | (1 << self._index[dep])
                ancestors[key] = bits
            self._ancestors = ancestors
        return self._ancestors

    def upstream(self, usecase: str) -> list[str]:
        """The use case's assets and everything they are built from, in dependency order (computed once)."""
        found = self._upstream.get(usecase)
        if found is None:
            found = self._upstream[usecase] = self.keys_of(self.depends_on(usecase))
        return found

    def upstream_in(self, usecase: str, lake: bool) -> list[str]:
        """:meth:`upstream`'s lake tables (``lake``) or its models, in dependency order (computed once)."""
        found = self._layers.get((usecase, lake))
        if found is None:
            assets = self.graph.assets
            found = self._layers[(usecase, lake)] = [k for k in self.upstream(usecase)
                                                     if (assets[k].layer == "lake") is lake]
        return found

    def keys_of(self, bits: int) -> list[str]:
        """The assets of a bitset over the graph's order, in that order."""
        order = self.graph.order
        return [order[i] for i, bit in enumerate(reversed(bin(bits))) if bit == "1"]

    def upstream_bits(self, key: str) -> int:
        """A bitset of every asset ``key`` is built from, directly or through others (not ``key`` itself)."""
        return self._ancestor_bits()[key]

    def bit(self, key: str) -> int:
        """``key``'s place in the bitsets."""
        self._ancestor_bits()
        return 1 << self._index[key]

    def calendar(self, usecase: UseCase) -> BusinessCalendar:
        name = usecase.config.need.calendar or self.project.config.calendar
        if name not in self.calendars:
            self.calendars[name] = calendar_for(name, self.project.config)
        return self.calendars[name]

    def schedule(self, usecase: UseCase, start: date, end: date) -> list[tuple[date, datetime, datetime]]:
        """(due day, window start, deadline) for due days in [start, end]; the window opens at the previous
        due day's deadline — each delivery must be new since the last promise."""
        need = usecase.config.need
        calendar = self.calendar(usecase)
        days = due_days(need, calendar, start - timedelta(days=31), end)
        if not days or days[0] >= start:  # no due day in the month before: look further back, a year at a time
            before = _due_before(need, calendar, start - timedelta(days=31))
            if before is not None:
                days.insert(0, before)
        out: list[tuple[date, datetime, datetime]] = []
        previous: datetime | None = None
        for day in days:
            deadline = deadline_utc(day, need.deadline, self.tz)
            if day >= start:
                out.append((day, previous or deadline - timedelta(days=1), deadline))
            previous = deadline
        return out


def _due_before(need: Need, calendar: BusinessCalendar, day: date) -> date | None:
    """The last due day strictly before ``day`` (a quarterly or yearly schedule, a long closure), looking back at
    most :data:`LOOKBACK_YEARS` years; None: none, so the first due day's window is one day."""
    end = day - timedelta(days=1)
    for _ in range(LOOKBACK_YEARS):
        start = end - timedelta(days=365)
        found = due_days(need, calendar, start, end)
        if found:
            return found[-1]
        end = start - timedelta(days=1)
    return None


def evaluate_day(ctx: Context, facts: Facts, usecase: UseCase, due: date, window_start: datetime,
                 deadline: datetime, now: datetime) -> Verdict:
    need = usecase.config.need
    through = required_through(due, need.data_through, ctx.calendar(usecase))
    whole = must_be_whole(through, deadline, ctx)  # a day over by the deadline: a part of it is no delivery
    per_asset: dict[str, Any] = {}
    satisfied: list[datetime | None] = []
    for key in usecase.assets:
        asset_facts = facts.of(key)
        timed = bool(ctx.graph.assets[key].config.time_column)
        if through is not None and timed:
            at = delivered_at(ctx, facts, key, through) if whole else asset_facts.first_reaching(through)
        else:
            at = asset_facts.first_publish_after(window_start)
        if at is not None and at > now:
            at = None
        satisfied.append(at)
    done = None if any(s is None for s in satisfied) else max(s for s in satisfied if s is not None)
    on_time = done is not None and done <= deadline
    for key, at in zip(usecase.assets, satisfied, strict=True):
        # how far each asset's data reached is evidence only when the promise was not simply kept
        per_asset[key] = {"ready_at": _iso(at)} if on_time else \
            {"ready_at": _iso(at), "reach": _iso(facts.of(key).reach_at(min(now, deadline)))}
        if not on_time and whole and through is not None and at is None:
            partial = partial_read(ctx, facts, key, through, min(now, deadline))
            if partial is not None:  # it reaches the day, on data read before the day was over
                per_asset[key]["partial"] = {"source": partial[0], "read_at": _iso(partial[1])}
    evidence: dict[str, Any] = {"assets": per_asset, "window_start": _iso(window_start),
                                "data_through": _iso(through)}
    verdict = Verdict(usecase.name, due, deadline, VerdictStatus.PENDING, evidence=evidence, satisfied_at=done)
    checks_until = min(now, done or deadline)
    bad = _failed_checks(ctx, facts, usecase, window_start, checks_until) if need.checks != "none" else []
    if done is not None:
        if bad:
            verdict.verdict = VerdictStatus.BAD_DATA
            evidence["failed_checks"] = bad
        elif done <= deadline:
            verdict.verdict = VerdictStatus.MET
        else:
            verdict.verdict, verdict.lateness_s = VerdictStatus.LATE, (done - deadline).total_seconds()
            # why it was late: the costliest of late source, late start, queueing, slow step, failure
            failures = _failures(ctx, facts, usecase, window_start, done, include_repaired=True)
            if failures:
                evidence["failures"] = failures

            found = late_delivery(ctx, facts, usecase, due, window_start, deadline, done, failures)
            if found:
                evidence["cause"] = found
        return verdict
    failures = _failures(ctx, facts, usecase, window_start, now)
    if failures:
        evidence["failures"] = failures

    # only what is still missing: a source that arrived late explains, it no longer endangers (the run does)
    late = [s for s in late_sources(ctx, facts, usecase, due, window_start, deadline, min(now, deadline))
            if s.arrived_at is None]
    if late:  # a source overdue: at risk the moment it is, whether or not a run is going
        evidence["late_sources"] = [source.as_dict() for source in late]
    if now < deadline:
        verdict.verdict = VerdictStatus.AT_RISK if failures or late else VerdictStatus.PENDING
        return verdict
    if bad:
        verdict.verdict = VerdictStatus.BAD_DATA
        evidence["failed_checks"] = bad
    elif through is not None and _published_recently(ctx, facts, usecase, deadline, now):
        verdict.verdict = VerdictStatus.INCOMPLETE
    else:
        verdict.verdict = VerdictStatus.FAILED
    return verdict


def _failures(ctx: Context, facts: Facts, usecase: UseCase, start: datetime, end: datetime,
              include_repaired: bool = False) -> list[dict[str, Any]]:
    """Failed, skipped or cancelled attempts upstream of the use case in (start, end] — only those nothing
    has repaired since, unless ``include_repaired`` (to explain a delivery that came late)."""
    found = []
    mask = ctx.depends_on(usecase.name)
    keys = {k for k in facts.failed_between(start, end) if k in ctx.graph.assets}
    for key in sorted((k for k in keys if mask >> ctx._index[k] & 1), key=ctx._index.__getitem__):
        item = facts.assets[key]
        events = item.failures_between(start, end)
        if not events:
            continue
        last_at, status, error = events[-1]
        repaired = item.last_good_before(end)
        if not include_repaired and repaired is not None and repaired > last_at:
            continue
        found.append({"asset": key, "status": status, "at": _iso(last_at), "error": error})
    return found


def _published_recently(ctx: Context, facts: Facts, usecase: UseCase, deadline: datetime, now: datetime) -> bool:
    """Whether a timed asset was published in the day before the deadline (so the delivery came, but short)."""
    until = min(now, deadline)
    for key in usecase.assets:
        if not ctx.graph.assets[key].config.time_column:
            continue
        item = facts.of(key)
        i = item.last_publish_before(until)
        if i is not None and item.published_at[i] > deadline - timedelta(hours=24):
            return True
    return False


def _failed_checks(ctx: Context, facts: Facts, usecase: UseCase, start: datetime, end: datetime) -> list[str]:
    if not facts.any_check_failed:
        return []
    wanted = usecase.config.need.checks
    out = []
    for key in usecase.assets:
        item = facts.assets.get(key)
        if item is None or not item.check_failed_at:
            continue
        for _, name in item.failed_checks_between(start, end):
            if wanted == "all" or name in wanted:
                out.append(f"{key}: {name}")
    return sorted(set(out))


def evaluate(ctx: Context, facts: Facts, start: date, end: date, now: datetime,
             usecases: Iterable[str] | None = None, known_since: dict[str, datetime] | None = None) -> list[Verdict]:
    """Verdicts of every due day in [start, end] (local dates) of the chosen use cases.

    Days are judged only from when kiban could know: after the project's first run and, for a use case
    added later (``known_since``), from when it was first judged.
    """
    verdicts: list[Verdict] = []
    with quiet_gc():  # the facts are many long-lived objects: no cyclic-GC pass re-scans them while judging
        _judge_all(ctx, facts, start, end, now, usecases, known_since, verdicts)
    return verdicts


def _judge_all(ctx: Context, facts: Facts, start: date, end: date, now: datetime, usecases: Iterable[str] | None,
               known_since: dict[str, datetime] | None, verdicts: list[Verdict]) -> None:
    for name in usecases or ctx.project.usecases:
        usecase = ctx.project.usecases[name]
        since = facts.first_run
        if known_since is not None and since is not None:
            since = max(since, known_since.get(name, now))
        for due, window_start, deadline in ctx.schedule(usecase, start, end):
            if since is None or deadline < since:
                continue  # a promise made before kiban knew of it is not judged
            verdicts.append(evaluate_day(ctx, facts, usecase, due, window_start, deadline, now))


def _iso(value: datetime | date | None) -> str | None:
    return value.isoformat() if value is not None else None
