"""Root cause with evidence: why a use case's data is late or missing, with the asset, the reason and numbers.

Lateness is classified into

``late_source``  a source table delivered after its expected arrival (or has not yet)
``late_start``   the run that built the data started later than usual (scheduler down, lock, waiting)
``queued``       a step waited for a free thread or tag slot after its inputs were ready
``slow``         a step ran beyond its normal variation (past its median by 4× the spread of its faster half,
                 at least a quarter of the median and a minute), by how much
``failed``       a step failed (and was retried or repaired later, or not yet)
``bad_data``     a blocking check failed; the cause is the first bad upstream (the upstream-most asset
                 whose checks failed), which must be fixed before anything downstream is rebuilt

For a delivery that came late, the candidates are weighed by the minutes each cost on the delivery's
critical path (walked back from the asset that was ready last), and the costliest is named. A late
source wins over a late start it explains (a run started late *because* it waited for the data).
"""

from __future__ import annotations

import bisect
import itertools
import statistics
from collections.abc import Collection
from datetime import date, datetime, timedelta
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from kiban.messages import Part, part, say
from kiban.messages import span as span
from kiban.slo.arrival import late_sources
from kiban.slo.calendar import local_date, wall_seconds
from kiban.slo.durations import percentile
from kiban.slo.facts import Facts
from kiban.slo.impact import root_cause
from kiban.status import AttemptStatus, Verdict

if TYPE_CHECKING:
    from kiban.project import UseCase
    from kiban.slo.evaluate import Context

SLOW_MARGIN = 60.0  # seconds past p90 (or 20 % of it, if more) before a step counts as slow
QUEUE_MARGIN = 60.0  # seconds a ready step may wait for a thread without being blamed
START_MARGIN = 600.0  # a run starting up to 10 min after its usual time is not a late start
MIN_HISTORY = 5  # builds before "usual" means anything


def cause(kind: str, asset: str, reason: str | list[Part], amount_s: float | None = None, **extra: Any
          ) -> dict[str, Any]:
    """A root cause as stored on an incident (``error`` kept for readers that show only asset and error).

    ``reason`` given as parts (:mod:`kiban.messages`) is stored as ``said`` too, for readers in other languages."""
    status = {"late_source": "late", "bad_data": "bad data", "late_start": "late start"}.get(kind, kind)
    said = reason if isinstance(reason, list) else None
    text = say(said) if said is not None else str(reason)
    found = {"asset": asset, "status": status, "kind": kind, "reason": text, "error": text,
             "amount_s": round(amount_s, 1) if amount_s is not None else None, **extra}
    if said is not None:
        found["said"] = said
    return found


def said_of(found: dict[str, Any] | None) -> list[Part]:
    """The parts of a cause's reason (a cause stored before they were: its English text, as written)."""
    if not found:
        return []
    if isinstance(found.get("said"), list):
        return list(found["said"])
    return [part("text", text=str(found.get("reason") or found.get("error") or found.get("asset") or ""))]


def how_part(how: str) -> Part:
    """How a source's arrival is expected ("declared expected_by 06:00", "learned from 12 loads") as a part."""
    words = how.split()
    if len(words) == 3 and words[:2] == ["declared", "expected_by"]:
        return part("how.declared", at=words[2])
    if len(words) == 4 and words[:2] == ["learned", "from"] and words[2].isdigit():
        return part("how.learned", n=int(words[2]))
    return part("text", text=f"({how})")


def usual_seconds(facts: Facts, key: str) -> tuple[float, float] | None:
    """(p50, p90) of the asset's recent build times, or None without enough history."""
    history = facts.of(key).durations[-30:]
    if len(history) < MIN_HISTORY:
        return None
    return percentile(history, 0.5), percentile(history, 0.9)


def slow_by(facts: Facts, key: str, took: float) -> float | None:
    """How much longer than usual (p50) a build of ``took`` seconds was, if beyond its normal variation."""
    usual = usual_seconds(facts, key)
    if usual is None:
        return None
    p50, _p90 = usual
    # normal variation from the faster half of the history, which slow nights do not inflate
    spread = p50 - percentile(facts.of(key).durations[-30:], 0.25)
    if took - p50 <= max(SLOW_MARGIN, 0.25 * p50, 4 * spread):
        return None
    return took - p50


def late_delivery(ctx: Context, facts: Facts, usecase: UseCase, due: date, window_start: datetime,
                  deadline: datetime, done: datetime, failures: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Why data delivered at ``done`` (after ``deadline``) was late: the costliest cause on its critical path."""
    candidates: list[dict[str, Any]] = []
    late = late_sources(ctx, facts, usecase, due, window_start, deadline, done)
    for source in late:
        expected = _local(ctx, source.expected_at)
        how = how_part(source.how)
        said = part("cause.source_arrived", asset=source.asset, at=_local(ctx, source.arrived_at),
                    overdue_s=source.overdue_s, expected=expected, how=how) if source.arrived_at else \
            part("cause.source_missing", asset=source.asset, overdue_s=source.overdue_s, expected=expected, how=how)
        candidates.append(cause("late_source", source.asset, [said], source.overdue_s))
    chain = _critical_path(ctx, facts, usecase, window_start, done)
    failing = 0  # the failed assets, as a bitset over the graph's order
    for f in failures:
        if f["status"] == AttemptStatus.FAILED and f["asset"] in ctx.graph.assets:
            failing |= ctx.bit(f["asset"])
    for failure in failures:
        if failure["status"] != AttemptStatus.FAILED and failure["asset"] in ctx.graph.assets and \
                ctx.upstream_bits(failure["asset"]) & failing:
            continue  # skipped because a step above it failed: that failure is the cause, not this skip
        if failure["asset"] not in chain and chain:
            continue
        item = facts.of(failure["asset"])
        failed_at = datetime.fromisoformat(failure["at"])
        repaired = item.first_publish_after(failed_at)
        cost = ((repaired or done) - failed_at).total_seconds()
        # judged as of the failure: the repair's passing check must not hide that a check refused the data
        found = failure_cause(ctx, facts, failure, window_start, failed_at, cost)
        if repaired:
            found["said"] = [*said_of(found), part("cause.repaired_later", cost_s=cost)]
            found["reason"] = found["error"] = say(found["said"])
        candidates.append(found)
    for key, (started, _ended, took, waited) in chain.items():
        extra = slow_by(facts, key, took)
        if extra is not None:
            usual = usual_seconds(facts, key)
            assert usual is not None
            candidates.append(cause("slow", key, [part("cause.slow_took", asset=key, took_s=took, usual_s=usual[0],
                                                       p90_s=usual[1], extra_s=extra)], extra))
        if waited > QUEUE_MARGIN:
            candidates.append(cause("queued", key, [part("cause.queued", asset=key, waited_s=waited,
                                                         started=_local(ctx, started))], waited))
    models = [v for k, v in chain.items() if ctx.graph.assets[k].layer != "lake"]
    if models and not late:
        start = min(started for started, _, _, _ in models)
        usual_lead = usual_start(ctx, facts, usecase, due)
        if start is not None and usual_lead is not None:
            behind = usual_lead - wall_seconds(start, deadline, ctx.tz)  # on the clock people read
            if behind > START_MARGIN:
                candidates.append(cause("late_start", next(k for k in chain if ctx.graph.assets[k].layer != "lake"),
                                        [part("cause.late_start", at=_local(ctx, start), behind_s=behind)], behind))
    if not candidates:
        return None
    # a late source explains the lateness of everything after it; otherwise the biggest cost wins
    sources = [c for c in candidates if c["kind"] == "late_source"]
    if sources and max(c["amount_s"] for c in sources) >= 0.5 * max(c["amount_s"] for c in candidates):
        return max(sources, key=lambda c: c["amount_s"])
    return max(candidates, key=lambda c: c["amount_s"])


def _critical_path(ctx: Context, facts: Facts, usecase: UseCase, window_start: datetime, done: datetime
                   ) -> dict[str, tuple[datetime, datetime, float, float]]:
    """asset → (started, ended, seconds, waited for a thread) along the chain that made the delivery late.

    Only the assets the walk back from the use case reaches are looked up (the chain and its inputs), not
    every asset upstream: thousands at 5,000 assets."""
    builds: dict[str, tuple[datetime, datetime, float] | None] = {}

    def build_of(key: str) -> tuple[datetime, datetime, float] | None:
        """The build of ``key`` published in (window_start, done], if it was built in the window."""
        if key not in builds:
            item = facts.assets.get(key)
            i = item.last_publish_before(done) if item is not None else None
            if item is None or i is None or item.published_at[i] <= window_start or item.publish_seconds[i] is None:
                builds[key] = None
            else:
                ended, took = item.published_at[i], item.publish_seconds[i] or 0.0
                builds[key] = (item.publish_started[i] or ended - timedelta(seconds=took), ended, took)
        return builds[key]

    chain: dict[str, tuple[datetime, datetime, float, float]] = {}
    built = {k: b for k in usecase.assets if (b := build_of(k)) is not None}
    current = max(built, key=lambda k: built[k][1], default=None)
    while current is not None:
        started, ended, took = built[current]
        built = {d: b for d in ctx.graph.deps[current] if (b := build_of(d)) is not None}
        ready = max((b[1] for b in built.values()), default=None)
        run_start = facts.run_start_before(started)
        since = max((t for t in (ready, run_start) if t is not None), default=started)
        chain[current] = (started, ended, took, max(0.0, (started - since).total_seconds()))
        current = max(built, key=lambda d: built[d][1], default=None)
    return dict(reversed(list(chain.items())))


def usual_start(ctx: Context, facts: Facts, usecase: UseCase, due: date) -> float | None:
    """How long before the deadline the use case's first model build usually starts (median of past due days), on
    the local wall clock (:func:`~kiban.slo.calendar.wall_seconds`)."""
    models: set[str] | None = None
    leads = []
    for _, window_start, deadline in ctx.schedule(usecase, due - timedelta(days=28), due - timedelta(days=1)):
        # only builds of runs that started in the window: a late delivery of the day before publishes its last
        # steps after that day's deadline (in this window), and would make "usual" a whole day early
        memo = ("first build", usecase.name, window_start, deadline)  # late days a week apart share 3 weeks
        if memo not in facts.memo:
            if models is None:
                models = set(ctx.upstream_in(usecase.name, lake=False))
            facts.memo[memo] = first_build_start(facts, models, window_start, deadline, started_after=window_start)
        first = facts.memo[memo]
        if first is not None:
            leads.append(wall_seconds(first, deadline, ctx.tz))
    return statistics.median(leads) if len(leads) >= MIN_HISTORY else None


def first_build_start(facts: Facts, keys: Collection[str], start: datetime, end: datetime,
                      started_after: datetime | None = None) -> datetime | None:
    """When the first build of any of ``keys`` published in (start, end] began (with ``started_after``: only
    builds of runs that started after that moment)."""
    if started_after is not None:
        wanted = keys if isinstance(keys, (set, frozenset)) else set(keys)  # looked up once per build
        return _first_build_of_runs_after(facts, wanted, start, end, started_after)
    found = []
    for key in keys:
        item = facts.of(key)
        i = item.last_publish_before(end)
        while i is not None and i >= 0 and item.published_at[i] > start:
            begun = item.publish_started[i]
            if begun is not None:
                found.append(begun)
            i -= 1
    return min(found, default=None)


def _first_build_of_runs_after(facts: Facts, keys: Collection[str], start: datetime, end: datetime,
                               started_after: datetime) -> datetime | None:
    """:func:`first_build_start` for builds of runs that started after ``started_after``: every build of the
    facts in the order they began (made once per facts), looked at from ``started_after`` on until one of
    ``keys`` is found — a few builds of one night, where asking each of thousands of upstream assets for its
    builds in the window cost 80 ms a late day at 5,000 assets."""
    memo = ("builds by start",)
    if memo not in facts.memo:
        loaded = facts.builds if facts.builds is not None else [
            (begun, published, key) for key, item in facts.assets.items()
            for begun, published in zip(item.publish_started, item.published_at, strict=True) if begun is not None]
        builds = sorted(loaded, key=itemgetter(0))  # by start only (the answer is a start): nearly sorted as loaded
        facts.memo[memo] = builds, [b[0] for b in builds]
    builds, begins = facts.memo[memo]
    first_run = facts.run_starts[0] if facts.run_starts else None
    # a build before the first known run has no run to judge by and counts (as it always did); any other must
    # belong to a run that started after ``started_after``, so it began after that too
    early = len(builds) if first_run is None else bisect.bisect_left(begins, first_run)
    after = bisect.bisect_right(begins, started_after)
    for index in itertools.chain(range(min(early, after)), range(after, len(builds))):
        begun, published, key = builds[index]
        if begun > end:
            break
        if start < published <= end and key in keys:
            run = facts.run_start_before(begun)
            if run is None or run > started_after:
                return begun
    return None


def first_bad_upstream(ctx: Context, facts: Facts, failing: str, start: datetime, end: datetime
                       ) -> tuple[str, list[str]]:
    """The upstream-most asset (``failing`` or above it) whose checks failed in (start, end], and the checks."""
    for key in ctx.graph.sorted(ctx.graph.upstream(failing) | {failing}):
        item = facts.assets.get(key)
        if item is None:
            continue
        names = [n for _, n in item.failed_checks_between(start, end)]
        names += [item.warned[i] for i, at in enumerate(item.warned_at) if start < at <= end]
        if names:
            return key, sorted(set(names))
    return failing, []


def failure_cause(ctx: Context, facts: Facts, failure: dict[str, Any], start: datetime, end: datetime,
                  amount_s: float | None = None) -> dict[str, Any]:
    """The cause of one failed step, the one way every verdict, warning and incident names it: a step whose
    blocking check refused the data in (start, end] is ``bad_data`` named after the *first bad upstream* (what
    must be fixed before anything downstream is rebuilt), anything else ``failed`` with its error."""
    key = failure["asset"]
    refused = [n for _, n in facts.of(key).failed_checks_between(start, end)] if key in facts.assets else []
    if refused:
        first, names = first_bad_upstream(ctx, facts, key, start, end)
        said = [part("cause.check_failed_on", asset=key, checks=", ".join(sorted(set(refused))))]
        if first != key:
            said.append(part("cause.first_bad_upstream", asset=first, checks=", ".join(names)))
        return cause("bad_data", first, said, amount_s, failing=key)
    return cause("failed", key, [part("cause.step_failed", asset=key, status=failure.get("status") or "failed",
                                      error=str(failure.get("error") or "")[:300])], amount_s, at=failure.get("at"))


def _local(ctx: Context, moment: datetime | None) -> str:
    if moment is None:
        return "-"
    from datetime import UTC

    return moment.replace(tzinfo=UTC).astimezone(ctx.tz).strftime("%H:%M")


def explain(ctx: Context, facts: Facts, verdict_name: str, evidence: dict[str, Any], window_start: datetime,
            end: datetime, busy: bool = False, usecase: str | None = None) -> dict[str, Any] | None:
    """The root cause of a verdict (``at_risk`` or a miss) from its evidence, with asset, reason and numbers."""
    if evidence.get("cause"):
        return dict(evidence["cause"])
    if verdict_name == Verdict.BAD_DATA and evidence.get("failed_checks"):
        failing = str(evidence["failed_checks"][0]).split(":", 1)[0]
        first, names = first_bad_upstream(ctx, facts, failing, window_start, end)
        said = [part("cause.check_failed", checks=", ".join(evidence["failed_checks"]))]
        if first != failing:
            said.append(part("cause.first_bad_upstream", asset=first, checks=", ".join(names)))
        return cause("bad_data", first, said, None, failing=failing)
    failures = evidence.get("failures") or []
    if failures:
        root = root_cause(ctx.graph, failures)
        if root is not None:
            return failure_cause(ctx, facts, root, window_start, end)
    if evidence.get("not_started"):
        waiting = evidence["not_started"]
        return cause("late_start", waiting["asset"], [part("cause.not_started", asset=waiting["asset"],
                                                           since=_local(ctx, window_start), by=waiting["by"])], None)
    partial = [item["partial"] for item in (evidence.get("assets") or {}).values() if item.get("partial")]
    if partial and verdict_name == Verdict.INCOMPLETE:  # reaches the day on an early read: more exact than 'late'
        first = partial[0]
        read = datetime.fromisoformat(first["read_at"])
        return cause("partial_day", first["source"],
                     [part("cause.read_before_day_end", asset=first["source"],
                           read=f"{local_date(read, ctx.tz)} {_local(ctx, read)}",
                           through=evidence.get("data_through"))],
                     None)
    late = evidence.get("late_sources") or []
    if late:
        worst = max(late, key=lambda s: s["overdue_s"])
        expected = datetime.fromisoformat(worst["expected_at"])
        said = [part("cause.source_overdue", asset=worst["asset"], expected=_local(ctx, expected),
                     overdue_s=worst["overdue_s"], how=how_part(worst["how"]))]
        if worst.get("reach") and worst.get("needed") and worst["reach"] < worst["needed"]:
            said.append(part("cause.source_stale", ", ", reach=worst["reach"], needed=worst["needed"]))
        return cause("late_source", worst["asset"], said, worst["overdue_s"])
    if usecase is None or verdict_name not in (Verdict.FAILED, Verdict.INCOMPLETE):
        return None
    # nothing failed, no source is late: the build is still running (a slow step), or never started
    waiting = _next_unbuilt(ctx, facts, usecase, window_start, end)
    if waiting is None:
        return None
    if busy:
        return cause("slow", waiting, [part("cause.still_running", asset=waiting, since=_local(ctx, window_start))],
                     None)
    return cause("late_start", waiting, [part("cause.not_built", asset=waiting, since=_local(ctx, window_start))],
                 None)


def _next_unbuilt(ctx: Context, facts: Facts, usecase: str, window_start: datetime, end: datetime) -> str | None:
    """The first asset on the use case's path not built in the window whose inputs all were (what runs now)."""
    built = {k for k in ctx.upstream(usecase)
             if (i := facts.of(k).last_publish_before(end)) is not None and facts.of(k).published_at[i] > window_start}
    for key in ctx.upstream(usecase):
        if key in built or ctx.graph.assets[key].layer == "lake":
            continue
        if all(d in built or ctx.graph.assets[d].layer == "lake" for d in ctx.graph.deps[key]):
            return key
    return None
