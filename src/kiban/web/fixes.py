"""The one fix the console offers for a problem, and the problems of today (Today's "who is hurt, since when, why,
what fixes it").

A fix is the incident's workaround when there is one (computed by ``kiban.incidents`` from what must be rebuilt
and why), else a rebuild of the first broken upstream asset and what reads it. It is shown with what it will
build before anyone presses it, and when there is nothing to do the console says so and why, instead of starting
a job that does nothing.
"""

from __future__ import annotations

import shlex
from datetime import UTC, date, datetime
from typing import Any

from kiban.errors import KibanError
from kiban.graph import select
from kiban.run.runner import resume_selection
from kiban.status import VERDICT_MISSED, AttemptStatus, Verdict
from kiban.web import models as m

BROKEN = (AttemptStatus.FAILED, AttemptStatus.SKIPPED, AttemptStatus.CANCELLED)
MISSED = VERDICT_MISSED


def fix_for(site: Any, workaround: str | None, root: str | None) -> m.Fix | None:
    """The fix as the console can offer it: the workaround command parsed into an action it can start (resume,
    or a run of a selection), with the assets it will build; None when there is neither workaround nor cause."""
    command = (workaround or "").strip() or (f"kiban run {root}+" if root else "")
    if not command:
        return None
    try:
        words = shlex.split(command)
    except ValueError:
        words = []
    words = _without_wait(words)  # `--wait N` (a run builds some of its assets): the console's job waits anyway
    if words[:3] == ["kiban", "run", "--resume"] and len(words) == 3:
        return _resume(site, command)
    if words[:2] == ["kiban", "run"] and len(words) > 2 and not any(w.startswith("-") for w in words[2:]):
        return _run(site, command, words[2:])
    return m.Fix(label="Run this in a terminal", command=command, action=None, selection=None, rebuilds=[])


def _without_wait(words: list[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word == "--wait":
            skip = True
        elif not word.startswith("--wait="):
            kept.append(word)
    return kept


def _resume(site: Any, command: str) -> m.Fix:
    try:
        undone = resume_selection(site.reader, site.project, site.graph)
    except KibanError as exc:
        return m.Fix(label="Resume the last run", command=command, action=None, selection=None, rebuilds=[],
                     nothing=f"Nothing to resume: {exc.message}.")
    if not undone:
        return m.Fix(label="Resume the last run", command=command, action=None, selection=None, rebuilds=[],
                     nothing="Nothing to resume: the last run finished everything it selected, and no asset's "
                             "latest build failed or was skipped. If the data is still wrong, fix its cause and "
                             "rebuild the asset.")
    return m.Fix(label=f"Resume: build the {_count(undone)} the last run left undone", command=command,
                 action="resume", selection=None, rebuilds=undone)


def _run(site: Any, command: str, terms: list[str]) -> m.Fix:
    try:
        keys = [k for k in select(site.graph, terms) if site.graph.assets[k].layer != "lake"]
    except KibanError as exc:
        return m.Fix(label="Rebuild", command=command, action=None, selection=None, rebuilds=[],
                     nothing=f"This workaround no longer fits the project: {exc.message}")
    if not keys:
        return m.Fix(label="Rebuild", command=command, action=None, selection=None, rebuilds=[],
                     nothing="Nothing to rebuild: the selection names only lake tables, which every run collects.")
    first = next((t.strip("+") for t in terms), keys[0])
    label = f"Rebuild {first}" + (f" and {_count(keys[1:], 'asset')} downstream" if len(keys) > 1 else "")
    return m.Fix(label=label, command=command, action="run", selection=" ".join(terms), rebuilds=keys)


def _count(items: list[str], noun: str = "asset") -> str:
    return f"{len(items)} {noun}{'s' if len(items) != 1 else ''}"


def first_line(text: str | None, limit: int = 160) -> str:
    flat = " ".join((text or "").split("\n", 1)[0].split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# -- today's problems ------------------------------------------------------------------------------------------------

def todays_risks(site: Any, result: Any, statuses: list[m.UseCaseStatus], latest: dict[str, Any],
                 open_incidents: list[Any]) -> list[m.Risk]:
    """Each use case that is not ready today or will not be, worst first: a miss today, a broken upstream build
    (failed, or skipped after a failure — the published data is then older than it should be), a forecast at
    risk. A miss of an earlier day is history, not today's risk."""
    graph = site.graph
    out: list[tuple[int, m.Risk]] = []
    for status in statuses:
        usecase = site.project.usecases[status.name]
        wanted = set(usecase.assets)
        for key in usecase.assets:
            if key in graph.assets:
                wanted |= graph.upstream(key)
        broken = {k: latest[k] for k in wanted if k in latest and latest[k].status in BROKEN}
        missed_today = status.verdict in MISSED and status.due_date == result.today
        if not (missed_today or broken or status.at_risk):
            continue
        root = _root(graph, broken)
        incident = next((i for i in open_incidents if i.usecase == status.name and i.due_date >= result.today),
                        None)
        parts: dict[str, Any] = {}
        if root is not None:
            attempt = broken[root]
            error = first_line(attempt.error) if attempt.error else None
            cause = f"{root} {attempt.status}" + (f": {error}" if error else "")
            parts = {"cause_asset": root, "cause_status": attempt.status, "cause_error": error}
            since = attempt.ended_at or attempt.started_at
        else:
            cause = status.detail or ("not ready by the deadline" if missed_today else "the forecast is late")
            parts = {"cause_said": status.detail_said}
            since = status.deadline if missed_today else None
        state = status.verdict if missed_today else ("broken" if broken else "at_risk")
        rank = 0 if missed_today else (1 if broken else 2)
        risk = m.Risk(
            usecase=status.name, description=status.description, state=state,
            consumers=[m.Consumer(name=c.name, team=c.team) for c in usecase.config.consumers],
            since=_aware(since), deadline=status.deadline, cause=cause, **parts,
            fix=fix_for(site, incident.workaround if incident else None, root),
            incident=incident.id if incident else None)
        out.append((rank, risk))
    return [r for _, r in sorted(out, key=lambda x: x[0])]


def _root(graph: Any, broken: dict[str, Any]) -> str | None:
    """The first bad upstream: a failed asset none of whose own upstreams failed (else the first broken one)."""
    failed = [k for k in graph.order if k in broken and broken[k].status == AttemptStatus.FAILED]
    for key in failed:
        if not any(u in broken and broken[u].status == AttemptStatus.FAILED for u in graph.upstream(key)):
            return key
    return next((k for k in graph.order if k in broken), None)


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def headline(statuses: list[m.UseCaseStatus], risks: list[m.Risk]) -> str:
    """'2 of 3 use cases ready · 1 at risk': the answer to the morning question in one line."""
    hurt = {r.usecase for r in risks}
    ready = sum(1 for s in statuses if s.verdict == Verdict.MET and s.name not in hurt)
    total = len(statuses)
    text = f"{ready} of {total} use case{'s' if total != 1 else ''} ready"
    if risks:
        return text + f" · {len(risks)} at risk"
    waiting = total - ready
    return text + (f" · {waiting} not due yet, nothing at risk" if waiting else " · nothing at risk")


def old_incidents(open_incidents: list[Any], today: date) -> int:
    return sum(1 for i in open_incidents if i.due_date < today)
