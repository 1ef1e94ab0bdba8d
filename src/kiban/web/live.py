"""Live pages: server-sent events that tell Today, Runs and one run's page that what they show has changed.

A page marked ``data-events`` opens ``EventSource(/events…)`` (``static/kiban.js``; it falls back to polling
where that fails). The stream sends ``change`` when the page's *pulse* — a few numbers read from the state store
that move whenever a run starts, an asset finishes, a run ends or an incident changes — differs from the last one
it sent; the page then re-reads itself and swaps in the new content. It sends a comment line as a heartbeat
while nothing changes (so proxies keep the connection and a vanished client is noticed), and ``end`` once a
run it follows is over. It stops as soon as the client leaves. The pulse is read from the store, not from this
process's own runs, so runs started by ``kiban run`` or the scheduler show up too; all clients share one read
per ``views.PULSE`` seconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from kiban.status import RunStatus
from kiban.web.accounts import User
from kiban.web.auth import current_user
from kiban.web.views import Site, pulse

POLL = 0.5  # seconds between a stream's looks at the pulse (one read of the store for all clients)
HEARTBEAT = 15.0  # seconds of silence before a heartbeat comment
LIFETIME = 600.0  # seconds a stream lasts; the browser then reconnects by itself (no connection lives forever)

router = APIRouter(include_in_schema=False)
Viewer = Annotated[User, Depends(current_user)]


def version(value: tuple[Any, ...]) -> str:
    """A short name of a pulse, for the page to say which state it shows (``?since=``)."""
    import hashlib

    return hashlib.sha256(repr(value).encode()).hexdigest()[:16]


def events_url(site: Site, run_id: str | None = None) -> str:
    """Where a page showing the current state listens (``since``: that state, so only a later change counts)."""
    from urllib.parse import quote

    since = version(pulse(site, run_id))
    return f"/events/runs/{quote(run_id, safe='')}?since={since}" if run_id else f"/events?since={since}"


async def stream(request: Request, site: Site, run_id: str | None, since: str) -> AsyncIterator[str]:
    """The event stream of one client, until it leaves (or, following one run, until the run is over)."""
    live = request.app.state.live
    poll: float = live["poll"]
    heartbeat: float = live["heartbeat"]
    until = time.monotonic() + live["lifetime"]
    live["clients"] += 1
    try:
        yield f"retry: {int(max(poll, 1.0) * 1000)}\n\n"  # how soon the browser reconnects after a drop
        sent, quiet = since, time.monotonic()
        while time.monotonic() < until and not await request.is_disconnected():
            now = await run_in_threadpool(pulse, site, run_id)
            current = version(now)
            if current != sent:
                running = now[0] == RunStatus.RUNNING if run_id else any(s == RunStatus.RUNNING for _, s in now[0])
                yield f"event: change\ndata: {json.dumps({'version': current, 'running': running})}\n\n"
                sent, quiet = current, time.monotonic()
                if run_id is not None and now[0] not in (RunStatus.RUNNING, None):
                    yield f"event: end\ndata: {json.dumps({'status': now[0]})}\n\n"
                    return
            elif time.monotonic() - quiet >= heartbeat:
                yield ": heartbeat\n\n"
                quiet = time.monotonic()
            await asyncio.sleep(poll)
    finally:
        live["clients"] -= 1


def _events(request: Request, run_id: str | None, since: str) -> StreamingResponse:
    site: Site = request.app.state.site
    return StreamingResponse(stream(request, site, run_id, since), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.get("/events")
def project_events(request: Request, user: Viewer, since: str = "") -> StreamingResponse:
    """Today and Runs: any run of the project, and its incidents."""
    return _events(request, None, since)


@router.get("/events/runs/{run_id}")
def run_events(request: Request, run_id: str, user: Viewer, since: str = "") -> StreamingResponse:
    site: Site = request.app.state.site
    found = site.reader.run(run_id)
    if found is None or found.project != site.project.name:
        raise HTTPException(404, f"no run with id '{run_id}'")
    return _events(request, found.run_id, since)
