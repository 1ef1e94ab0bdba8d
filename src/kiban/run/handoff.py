"""Hand-over of a selection to the run that holds the warehouse file.

A DuckDB file has one writer process. Locks per asset let a repair of one use case start while a run builds
unrelated branches, but the repair's process could not open the file until that run closed it. So instead of
waiting, a run whose assets are free while another live run of the project holds the DuckDB file **hands its
models over**: it collects its own sources (the lake is not in the file), writes an offer, and the holder —
which looks for offers between scheduling steps — plans those models with its engine, builds them ahead of
its own queue on its next free thread, records their attempts under the giver's run id, and answers with the
outcomes. A holder that ends without claiming the offer leaves it to the giver, which withdraws it and opens
the file itself. Claim and withdrawal are atomic renames, so exactly one of them wins.

The files live under ``.kiban/handoffs/`` (a DuckDB file warehouse is on this host, so are its runs).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiban.engines import Engine
from kiban.errors import RunLockedError
from kiban.graph import Graph
from kiban.graph.code import planned_codes
from kiban.project import Asset, Project
from kiban.run.events import Event, Listener
from kiban.run.executor import Outcome
from kiban.run.plan import Judge, make_plan
from kiban.status import AttemptStatus, RunStatus
from kiban.store import RunRecord, Store, utcnow
from kiban.store.store import STALE_AFTER, holder_gone

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2


@dataclass
class Offer:
    run_id: str
    models: list[str]
    full_refresh: bool = False
    lake_changed: bool = False  # the giver collected: the holder refreshes its lake views first
    code: dict[str, str] = field(default_factory=dict)  # each model's code as the giver knows it
    keys: set[str] = field(default_factory=set)  # what the holder builds or waits for on its behalf


def folder(project: Project) -> Path:
    return project.state_dir / "handoffs"


def file_warehouse(project: Project) -> bool:
    """Whether the warehouse is a DuckDB file (one writer process): the case hand-over exists for."""
    url = project.warehouse_url
    return url.startswith("duckdb:///") and not url.endswith(":memory:")


def offer(project: Project, run_id: str, models: list[str], full_refresh: bool, lake_changed: bool,
          code: dict[str, str]) -> Path:
    """Put the models up for the holder to take (written whole, then renamed into place)."""
    path = folder(project) / f"{run_id}.offer"
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(".writing")
    scratch.write_text(json.dumps({"run_id": run_id, "models": models, "full_refresh": full_refresh,
                                   "lake_changed": lake_changed, "code": code}), encoding="utf-8")
    os.replace(scratch, path)
    return path


def claim(project: Project, holder: str) -> list[Offer]:
    """Take every open offer for run ``holder`` (a rename: a withdrawn offer is not taken)."""
    where = folder(project)
    if not where.is_dir():
        return []
    taken = []
    for path in sorted(where.glob("*.offer")):
        target = path.with_suffix(f".claimed-{holder}")
        try:
            os.rename(path, target)
        except FileNotFoundError:
            continue  # withdrawn or claimed a moment ago
        try:
            data = json.loads(target.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        taken.append(Offer(data["run_id"], list(data["models"]), bool(data.get("full_refresh")),
                           bool(data.get("lake_changed")), code=dict(data.get("code") or {})))
    return taken


def withdraw(path: Path) -> bool:
    """Take an unclaimed offer back; False when the holder already claimed it."""
    try:
        os.rename(path, path.with_suffix(".withdrawn"))
    except FileNotFoundError:
        return False
    with contextlib.suppress(OSError):
        path.with_suffix(".withdrawn").unlink()
    return True


def answer(project: Project, run_id: str, outcomes: dict[str, dict[str, Any]], holder: str,
           refused: str | None = None) -> None:
    """The holder's answer: every model's status (and error), written whole — or why it cannot take them."""
    path = folder(project) / f"{run_id}.answer"
    scratch = path.with_suffix(".answering")
    scratch.write_text(json.dumps({"holder": holder, "outcomes": outcomes, "refused": refused}), encoding="utf-8")
    os.replace(scratch, path)
    for leftover in folder(project).glob(f"{run_id}.claimed-*"):
        with contextlib.suppress(OSError):
            leftover.unlink()


def await_answer(project: Project, path: Path, holder_alive: Callable[[], bool]) -> dict[str, Any] | None:
    """Wait for the holder's answer to the offer at ``path``. None: the holder ended without claiming it (the
    offer is withdrawn) — or died after claiming it (the giver builds what is left itself)."""
    answer_path = path.with_suffix(".answer")
    while True:
        if answer_path.exists():
            data = json.loads(answer_path.read_text(encoding="utf-8"))
            with contextlib.suppress(OSError):
                answer_path.unlink()
            return dict(data)
        if not holder_alive() and (withdraw(path) or not answer_path.exists()):
            for leftover in path.parent.glob(f"{path.stem}.claimed-*"):
                with contextlib.suppress(OSError):
                    leftover.unlink()
            return None
        time.sleep(POLL_SECONDS)


class Intake:
    """The holder's side: claims offers between scheduling steps, plans them with its engine and answers."""

    def __init__(self, project: Project, graph: Graph, store: Store, engine: Engine, run_id: str,
                 lake_assets: list[Asset], collected: Callable[[], Any], judge: Judge | None) -> None:
        self.project, self.graph, self.store, self.engine, self.run_id = project, graph, store, engine, run_id
        self.lake_assets, self.collected, self.judge = lake_assets, collected, judge
        self.owner: dict[str, str] = {}  # asset built on behalf of another run → that run's id
        self.pending: list[Offer] = []
        self.finished: dict[str, dict[str, Any]] = {}  # asset → its last word in this run
        self.fingerprints: dict[str, str] | None = None  # the executor's (new assets' fingerprints go there)
        self._emit: Listener = lambda _event: None
        self._lock = threading.Lock()

    def watch(self, emit: Listener) -> None:
        self._emit = emit

    def hear(self, event: Event) -> None:
        """Forward the run's event; an asset's last word may complete an offer's answer."""
        self._emit(event)
        if event.kind != "asset_finished" or not event.asset:
            return
        with self._lock:
            self.finished[event.asset] = {"status": event.status, "error": event.error, "rows": event.rows,
                                          "seconds": event.seconds}
            self._answer_complete()

    def __call__(self, todo: set[str]) -> list[str]:
        offers = claim(self.project, self.run_id)
        if not offers:
            return []
        # the giver may have collected, or files may have landed: the lake views as they are now — never
        # ``prepare``, which drops leftover temporary tables, this run's builds in flight among them
        refresh = getattr(self.engine, "refresh_lake", None)
        versions = refresh(self.lake_assets, self.collected()) if refresh is not None else \
            self.engine.prepare(self.lake_assets, self.collected())
        new: list[str] = []
        for got in offers:
            changed = sorted(k for k in got.models if got.code.get(k) != self.graph.sql_hashes.get(k))
            if changed:  # this run loaded other code: it cannot build the giver's version
                answer(self.project, got.run_id, {}, self.run_id,
                       refused=f"it runs another version of {', '.join(changed[:5])} (changed since it started)")
                continue
            try:
                plan = make_plan(self.graph, self.graph.sorted(got.models), versions, self.engine.published(),
                                 got.full_refresh, self.judge)
            except Exception as exc:  # the giver hears why, and builds nothing twice
                log.warning("run %s: cannot take over run %s: %s", self.run_id, got.run_id, exc)
                answer(self.project, got.run_id, {k: {"status": "failed", "error": f"cannot plan: {exc}"}
                                                  for k in got.models}, self.run_id)
                continue
            if self.fingerprints is not None:
                for key, value in plan.fingerprints.items():
                    if key in plan.build or key not in self.fingerprints:
                        self.fingerprints[key] = value
            self.store.record_codes(self.project.name, planned_codes(self.project, self.graph, plan.fingerprints,
                                                                     [*plan.build, *plan.fresh]))
            self.store.record_attempts([dict(run_id=got.run_id, asset=k, status=AttemptStatus.FRESH, attempt=0,
                                             started_at=utcnow(), ended_at=utcnow(), fingerprint=plan.fingerprints[k])
                                        for k in plan.fresh])
            got.keys = set(plan.build)
            with self._lock:
                for key in plan.build:
                    done = self.finished.pop(key, None)  # built before the giver's data came: again
                    if key in new or (key in todo and done is None):
                        continue  # this run builds it still (the giver waits for that outcome)
                    self.owner[key] = got.run_id
                    new.append(key)
            log.info("run %s: builds %s for run %s (handed over)", self.run_id, ", ".join(plan.build) or "nothing",
                     got.run_id)
            with self._lock:
                self.pending.append(got)
                for key in plan.fresh:
                    self.finished.setdefault(key, {"status": "fresh", "error": None})
                got.keys |= set(plan.fresh)
                self._answer_complete()
        return new

    def _answer_complete(self) -> None:
        for got in list(self.pending):
            if all(k in self.finished for k in got.keys):
                self.pending.remove(got)
                answer(self.project, got.run_id, {k: self.finished[k] for k in got.keys}, self.run_id)


@dataclass(frozen=True)
class HandOver:
    """What run ``run_id`` asks of ``holder``, the live run that writes the warehouse file: build the models of
    ``selection`` (``collected`` holds what this run collected first), fully refreshed or not. ``wait``: seconds
    to wait for the holder to end when it cannot take them."""

    run_id: str
    holder: RunRecord
    selection: list[str]
    collected: dict[str, Outcome]
    full_refresh: bool
    wait: float = 0.0


def hand_over(project: Project, graph: Graph, store: Store, request: HandOver, emit: Listener
              ) -> dict[str, Outcome] | None:
    """The giver's side: offer the selected models to ``request.holder`` and wait for its answer. None: the holder
    ended without taking them (build them here). When it cannot take them (it runs other code), wait up to
    ``request.wait`` seconds for it to end, else raise :class:`RunLockedError` saying why."""
    run_id, holder, selection, collected = request.run_id, request.holder, request.selection, request.collected
    full_refresh, wait = request.full_refresh, request.wait
    models = [k for k in selection if graph.assets[k].layer != "lake"]
    if any(o.status != AttemptStatus.SUCCESS for o in collected.values()):
        return None  # a collection failed: the plain path skips what is downstream of it, with the reason
    if not models:
        return dict(collected)
    emit(Event("run_started", run_id, detail={"build": len(models), "fresh": 0, "lake": 0, "selected": len(selection),
                                               "assets": [*collected, *models], "handed_to": holder.run_id}))
    log.info("run %s: run %s writes the warehouse file (DuckDB: one writer process); it builds %s next",
             run_id, holder.run_id, ", ".join(models))
    path = offer(project, run_id, models, full_refresh, lake_changed=bool(collected),
                 code={k: graph.sql_hashes.get(k, "") for k in models})

    def alive() -> bool:
        return _live(store.run(holder.run_id))

    got = await_answer(project, path, alive)
    if got is None:
        return None
    if got.get("refused"):
        why = (f"run {holder.run_id} writes the warehouse file (DuckDB allows one writer process) and cannot build "
               f"this run's models: {got['refused']}")
        deadline = time.monotonic() + wait
        while alive():
            if time.monotonic() >= deadline:
                raise RunLockedError(why, "pass --wait SECONDS to run once it has finished")
            time.sleep(POLL_SECONDS * 5)
        log.info("run %s: %s; it has finished, building here", run_id, why)
        return None
    outcomes = dict(collected)
    for key, said in got["outcomes"].items():
        status = AttemptStatus.SUCCESS if said["status"] in (AttemptStatus.SUCCESS, AttemptStatus.FRESH) \
            else AttemptStatus(said["status"])
        outcomes[key] = Outcome(key, status, error=said.get("error"), rows=said.get("rows"))
        emit(Event("asset_finished", run_id, asset=key, status=said["status"], error=said.get("error"),
                   rows=said.get("rows"), seconds=said.get("seconds"), detail={"built_by": got.get("holder")}))
    return outcomes


def writer(store: Store, project: Project, run_id: str) -> RunRecord | None:
    """The live run of another process that holds the project's DuckDB warehouse file, if any."""
    if not file_warehouse(project):
        return None
    for run in store.runs(project.name, 20):
        if run.run_id != run_id and run.pid != os.getpid() and _live(run):
            return run
    return None


def _live(run: RunRecord | None) -> bool:
    """A run still going: recorded running, its process there, and heartbeating (a live run beats every 5 s; a
    reused pid does not)."""
    if run is None or run.status != RunStatus.RUNNING:
        return False
    now = utcnow()
    fresh = run.heartbeat_at is not None and now - run.heartbeat_at <= STALE_AFTER
    return fresh and not holder_gone(run.pid, run.host, run.heartbeat_at, now)
