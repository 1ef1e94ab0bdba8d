"""Operators' workarounds started from the web: resume the failed run, rebuild an asset, backfill a range.

Each one runs in a background thread through the same core entry point as ``kiban run`` and ``kiban backfill``
(``kiban.operate``: the data-quality gate, the breach watcher, the service-level check afterwards), so the page
answers at once and the run shows up in Runs as it goes. The project is reloaded from disk first: the usual
repair is to fix a file, then resume.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from kiban import operate
from kiban.errors import KibanError
from kiban.run import RunOptions, new_run_id
from kiban.run.backfill import BackfillOptions
from kiban.run.events import Event
from kiban.status import RunStatus
from kiban.store import utcnow
from kiban.web.views import Site

LOCK_WAIT = 7200.0  # a fix waits for the assets of its path a running run still builds, instead of being refused

log = logging.getLogger(__name__)

KEEP = 50  # finished jobs remembered (the runs themselves are in the store)


@dataclass
class Job:
    id: str
    action: str  # resume, run, backfill
    user: str
    detail: str
    status: str = RunStatus.RUNNING
    run_id: str | None = None
    error: str | None = None
    started_at: datetime = field(default_factory=utcnow)
    ended_at: datetime | None = None
    thread: threading.Thread | None = None
    started: dict[str, datetime] = field(default_factory=dict)  # assets building now, from the run's events


class Jobs:
    def __init__(self, site: Site, on_finish: Callable[[Job], None] | None = None) -> None:
        self.site = site
        self.on_finish = on_finish
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def all(self) -> list[Job]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.started_at, reverse=True)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def resume(self, user: str) -> Job:
        run_id = new_run_id()  # named here: the job links to its run from the first answer
        return self._start("resume", user, "kiban run --resume",
                           lambda job: self._run(job, RunOptions(resume=True, wait=LOCK_WAIT, run_id=run_id)),
                           run_id)

    def run(self, user: str, selection: list[str]) -> Job:
        run_id = new_run_id()
        return self._start("run", user, "kiban run " + " ".join(selection),
                           lambda job: self._run(job, RunOptions(select=selection, wait=LOCK_WAIT, run_id=run_id)),
                           run_id)

    def backfill(self, user: str, selection: list[str], start: str, end: str) -> Job:
        return self._start("backfill", user, f"kiban backfill {' '.join(selection)} --from {start} --to {end}",
                           lambda job: self._backfill(job, selection, start, end))

    def building(self, run_id: str) -> dict[str, datetime] | None:
        """The assets a run started from this console builds now, and since when (None: not one of ours)."""
        with self._lock:
            job = next((j for j in self._jobs.values() if j.run_id == run_id and j.ended_at is None), None)
        return dict(job.started) if job is not None else None

    def wait(self, job_id: str, timeout: float = 60.0) -> Job | None:
        job = self.get(job_id)
        if job is not None and job.thread is not None:
            job.thread.join(timeout)
        return job

    def _start(self, action: str, user: str, detail: str, work: Callable[[Job], str], run_id: str | None = None) -> Job:
        job = Job(id=secrets.token_hex(6), action=action, user=user, detail=detail, run_id=run_id)

        def body() -> None:
            try:
                job.status = work(job)
            except KibanError as exc:
                job.status, job.error = RunStatus.FAILED, str(exc)
                self._unnamed_if_never_started(job)
            except Exception as exc:  # a bug must not kill the server; it is shown on the page and audited
                job.status, job.error = RunStatus.FAILED, f"{type(exc).__name__}: {exc}"
                log.exception("web job %s (%s by %s) failed", job.id, job.action, job.user)
                self._unnamed_if_never_started(job)
            finally:
                job.ended_at = utcnow()
                self.site.forget()
                if self.on_finish is not None:
                    try:
                        self.on_finish(job)
                    except Exception:  # auditing the end of a job must not take the server down
                        log.exception("web job %s: recording its end failed", job.id)

        with self._lock:
            self._jobs[job.id] = job
            for old in sorted((j for j in self._jobs.values() if j.ended_at), key=lambda j: j.started_at)[:-KEEP]:
                del self._jobs[old.id]
        job.thread = threading.Thread(target=body, daemon=True, name=f"kiban-web-{action}")
        job.thread.start()
        return job

    def _unnamed_if_never_started(self, job: Job) -> None:
        """A job refused before its run began (an unknown asset, a project that no longer loads) links to no run:
        the id it named at once is dropped rather than left pointing at a run page that will never exist."""
        if job.run_id is None or job.action == "backfill":
            return
        try:
            known = self.site.store.run(job.run_id) is not None
        except Exception:  # the store itself is the trouble: keep the id, the error says what happened
            log.exception("web job %s: looking up its run failed", job.id)
            return
        if not known:
            job.run_id = None

    def _run(self, job: Job, options: RunOptions) -> str:
        self.site.reload()

        def listen(event: Event) -> None:  # the live pages follow the run through the store's pulse
            if event.kind == "asset_started" and event.asset:  # the run page shows what builds now
                job.started[event.asset] = utcnow()
            elif event.kind == "asset_finished" and event.asset:
                job.started.pop(event.asset, None)

        done = operate.run(self.site.project, options, [listen], graph=self.site.graph, store=self.site.store)
        result = done.result  # its id is the one the job named (options.run_id)
        if result.failed:
            job.error = "; ".join(f"{k}: {(result.outcomes[k].error or '')[:200]}" for k in result.failed[:3])
        return str(result.status)

    def _backfill(self, job: Job, selection: list[str], start: str, end: str) -> str:
        self.site.reload()
        done = operate.backfill(self.site.project, BackfillOptions(select=selection, start=start, end=end),
                                graph=self.site.graph, store=self.site.store)
        result = done.result
        job.run_id = result.backfill_id
        if result.failed:
            job.error = f"{len(result.failed)} partitions failed, e.g. {result.failed[0].error}"
        return str(result.status)
