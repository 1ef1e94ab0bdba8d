"""Four weeks of made-up nightly runs for the shop example, so that `kiban slo` has a story to tell.

A real project gets this history by running every night; the demo has to invent it. This script
writes it into the project's state store (`.kiban/state.db`), relative to *today* in the project's
timezone, so the demo works on any day:

* Every night at about 02:00 a scheduled `kiban run` collects the source tables and builds
  every model, with durations and row counts close to those of a real run of the example at
  scale 1.0. The marts reach yesterday
  (their watermark, the newest date in their `time_column`, is the day before the run).
* One night the lake volume's backup snapshot overlaps the run: reading the POS order lines crawls
  and `warehouse.order_lines` takes almost seven hours. The marts arrive at about 08:55, after the
  stocking team's 06:00 and the store managers' 08:30 deadlines.
* The next night the snapshot has filled the disk: `warehouse.order_lines` fails ("No space left
  on device") and the three marts are skipped. The on-call engineer acknowledges the incident at
  09:05, frees space and repairs it with a manual `kiban run --resume` at 10:40.
* `mart.customer_rfm` takes a little longer every night (the loyalty programme keeps growing), so
  the report's "build times growing fastest" has something to show.

Both bad nights fall in the last seven days: that is the window in which kiban opens incidents and
which the morning report lists as misses.

What kiban would have said at the time is not invented: for the last seven days the script replays
the service-level checks that would have run then — after every run (as `kiban run` does) and at
every deadline (as `kiban slo check` from cron does) — with kiban's own `check()`, and stamps what
they wrote with the moment they would have run. Notifications are not sent, and the breach watcher
that runs inside `kiban run` is not replayed (on the failed night the check right after the run opens
the same at-risk incidents). Only the on-call engineer's acknowledgement is made up.

Honesty: every generated run has ``"generated_history": true`` in its options (``kiban runs``
lists them like any other run). Re-running this script deletes the generated runs and their
attempts, and all service-level verdicts, incidents and notifications of the project, then writes
a fresh history; runs made by a real `kiban run` are kept. The same day always gives the same
history (every random choice is seeded with the project name and the date).

Usage (after generate.py, before `kiban run`):

    python generate.py && python history.py && kiban run && kiban slo
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from kiban.errors import KibanError
from kiban.graph import Graph, build_graph
from kiban.incidents import IncidentLog
from kiban.project import Project, load_project
from kiban.slo.calendar import calendar_for
from kiban.slo.evaluate import Context
from kiban.slo.service import INCIDENT_DAYS, assess, check
from kiban.store import Store, utcnow
from kiban.store.schema import attempts, incident_events, incidents, notifications, runs, slo_evaluations

HERE = Path(__file__).resolve().parent
NIGHTS = 28
MARKER = "generated_history"
NIGHTLY_AT = time(2, 0)  # the scheduler starts the nightly run at 02:00 local time
REPAIR_AT = time(10, 40)  # the manual `kiban run --resume` after the failed night
ACK_AT = time(9, 5)  # the on-call engineer acknowledges the failed night's incident
SLOW_STEP = "warehouse.order_lines"
SLOW_STEP_ENDS = time(8, 54, 40)  # on the slow night, local time
FAILED_STEP = "warehouse.order_lines"
GROWING = "mart.customer_rfm"
GROWTH_PER_NIGHT = 0.03

# A real `kiban run` of the example at scale 1.0 (two cores): seconds, rows, bytes of each model.
REAL_BUILDS: dict[str, tuple[float, int | None, int | None]] = {
    "warehouse.stores": (0.012, None, None),  # a view: no rows counted
    "warehouse.products": (0.018, 2_000, None),
    "warehouse.customers": (0.22, 50_000, None),
    "warehouse.orders": (0.47, 361_008, 6_815_744),
    "warehouse.order_lines": (0.61, 999_920, 14_417_920),
    "mart.daily_sales": (0.24, 4_500, None),
    "mart.product_ranking": (0.042, 2_000, None),
    "mart.customer_rfm": (0.24, 39_767, None),
}
DEFAULT_BUILD = (0.2, None, None)  # a model added to the example later
COLLECT = (0.35, None, None)  # collecting one source table (its rows come from the real run)
ENGINE_START = 0.09  # seconds from the run's start to its first build (opening the warehouse, planning)


@dataclass
class Attempt:
    asset: str
    status: str
    started_at: datetime | None
    ended_at: datetime | None
    rows: int | None = None
    nbytes: int | None = None
    watermark: date | None = None
    error: str | None = None
    attempt: int = 1


@dataclass
class Run:
    run_id: str
    started_at: datetime  # naive UTC, like everything in the store
    ended_at: datetime
    status: str
    selection: list[str]
    options: dict[str, Any]
    attempts: list[Attempt] = field(default_factory=list)


@dataclass(frozen=True)
class Story:
    today: date
    slow_night: date
    failed_night: date


# --- time ------------------------------------------------------------------------------------------


def to_utc(day: date, at: time, tz: ZoneInfo, seconds: float = 0.0) -> datetime:
    """Naive UTC of local ``day`` ``at`` plus ``seconds``."""
    local = datetime.combine(day, at, tzinfo=tz) + timedelta(seconds=seconds)
    return local.astimezone(UTC).replace(tzinfo=None)


def local_today(tz: ZoneInfo, now: datetime) -> date:
    return now.replace(tzinfo=UTC).astimezone(tz).date()


# --- the story ---------------------------------------------------------------------------------------


def choose_story(today: date, is_business_day: Any) -> Story:
    """The slow night and the failed night: two consecutive business days in the last week, the failure
    about five days ago. In a week of holidays, fall back to two consecutive days."""
    earliest = today - timedelta(days=INCIDENT_DAYS - 1)
    for offset in (5, 4, 6, 3, 2):
        failed = today - timedelta(days=offset)
        if not is_business_day(failed):
            continue
        slow = failed - timedelta(days=1)
        while slow >= earliest and not is_business_day(slow):
            slow -= timedelta(days=1)
        if slow >= earliest:
            return Story(today, slow, failed)
    return Story(today, today - timedelta(days=5), today - timedelta(days=4))


def run_id(moment: datetime, salt: str) -> str:
    """Shaped like kiban's own run ids (start time in UTC and six hex digits)."""
    return moment.strftime("%Y%m%dT%H%M%S") + "-" + hashlib.sha256(salt.encode()).hexdigest()[:6]


def fingerprint(asset: str, day: date) -> str:
    return hashlib.sha256(f"{asset}@{day}".encode()).hexdigest()


def build_cost(key: str, night_index: int, rng: random.Random) -> tuple[float, int | None, int | None]:
    """Seconds, rows and bytes of one build: the real figures with a little noise, and the growth trend."""
    seconds, rows, nbytes = REAL_BUILDS.get(key, COLLECT if key.startswith("lake.") else DEFAULT_BUILD)
    nights_before_today = NIGHTS - 1 - night_index
    seconds *= rng.uniform(0.88, 1.15)
    if key == GROWING:
        seconds /= (1 + GROWTH_PER_NIGHT) ** nights_before_today
        rows = round(rows / (1 + GROWTH_PER_NIGHT / 4) ** nights_before_today) if rows else rows
    return seconds, rows, nbytes


def plan_run(graph: Graph, models: list[str], start: datetime, costs: dict[str, tuple[float, int | None, int | None]],
             through: date, rng: random.Random, slow: dict[str, datetime] | None = None,
             fail: dict[str, str] | None = None) -> tuple[list[Attempt], str]:
    """Attempts of one run building ``models`` from ``start``: each model starts when its inputs are
    done (enough threads for all), a failure skips everything downstream, as kiban's executor does."""
    slow, fail = slow or {}, fail or {}
    done: dict[str, datetime] = {}
    broken: dict[str, str] = {}  # asset → the failed asset it was skipped for
    out: list[Attempt] = []
    for key in graph.sorted(models):
        cause = next((broken[d] for d in graph.deps[key] if d in broken), None)
        if cause is not None:
            broken[key] = cause
            out.append(Attempt(key, "skipped", None, None, error=f"upstream {cause} failed", attempt=0))
            continue
        begin = max([start + timedelta(seconds=ENGINE_START + rng.uniform(0, 0.005))]
                    + [done[d] + timedelta(seconds=rng.uniform(0.0005, 0.003)) for d in graph.deps[key] if d in done])
        seconds, rows, nbytes = costs[key]
        if key in fail:
            end = begin + timedelta(seconds=seconds * 0.7)
            out.append(Attempt(key, "failed", begin, end, error=fail[key]))
            broken[key] = key
            continue
        end = slow.get(key, begin + timedelta(seconds=seconds))
        watermark = through if graph.assets[key].config.time_column else None
        out.append(Attempt(key, "success", begin, end, rows, nbytes, watermark))
        done[key] = end
    return out, "failed" if broken else "success"


def make_history(project: Project, graph: Graph, story: Story, now: datetime) -> list[Run]:
    """The runs of the last ``NIGHTS`` nights (and the repair), oldest first; only runs that ended before now."""
    tz = ZoneInfo(project.config.timezone)
    # what a nightly `kiban run` does: it collects the source tables first (its reads say the day is over), then
    # builds every model
    collected = project.source_tables() if project.sources else {}
    models = [k for k in graph.order if graph.assets[k].layer != "lake" or k in collected]
    out: list[Run] = []
    for index in range(NIGHTS):
        night = story.today - timedelta(days=NIGHTS - 1 - index)
        rng = random.Random(f"{project.name}:{night}")
        start = to_utc(night, NIGHTLY_AT, tz, rng.uniform(2, 150))  # cron plus the scheduler's delay
        costs = {k: build_cost(k, index, rng) for k in models}
        slow = {SLOW_STEP: to_utc(night, SLOW_STEP_ENDS, tz, rng.uniform(-20, 20))} \
            if night == story.slow_night else None
        fail = {FAILED_STEP: failure_message()} if night == story.failed_night else None
        planned, status = plan_run(graph, models, start, costs, night - timedelta(days=1), rng, slow, fail)
        out.append(_run(start, planned, status, [], {"exclude": [], "full_refresh": False, "resume": False}))
        if fail:  # the repair: `kiban run --resume` re-runs what failed or was skipped
            redo = [a.asset for a in planned if a.status in ("failed", "skipped")]
            start = to_utc(night, REPAIR_AT, tz, rng.uniform(-40, -25))
            redone, status = plan_run(graph, redo, start, {k: costs[k] for k in redo}, night - timedelta(days=1),
                                      rng)
            out.append(_run(start, redone, status, graph.sorted(redo),
                            {"exclude": [], "full_refresh": False, "resume": True}))
    return [r for r in out if r.ended_at < now - timedelta(seconds=60)]


def failure_message() -> str:
    """What DuckDB says when the sort behind `QUALIFY row_number()` spills to a full disk."""
    return ('IO Error: Could not write file "kiban.duckdb.tmp/duckdb_temp_storage_DEFAULT-0.tmp": '
            "No space left on device")


def _run(start: datetime, planned: list[Attempt], status: str, selection: list[str], options: dict[str, Any]) -> Run:
    ends = [a.ended_at for a in planned if a.ended_at is not None]
    end = max(ends) + timedelta(seconds=0.08)
    return Run(run_id(start, f"{start.isoformat()}{selection}"), start, end, status, selection,
               {**options, MARKER: True}, planned)


# --- writing -----------------------------------------------------------------------------------------


def forget(store: Store, project: str) -> int:
    """Delete earlier generated runs (and their attempts) and every service-level record of the project."""
    with store.engine.begin() as conn:
        generated = [r.run_id for r in conn.execute(sa.select(runs.c.run_id, runs.c.options)
                                                    .where(runs.c.project == project))
                     if json.loads(r.options or "{}").get(MARKER)]
        for chunk in range(0, len(generated), 500):
            ids = generated[chunk:chunk + 500]
            conn.execute(attempts.delete().where(attempts.c.run_id.in_(ids)))
            conn.execute(runs.delete().where(runs.c.run_id.in_(ids)))
        conn.execute(slo_evaluations.delete().where(slo_evaluations.c.project == project))
        ids_of_project = sa.select(incidents.c.id).where(incidents.c.project == project)
        conn.execute(incident_events.delete().where(incident_events.c.incident_id.in_(ids_of_project)))
        conn.execute(incidents.delete().where(incidents.c.project == project))
        # the notifications table has no project column: kiban's dedupe keys name the project
        kinds = ("incident", "at_risk", "report")
        conn.execute(notifications.delete().where(sa.or_(
            *(notifications.c.dedupe_key.startswith(f"{kind}:{project}:") for kind in kinds))))
    return len(generated)


def start_run(store: Store, project: str, run: Run) -> None:
    with store.engine.begin() as conn:
        conn.execute(runs.insert().values(
            run_id=run.run_id, project=project, status="running", selection=json.dumps(run.selection),
            options=json.dumps(run.options), started_at=run.started_at, heartbeat_at=run.started_at))


def record_attempt(store: Store, run: Run, item: Attempt) -> None:
    seconds = (item.ended_at - item.started_at).total_seconds() if item.started_at and item.ended_at else None
    with store.engine.begin() as conn:
        conn.execute(attempts.insert().values(
            run_id=run.run_id, asset=item.asset, attempt=item.attempt, status=item.status,
            started_at=item.started_at, ended_at=item.ended_at, seconds=seconds, rows=item.rows, bytes=item.nbytes,
            fingerprint=fingerprint(item.asset, run.started_at.date()), error=item.error, watermark=item.watermark))


def finish_run(store: Store, run: Run) -> None:
    with store.engine.begin() as conn:
        conn.execute(runs.update().where(runs.c.run_id == run.run_id).values(
            status=run.status, ended_at=run.ended_at, heartbeat_at=run.ended_at))


@contextmanager
def stamped(store: Store, moment: datetime) -> Iterator[None]:
    """Give the incident rows written inside the block the time ``moment`` instead of the wall clock.

    kiban's ``check(now=...)`` judges as of ``now`` but its incident log stamps with the real clock."""
    wall = utcnow()
    with store.engine.connect() as conn:
        last_event = conn.execute(sa.select(sa.func.max(incident_events.c.id))).scalar() or 0
    yield
    with store.engine.begin() as conn:
        conn.execute(incident_events.update().where(incident_events.c.id > last_event).values(at=moment))
        for column in ("opened_at", "updated_at", "resolved_at"):
            conn.execute(incidents.update().where(incidents.c[column] >= wall).values({column: moment}))


def replay(project: Project, graph: Graph, store: Store, history: list[Run], story: Story, now: datetime) -> int:
    """Write the runs in the order things happened, and run the service-level checks of the last
    ``INCIDENT_DAYS`` days at the moments they would have run. Returns the number of checks."""
    tz = ZoneInfo(project.config.timezone)
    from_day = story.today - timedelta(days=INCIDENT_DAYS)
    checks_from = to_utc(from_day, time(0), tz)
    events: list[tuple[datetime, int, Any]] = []  # (when, order at the same moment, action)
    for run in history:
        events.append((run.started_at, 0, ("start", run)))
        for item in run.attempts:
            events.append((item.ended_at or run.ended_at, 1, ("attempt", run, item)))
        events.append((run.ended_at, 2, ("finish", run)))
        if run.ended_at >= checks_from:
            events.append((run.ended_at + timedelta(seconds=0.5), 3, ("check",)))  # `kiban run` checks at its end
    ctx = Context.build(project, graph)
    for usecase in project.usecases.values():
        for _, _, deadline in ctx.schedule(usecase, from_day, story.today):
            if checks_from <= deadline < now:
                events.append((deadline + timedelta(seconds=3), 3, ("check",)))  # cron: `kiban slo check`
    ack = to_utc(story.failed_night, ACK_AT, tz)
    if ack < now:
        events.append((ack, 4, ("ack",)))
    done = 0
    for when, _, action in sorted(events, key=lambda e: (e[0], e[1])):
        kind = action[0]
        if kind == "start":
            start_run(store, project.name, action[1])
        elif kind == "attempt":
            record_attempt(store, action[1], action[2])
        elif kind == "finish":
            finish_run(store, action[1])
        elif kind == "check":
            with stamped(store, when):
                check(project, graph, store, now=when, notify=False)
            done += 1
        elif kind == "ack":
            log = IncidentLog(store, project.name)
            for name in sorted(project.usecases):
                incident = log.open_for(name, story.failed_night)
                if incident is not None and incident.status == "open":
                    with stamped(store, when):
                        log.acknowledge(incident.id, actor="sato",
                                        note="lake volume full (the backup snapshot); freeing space, "
                                             "then kiban run --resume")
    return done


# --- main --------------------------------------------------------------------------------------------


def generate(project_dir: Path, now: datetime | None = None) -> dict[str, Any]:
    """Replace the generated history of the project in ``project_dir``; returns what was written."""
    project = load_project(project_dir)
    sources = project.root / "sources_data" / "pos.sqlite"
    if not sources.is_file():
        raise SystemExit(f"history.py: {sources} does not exist yet; run generate.py first")
    try:
        graph = build_graph(project)
    except KibanError as exc:  # most likely: the lake is not generated yet
        raise SystemExit(f"history.py: cannot read the project's graph ({exc}); run generate.py first") from None
    now = now or utcnow()
    tz = ZoneInfo(project.config.timezone)
    # the store managers' calendar decides which days are business days (the project's default without them)
    calendar = calendar_for(project.usecases["morning_sales"].config.need.calendar or project.config.calendar
                            if "morning_sales" in project.usecases else project.config.calendar, project.config)
    story = choose_story(local_today(tz, now), calendar.is_business_day)
    store = Store(project.state_url)
    try:
        removed = forget(store, project.name)
        history = make_history(project, graph, story, now)
        checks = replay(project, graph, store, history, story, now)
        result = assess(project, graph, store, now=now)
        found = IncidentLog(store, project.name).recent(include_resolved=True)
    finally:
        store.close()
    misses = [{"usecase": v.usecase, "day": v.due_date.isoformat(), "verdict": v.verdict,
               "lateness_s": v.lateness_s} for v in result.verdicts if v.verdict not in ("met", "pending")]
    return {"project": project.name, "today": story.today.isoformat(), "slow_night": story.slow_night.isoformat(),
            "failed_night": story.failed_night.isoformat(), "runs": len(history), "replaced": removed,
            "first": history[0].started_at.isoformat() if history else None, "checks": checks, "misses": misses,
            "incidents": [{"id": i.id, "usecase": i.usecase, "day": i.due_date.isoformat(), "status": i.status,
                           "verdict": i.verdict} for i in sorted(found, key=lambda i: i.id)],
            "timezone": project.config.timezone}


def _minutes(seconds: float | None) -> str:
    minutes = round((seconds or 0) / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write four weeks of generated nightly runs into the shop "
                                                 "example's state store (replacing earlier generated history).")
    parser.add_argument("--project", type=Path, default=HERE, help="project folder (default: this script's)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    summary = generate(args.project)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    def day(iso: str) -> str:
        return f"{iso} ({date.fromisoformat(iso):%a})"

    print(f"history of {summary['project']}: {summary['runs']} generated runs over the {NIGHTS} nights up to "
          f"{summary['today']} ({summary['timezone']}); {summary['replaced']} earlier generated runs replaced")
    print(f"  {day(summary['slow_night'])}  slow night: {SLOW_STEP} took until {SLOW_STEP_ENDS:%H:%M}")
    print(f"  {day(summary['failed_night'])}  {FAILED_STEP} failed (no space left on device); "
          f"repaired by `kiban run --resume` at {REPAIR_AT:%H:%M}")
    print(f"  {GROWING} builds about {GROWTH_PER_NIGHT:.0%} slower every night")
    for miss in summary["misses"]:
        late = f" by {_minutes(miss['lateness_s'])}" if miss["lateness_s"] else ""
        print(f"  -> {miss['usecase']} {day(miss['day'])}: {miss['verdict']}{late}")
    print(f"replayed {summary['checks']} service-level checks of the last {INCIDENT_DAYS} days (as `kiban run` and "
          f"cron's `kiban slo check` would have run them); incidents:")
    for item in summary["incidents"]:
        print(f"  #{item['id']} {item['usecase']} {day(item['day'])}: {item['verdict']}, {item['status']}")
    print(f"generated runs are marked {{\"{MARKER}\": true}} in their options; run this again to replace them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
