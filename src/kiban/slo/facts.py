"""The facts service levels are judged on, read from the state store in one pass.

Per asset: when it was published or confirmed current (and how far its data reached then), when
it failed, how long its builds took, and which blocking checks failed. Lists are sorted by time so
evaluation can bisect instead of scanning.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from kiban.status import AttemptStatus, CheckStatus, Severity
from kiban.store import Store
from kiban.store.schema import attempts, check_results, runs

GOOD = ("success", "fresh")
BAD = ("failed", "skipped", "cancelled")


@dataclass
class AssetFacts:
    published_at: list[datetime] = field(default_factory=list)  # success or fresh, ascending
    reach: list[date | None] = field(default_factory=list)  # running max of the watermark at each publish
    publish_seconds: list[float | None] = field(default_factory=list)  # build time of each publish (None: fresh)
    publish_started: list[datetime | None] = field(default_factory=list)  # when the build of each publish began
    publish_attempts: list[int] = field(default_factory=list)  # attempt number of each publish (2+: retried)
    # when the data of each publish was read (running max, so it can be bisected): the start of the load or
    # build, or of the run that found its inputs unchanged (fresh)
    read_at: list[datetime] = field(default_factory=list)
    failed_at: list[datetime] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (status, error) matching failed_at
    durations: list[float] = field(default_factory=list)  # seconds of successful builds, oldest first
    check_failed_at: list[datetime] = field(default_factory=list)
    check_failures: list[str] = field(default_factory=list)
    check_passed_at: list[datetime] = field(default_factory=list)
    check_passes: list[str] = field(default_factory=list)  # the check of each pass
    warned_at: list[datetime] = field(default_factory=list)  # non-blocking (warn) checks that failed
    warned: list[str] = field(default_factory=list)

    def first_publish_after(self, after: datetime) -> datetime | None:
        i = bisect.bisect_right(self.published_at, after)
        return self.published_at[i] if i < len(self.published_at) else None

    def first_reaching(self, through: date) -> datetime | None:
        """When the data first reached ``through`` (published with a watermark at or past it)."""
        i = self.first_reaching_index(through)
        return self.published_at[i] if i < len(self.reach) else None

    def first_reaching_index(self, through: date) -> int:
        """The index of the first publish whose data reached ``through`` (``len(reach)``: none yet)."""
        lo, hi = 0, len(self.reach)
        while lo < hi:  # reach is non-decreasing (None sorts first)
            mid = (lo + hi) // 2
            value = self.reach[mid]
            if value is not None and value >= through:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def last_publish_before(self, moment: datetime) -> int | None:
        """Index of the newest publish at or before ``moment``."""
        i = bisect.bisect_right(self.published_at, moment)
        return i - 1 if i else None

    def reach_at(self, moment: datetime) -> date | None:
        i = bisect.bisect_right(self.published_at, moment)
        return self.reach[i - 1] if i else None

    def failures_between(self, start: datetime, end: datetime) -> list[tuple[datetime, str, str]]:
        lo = bisect.bisect_right(self.failed_at, start)
        hi = bisect.bisect_right(self.failed_at, end)
        return [(self.failed_at[i], *self.failures[i]) for i in range(lo, hi)]

    def last_good_before(self, moment: datetime) -> datetime | None:
        i = bisect.bisect_right(self.published_at, moment)
        return self.published_at[i - 1] if i else None

    def failed_checks_between(self, start: datetime, end: datetime) -> list[tuple[datetime, str]]:
        lo = bisect.bisect_right(self.check_failed_at, start)
        hi = bisect.bisect_right(self.check_failed_at, end)
        found = [(self.check_failed_at[i], self.check_failures[i]) for i in range(lo, hi)]
        if found and self.check_passed_at:  # a later pass *of the same check* (by ``end``) clears its failures
            last_fail = {name: at for at, name in found}
            first = bisect.bisect_right(self.check_passed_at, found[0][0])
            j = bisect.bisect_right(self.check_passed_at, end)
            cleared = {name for at, name in zip(self.check_passed_at[first:j], self.check_passes[first:j],
                                                strict=True) if name in last_fail and at > last_fail[name]}
            if cleared:
                return [(at, name) for at, name in found if name not in cleared]
        return found


@dataclass
class Facts:
    assets: dict[str, AssetFacts] = field(default_factory=dict)
    first_run: datetime | None = None  # kiban knows nothing before this: earlier due days are not judged
    failure_times: list[datetime] = field(default_factory=list)  # every failure of any asset, ascending
    failure_assets: list[str] = field(default_factory=list)  # the asset of each

    any_check_failed: bool = False
    run_starts: list[datetime] = field(default_factory=list)  # when each run started, ascending
    # every timed build (began, published, asset) in the order they were published, as loaded (None: not loaded
    # so; derived from the assets' lists when asked). Nearly in the order they began, so sorting by that is cheap.
    builds: list[tuple[datetime, datetime, str]] | None = None
    memo: dict[tuple[Any, ...], Any] = field(default_factory=dict)  # answers derived from these facts only

    def run_start_before(self, moment: datetime) -> datetime | None:
        """The start of the newest run that began at or before ``moment``."""
        i = bisect.bisect_right(self.run_starts, moment)
        return self.run_starts[i - 1] if i else None

    def failed_between(self, start: datetime, end: datetime) -> list[str]:
        """Assets with a failure in (start, end]."""
        lo = bisect.bisect_right(self.failure_times, start)
        hi = bisect.bisect_right(self.failure_times, end)
        return self.failure_assets[lo:hi]

    def of(self, key: str) -> AssetFacts:
        return self.assets.get(key) or AssetFacts()


_gc_lock = threading.Lock()
_gc_holders = 0  # threads inside quiet_gc() now
_gc_was_enabled = False  # whether the first of them found the cyclic GC on (then the last turns it on again)


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """No cyclic-GC passes while service levels read and judge their facts: hundreds of thousands of long-lived
    small objects without reference cycles, which every pass would re-scan (a third of the time, measured).

    The cyclic GC is process-wide, and the console's threads judge concurrently, so this is the one place that
    touches it (tests/test_slo_gc.py): counted, so the GC comes back when the *last* thread leaves — never in the
    middle of another's judging — and stays off if it was off before. Reference counting frees what is dropped
    meanwhile; only cycles wait, for at most one judging. (It replaced a ``gc.freeze()`` that moved every object
    of the process, other threads' included, into the permanent generation and back.)"""
    global _gc_holders, _gc_was_enabled
    with _gc_lock:
        if _gc_holders == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_holders += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_holders -= 1
            if _gc_holders == 0 and _gc_was_enabled:
                gc.enable()


def load_facts(store: Store, project: str, since: datetime) -> Facts:
    """All attempts and check results of ``project`` that ended after ``since``."""
    with quiet_gc():
        return _load(store, project, since)


def _load(store: Store, project: str, since: datetime) -> Facts:
    facts = Facts()
    query = (sa.select(attempts.c.asset, attempts.c.status, attempts.c.ended_at, attempts.c.watermark,
                       attempts.c.seconds, attempts.c.error, attempts.c.started_at, attempts.c.attempt)
             .select_from(attempts.join(runs, runs.c.run_id == attempts.c.run_id))
             .where(runs.c.project == project, attempts.c.ended_at.is_not(None), attempts.c.ended_at > since)
             .order_by(attempts.c.ended_at, attempts.c.id))
    checks = (sa.select(check_results.c.asset, check_results.c.check_name, check_results.c.status,
                        check_results.c.checked_at, check_results.c.severity)
              .where(check_results.c.project == project, check_results.c.checked_at > since)
              .order_by(check_results.c.checked_at))
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
        check_rows = conn.execute(checks).all()
        facts.first_run = conn.execute(sa.select(sa.func.min(runs.c.started_at)).where(runs.c.project == project)
                                       ).scalar()
        facts.run_starts = [r[0] for r in conn.execute(
            sa.select(runs.c.started_at).where(runs.c.project == project, runs.c.started_at > since)
            .order_by(runs.c.started_at)).all()]
    reach: dict[str, date | None] = {}
    builds = facts.builds = []
    for asset, status, ended_at, watermark, seconds, error, started_at, attempt in rows:
        item = facts.assets.get(asset)
        if item is None:
            item = facts.assets[asset] = AssetFacts()
        if status in GOOD:
            best = reach.get(asset)
            if watermark is not None and (best is None or watermark > best):
                best = watermark
            reach[asset] = best
            item.published_at.append(ended_at)
            item.reach.append(best)
            item.publish_seconds.append(float(seconds) if status == AttemptStatus.SUCCESS and seconds is not None
                                        else None)
            item.publish_started.append(started_at if status == AttemptStatus.SUCCESS else None)
            if status == AttemptStatus.SUCCESS and started_at is not None:
                builds.append((started_at, ended_at, asset))
            item.publish_attempts.append(int(attempt or 1))
            # a build, a load, or a look that found the inputs (the source) unchanged: the data it publishes or
            # confirms is as of then (kiban.slo.completeness)
            read = started_at or ended_at
            item.read_at.append(max(read, item.read_at[-1]) if item.read_at else read)
            if status == AttemptStatus.SUCCESS and seconds is not None:
                item.durations.append(float(seconds))
        elif status in BAD:
            item.failed_at.append(ended_at)
            item.failures.append((status, error or ""))
            facts.failure_times.append(ended_at)  # rows come in time order
            facts.failure_assets.append(asset)
    for asset, name, status, checked_at, severity in check_rows:
        item = facts.assets.setdefault(asset, AssetFacts())
        if severity != Severity.ERROR:  # a warning blocks nothing, but names the first bad upstream (kiban.slo.cause)
            if status == CheckStatus.FAIL:
                item.warned_at.append(checked_at)
                item.warned.append(name)
            continue
        if status == CheckStatus.FAIL:
            facts.any_check_failed = True
            item.check_failed_at.append(checked_at)
            item.check_failures.append(name)
        else:
            item.check_passed_at.append(checked_at)
            item.check_passes.append(name)
    return facts
