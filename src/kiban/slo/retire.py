"""Incidents whose promise is gone: closed by the service-level check, never presented as a recovery.

An incident is about one use case's promise on one day. When the project no longer makes that promise — the use
case was removed or renamed (``retired``), its schedule no longer has that day, or its definition changed
(deadline, days, assets, data reach, checks) so that the day is no longer in breach (``redefined``) — nobody is
waiting for a repair: the check closes the incident with that resolution on its timeline (kiban.status
``IncidentResolution``), so ``kiban incidents``, the console and on-call stop showing a breach of nothing.

What people hear (see docs/incidents.md): the owners and on-call — who were paged about it — get one ``info``
message saying it was closed *and why*, worded as a withdrawal, never "closed, the data is ready"; for a removed use
case the owners' channels went with its definition, so only on-call hears. Consumers hear nothing (no delivery
happened, and whoever removed the use case owns telling them). Messages about it still waiting in the outbox for a
retry are dropped: a page for a closed incident must not keep going out.

Only this project's incidents are read (``IncidentLog`` filters by project): projects sharing a state store never
close each other's. A withdrawn incident reopens if its use case is defined again and in breach that day
(``IncidentLog.record``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from kiban.incidents import Incident, IncidentLog
from kiban.messages import Part, part, say
from kiban.notify import Message, Notifier
from kiban.notify.outbox import withdraw_retries
from kiban.project import Project, UseCase
from kiban.slo.evaluate import MISSES, Context, Verdict
from kiban.status import IncidentResolution
from kiban.status import Verdict as VerdictStatus
from kiban.team.oncall import channels as oncall_channels

STANDING = frozenset({*MISSES, VerdictStatus.AT_RISK}) - {VerdictStatus.LATE}  # a verdict an incident stays open for


def promise_of(project: Project, usecase: UseCase) -> dict[str, Any]:
    """What the use case promises (kept in each incident's ``impact`` as ``promise``): a breach of it applies only
    while this stays the same. As JSON reads it back (lists, not tuples), so stored and current compare equal."""
    need = usecase.config.need
    found = {"assets": sorted(usecase.assets), "by": need.by, "on": need.on,
             "calendar": need.calendar or project.config.calendar, "data_through": need.data_through,
             "checks": need.checks}
    loaded: dict[str, Any] = json.loads(json.dumps(found, default=str))
    return loaded


def withdraw_stale(project: Project, ctx: Context, incidents: IncidentLog, verdicts: Iterable[Verdict],
                   now: datetime, notify: bool) -> list[Incident]:
    """Close every unresolved incident of this project whose promise the project no longer makes; return them.

    ``verdicts`` are this check's (the days judged now, by the current definition)."""
    judged = {(v.usecase, v.due_date): v for v in verdicts}
    promises = {name: promise_of(project, u) for name, u in project.usecases.items()}
    closed: list[Incident] = []
    for incident in incidents.unresolved():
        found = _why_stale(ctx, incidents, incident, judged, promises)
        if found is None:
            continue
        resolution, said = found
        done = incidents.withdraw(incident.id, resolution, said, at=now)
        closed.append(done)
        withdraw_retries(incidents.store, project.name, _keys(project, incident),
                         f"incident #{incident.id} was closed ({resolution}): not sent again")
        if notify:
            _tell(project, incidents, done, resolution, said, now)
    return closed


def _why_stale(ctx: Context, incidents: IncidentLog, incident: Incident, judged: dict[tuple[str, Any], Verdict],
               promises: dict[str, dict[str, Any]]) -> tuple[IncidentResolution, list[Part]] | None:
    usecase = ctx.project.usecases.get(incident.usecase)
    if usecase is None:
        said = [part("event.retired", usecase=incident.usecase)]
        old = incident.impact.get("promise")
        successors = sorted(n for n, p in promises.items() if old and p == old)
        if successors:  # a rename (same assets and deadline): said, not carried over — the new name has no past
            said.append(part("event.retired_successor", successor=", ".join(successors)))
        return IncidentResolution.RETIRED, said
    if not ctx.schedule(usecase, incident.due_date, incident.due_date):
        return IncidentResolution.REDEFINED, [part("event.not_due", day=str(incident.due_date),
                                                   usecase=incident.usecase)]
    old = incident.impact.get("promise")
    verdict = judged.get((incident.usecase, incident.due_date))
    if old is None or old == promises[incident.usecase]:
        return None  # the same promise: the verdicts keep the incident in step
    if verdict is None:  # the new definition does not judge the day (a deadline before kiban knew of it)
        return IncidentResolution.REDEFINED, [part("event.redefined_unjudged", usecase=incident.usecase)]
    if verdict.verdict in STANDING:
        incidents.set_promise(incident.id, promises[incident.usecase])  # broken by the new definition too
        return None
    return IncidentResolution.REDEFINED, [part("event.redefined", usecase=incident.usecase,
                                               verdict=verdict.verdict)]


def _keys(project: Project, incident: Incident) -> list[str]:
    """The dedupe-key prefixes of every message sent about the incident (kiban.slo.service, kiban.slo.watch)."""
    return [f"incident:{project.name}:{incident.usecase}:{incident.due_date}:",
            f"at_risk:{project.name}:{incident.usecase}:{incident.id}:"]


def _tell(project: Project, incidents: IncidentLog, incident: Incident, resolution: IncidentResolution,
          said: list[Part], now: datetime) -> None:
    """One ``info`` message to whoever was paged about it: owners (while the use case is defined) and on-call."""
    usecase = project.usecases.get(incident.usecase)
    on_call, paged = oncall_channels(project, now)
    channels = sorted(set(usecase.config.owner_notify if usecase else ()) | set(paged))
    if not channels:
        return
    why = "use case no longer defined" if resolution == IncidentResolution.RETIRED else "service level changed"
    facts = {"use case": incident.usecase, "due": str(incident.due_date), "incident": f"#{incident.id}",
             "resolution": str(resolution)}
    if on_call:
        facts["on call"] = on_call
    Notifier(incidents.store, dict(project.config.channels), project.root).send(channels, Message(
        subject=f"[kiban] incident #{incident.id} {incident.usecase} {incident.due_date}: withdrawn, {why}",
        text=f"{say(said)}\nNo data was delivered for it; its consumers are not told. Nothing to do on call.",
        severity="info", fields=facts, link=_link(project, incident),
        dedupe_key=f"withdrawn:{project.name}:{incident.usecase}:{incident.due_date}:{incident.id}:{resolution}"))


def _link(project: Project, incident: Incident) -> str | None:
    base = project.config.console_url  # as kiban.slo.service.console_link (which imports this module)
    return f"{base.rstrip('/')}/incidents/{incident.id}" if base else None
