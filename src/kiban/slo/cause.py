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

import statistics
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from kiban.slo.arrival import late_sources
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


def span(seconds: float) -> str:
    """A duration with its real precision: ``20 s``, ``4 min 10 s``, ``2 h 05 min``."""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min" if minutes else f"{hours} h"


def cause(kind: str, asset: str, reason: str, amount_s: float | None = None, **extra: Any) -> dict[str, Any]:
    """A root cause as stored on an incident (``error`` kept for readers that show only asset and error)."""
    status = {"late_source": "late", "bad_data": "bad data", "late_start": "late start"}.get(kind, kind)
    return {"asset": asset, "status": status, "kind": kind, "reason": reason, "error": reason,
            "amount_s": round(amount_s, 1) if amount_s is not None else None, **extra}


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
        what = f"arrived at {_local(ctx, source.arrived_at)}" if source.arrived_at else "had not arrived"
        candidates.append(cause("late_source", source.asset,
                                f"{source.asset} {what}, {span(source.overdue_s)} after its expected "
                                f"{_local(ctx, source.expected_at)} ({source.how})", source.overdue_s))
    chain = _critical_path(ctx, facts, usecase, window_start, done)
    failing = {f["asset"] for f in failures if f["status"] == AttemptStatus.FAILED}
    for failure in failures:
        if failure["status"] != AttemptStatus.FAILED and ctx.graph.upstream(failure["asset"]) & failing:
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
            found["reason"] = found["error"] = f"{found['reason']}; repaired {span(cost)} later"
        candidates.append(found)
    for key, (started, _ended, took, waited) in chain.items():
        extra = slow_by(facts, key, took)
        if extra is not None:
            usual = usual_seconds(facts, key)
            assert usual is not None
            candidates.append(cause("slow", key, f"{key} took {span(took)}, usually {span(usual[0])} "
                                                 f"(p90 {span(usual[1])}): {span(extra)} longer", extra))
        if waited > QUEUE_MARGIN:
            candidates.append(cause("queued", key, f"{key} waited {span(waited)} for a free thread after its "
                                                   f"inputs were ready (started {_local(ctx, started)})", waited))
    models = [v for k, v in chain.items() if ctx.graph.assets[k].layer != "lake"]
    if models and not late:
        start = min(started for started, _, _, _ in models)
        usual_lead = usual_start(ctx, facts, usecase, due)
        if start is not None and usual_lead is not None:
            lead = (deadline - start).total_seconds()
            behind = usual_lead - lead
            if behind > START_MARGIN:
                candidates.append(cause("late_start", next(k for k in chain if ctx.graph.assets[k].layer != "lake"),
                                        f"the run started at {_local(ctx, start)}, {span(behind)} later than "
                                        f"usual", behind))
    if not candidates:
        return None
    # a late source explains the lateness of everything after it; otherwise the biggest cost wins
    sources = [c for c in candidates if c["kind"] == "late_source"]
    if sources and max(c["amount_s"] for c in sources) >= 0.5 * max(c["amount_s"] for c in candidates):
        return max(sources, key=lambda c: c["amount_s"])
    return max(candidates, key=lambda c: c["amount_s"])


def _critical_path(ctx: Context, facts: Facts, usecase: UseCase, window_start: datetime, done: datetime
                   ) -> dict[str, tuple[datetime, datetime, float, float]]:
    """asset → (started, ended, seconds, waited for a thread) along the chain that made the delivery late."""
    builds: dict[str, tuple[datetime, datetime, float]] = {}
    for key in ctx.upstream(usecase.name):
        item = facts.assets.get(key)
        if item is None:
            continue
        i = item.last_publish_before(done)
        if i is None or item.published_at[i] <= window_start or item.publish_seconds[i] is None:
            continue
        ended, took = item.published_at[i], item.publish_seconds[i] or 0.0
        started = item.publish_started[i] or ended - timedelta(seconds=took)
        builds[key] = (started, ended, took)
    chain: dict[str, tuple[datetime, datetime, float, float]] = {}
    current = max((k for k in usecase.assets if k in builds), key=lambda k: builds[k][1], default=None)
    while current is not None:
        started, ended, took = builds[current]
        inputs = [d for d in ctx.graph.deps[current] if d in builds]
        ready = max((builds[d][1] for d in inputs), default=None)
        run_start = facts.run_start_before(started)
        since = max((t for t in (ready, run_start) if t is not None), default=started)
        chain[current] = (started, ended, took, max(0.0, (started - since).total_seconds()))
        current = max(inputs, key=lambda d: builds[d][1], default=None)
    return dict(reversed(list(chain.items())))


def usual_start(ctx: Context, facts: Facts, usecase: UseCase, due: date) -> float | None:
    """How long before the deadline the use case's first model build usually starts (median of past due days)."""
    models = [k for k in ctx.upstream(usecase.name) if ctx.graph.assets[k].layer != "lake"]
    leads = []
    for _, window_start, deadline in ctx.schedule(usecase, due - timedelta(days=28), due - timedelta(days=1)):
        # only builds of runs that started in the window: a late delivery of the day before publishes its last
        # steps after that day's deadline (in this window), and would make "usual" a whole day early
        first = first_build_start(facts, models, window_start, deadline, started_after=window_start)
        if first is not None:
            leads.append((deadline - first).total_seconds())
    return statistics.median(leads) if len(leads) >= MIN_HISTORY else None


def first_build_start(facts: Facts, keys: list[str], start: datetime, end: datetime,
                      started_after: datetime | None = None) -> datetime | None:
    """When the first build of any of ``keys`` published in (start, end] began (with ``started_after``: only
    builds of runs that started after that moment)."""
    found = []
    for key in keys:
        item = facts.of(key)
        i = item.last_publish_before(end)
        while i is not None and i >= 0 and item.published_at[i] > start:
            begun = item.publish_started[i]
            run = facts.run_start_before(begun) if begun is not None and started_after is not None else None
            if begun is not None and (started_after is None or run is None or run > started_after):
                found.append(begun)
            i -= 1
    return min(found, default=None)


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
        where = "" if first == key else f"; the first bad upstream is {first} ({', '.join(names)})"
        return cause("bad_data", first, f"blocking check failed on {key}: {', '.join(sorted(set(refused)))}{where}",
                     amount_s, failing=key)
    return cause("failed", key, f"{key} {failure.get('status') or 'failed'}: "
                                f"{str(failure.get('error') or '')[:300]}", amount_s, at=failure.get("at"))


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
        checks = ", ".join(evidence["failed_checks"])
        where = "" if first == failing else f"; the first bad upstream is {first} ({', '.join(names)})"
        return cause("bad_data", first, f"blocking check failed: {checks}{where}", None, failing=failing)
    failures = evidence.get("failures") or []
    if failures:
        root = root_cause(ctx.graph, failures)
        if root is not None:
            return failure_cause(ctx, facts, root, window_start, end)
    if evidence.get("not_started"):
        waiting = evidence["not_started"]
        return cause("late_start", waiting["asset"], f"no run has started {waiting['asset']} since "
                     f"{_local(ctx, window_start)}; it must start by {waiting['by']} to be on time (scheduler "
                     "down, lock, waiting)", None)
    late = evidence.get("late_sources") or []
    if late:
        worst = max(late, key=lambda s: s["overdue_s"])
        expected = datetime.fromisoformat(worst["expected_at"])
        stale = f", its data reaches only {worst['reach']} (needed {worst['needed']})" if worst.get("reach") and \
            worst.get("needed") and worst["reach"] < worst["needed"] else ""
        return cause("late_source", worst["asset"],
                     f"{worst['asset']} has not delivered: expected by {_local(ctx, expected)} ({worst['how']}), "
                     f"{span(worst['overdue_s'])} overdue{stale}", worst["overdue_s"])
    if usecase is None or verdict_name not in (Verdict.FAILED, Verdict.INCOMPLETE):
        return None
    # nothing failed, no source is late: the build is still running (a slow step), or never started
    waiting = _next_unbuilt(ctx, facts, usecase, window_start, end)
    if waiting is None:
        return None
    if busy:
        return cause("slow", waiting, f"{waiting} is still running: not published since "
                                      f"{_local(ctx, window_start)}", None)
    return cause("late_start", waiting, f"no run has built {waiting} since {_local(ctx, window_start)}: "
                                        "the nightly run did not start (scheduler, lock)", None)


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
