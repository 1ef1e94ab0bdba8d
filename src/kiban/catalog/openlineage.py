"""OpenLineage: a run listener that reports runs and asset builds as OpenLineage RunEvents.

Configured in ``kiban.yml`` (``openlineage: {url: http://marquez:5000/api/v1/lineage}`` or
``{file: lineage.jsonl}``). The kiban run is one job (``<project>``); each asset build is a job of its
own (``<project>.<asset>``) whose run names the kiban run as its parent, with the assets it reads as
inputs, the asset as output, and a ``columnLineage`` facet from the SQL. Events go out from a
background thread, so a slow or dead receiver never slows a run down; failures are counted, never
raised (lineage is documentation, not a reason to fail a build).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiban.catalog.lineage import STAR, build_column_graph
from kiban.status import AttemptStatus, RunStatus

if TYPE_CHECKING:
    from kiban.catalog.lineage import ColumnGraph
    from kiban.graph import Graph
    from kiban.project import Project
    from kiban.project.config import OpenLineageConfig
    from kiban.run.events import Event

log = logging.getLogger(__name__)

PRODUCER = "https://github.com/kiban-data/kiban"
SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/definitions/RunEvent"
FACETS = "https://openlineage.io/spec/facets/1-0-1/"
_STOP = object()


def _facet(name: str, **body: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": f"{FACETS}{name}.json#/$defs/{name}", **body}


def run_uuid(run_id: str, asset: str | None = None) -> str:
    """A stable UUID for a kiban run (or one asset's build in it), as OpenLineage wants run ids to be."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kiban:{run_id}:{asset or ''}"))


class OpenLineageEmitter:
    """A run listener (``run_project(..., listeners=[emitter])``); call :meth:`close` after the run."""

    def __init__(self, project: Project, config: OpenLineageConfig, graph: Graph | None = None) -> None:
        self.project = project
        self.config = config
        self.namespace = config.namespace or f"kiban://{project.name}"
        self._graph = graph
        self._columns: ColumnGraph | None = None
        self.sent = 0
        self.failed = 0
        self.last_error: str | None = None
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._send_loop, name="openlineage", daemon=True)
        self._thread.start()

    # -- what to say ----------------------------------------------------------------------------------------
    @property
    def graph(self) -> Graph:
        if self._graph is None:
            from kiban.graph import build_graph

            self._graph = build_graph(self.project)
        return self._graph

    @property
    def columns(self) -> ColumnGraph:
        if self._columns is None:
            # declared and computed columns only: the warehouse is busy with the run
            self._columns = build_column_graph(self.graph, None, self.project.state_dir / "cache" / "lineage.json")
        return self._columns

    def __call__(self, event: Event) -> None:
        try:
            message = self.event_for(event)
        except Exception as exc:  # never break a run for its lineage
            self.failed += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("OpenLineage: no event for %s of run %s", event.kind, event.run_id, exc_info=True)
            return
        if message is not None:
            self._queue.put(message)
        if event.kind == "run_finished":
            self.close()

    def event_for(self, event: Event) -> dict[str, Any] | None:
        at = event.at.isoformat(timespec="milliseconds") + "Z"
        if event.kind in ("run_started", "run_finished"):
            kind = "START" if event.kind == "run_started" else (
                "COMPLETE" if event.status in (RunStatus.SUCCESS, RunStatus.NOTHING) else "FAIL")
            facets: dict[str, Any] = {}
            if event.error:
                facets["errorMessage"] = _facet("ErrorMessageRunFacet", message=event.error, programmingLanguage="SQL")
            return self._event(kind, at, run_uuid(event.run_id), self.project.name, facets, [], [])
        if event.kind not in ("asset_started", "asset_finished") or not event.asset:
            return None
        if event.kind == "asset_finished" and event.status not in (AttemptStatus.SUCCESS, AttemptStatus.FAILED):
            return None  # fresh, skipped, cancelled: nothing ran
        key = event.asset
        kind = "START" if event.kind == "asset_started" else (
            "COMPLETE" if event.status == AttemptStatus.SUCCESS else "FAIL")
        run_facets: dict[str, Any] = {"parent": _facet(
            "ParentRunFacet", run={"runId": run_uuid(event.run_id)},
            job={"namespace": self.namespace, "name": self.project.name})}
        if event.error:
            run_facets["errorMessage"] = _facet("ErrorMessageRunFacet", message=event.error, programmingLanguage="SQL")
        inputs = [self._dataset(up) for up in self.graph.deps.get(key, ())]
        output = self._dataset(key, lineage=True)
        if kind == "COMPLETE" and event.rows is not None:
            output["outputFacets"] = {"outputStatistics": _facet("OutputStatisticsOutputDatasetFacet",
                                                                 rowCount=event.rows)}
        job_facets: dict[str, Any] = {}
        asset = self.graph.assets[key]
        if asset.sql:
            job_facets["sql"] = _facet("SQLJobFacet", query=asset.sql)
        return self._event(kind, at, run_uuid(event.run_id, key), f"{self.project.name}.{key}", run_facets,
                           inputs, [output], job_facets)

    def _dataset(self, key: str, lineage: bool = False) -> dict[str, Any]:
        names = [c for c in self.columns.columns.get(key, ()) if c != STAR]
        facets: dict[str, Any] = {}
        if names:
            facets["schema"] = _facet("SchemaDatasetFacet", fields=[{"name": n} for n in names])
        if lineage:
            fields = {}
            for name in names:
                refs = sorted(self.columns.sources.get((key, name), ()))
                fields[name] = {"inputFields": [{"namespace": self.namespace, "name": a, "field": c}
                                                for a, c in refs]}
            if fields:
                facets["columnLineage"] = _facet("ColumnLineageDatasetFacet", fields=fields)
        return {"namespace": self.namespace, "name": key, "facets": facets}

    def _event(self, kind: str, at: str, run_id: str, job: str, run_facets: dict[str, Any],
               inputs: list[dict[str, Any]], outputs: list[dict[str, Any]],
               job_facets: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"eventType": kind, "eventTime": at, "producer": PRODUCER, "schemaURL": SCHEMA_URL,
                "run": {"runId": run_id, "facets": run_facets},
                "job": {"namespace": self.namespace, "name": job, "facets": job_facets or {}},
                "inputs": inputs, "outputs": outputs}

    # -- sending ---------------------------------------------------------------------------------------------
    def _send_loop(self) -> None:
        client = None
        handle = None
        try:
            while True:
                message = self._queue.get()
                if message is _STOP:
                    return
                try:
                    if self.config.file:
                        if handle is None:
                            path = Path(self.config.file)
                            path = path if path.is_absolute() else self.project.root / path
                            path.parent.mkdir(parents=True, exist_ok=True)
                            handle = path.open("a", encoding="utf-8")
                        handle.write(json.dumps(message, ensure_ascii=False) + "\n")
                        handle.flush()
                    else:
                        if client is None:
                            import httpx

                            client = httpx.Client(timeout=self.config.timeout)
                        response = client.post(self._url(), json=message,
                                               headers={"Content-Type": "application/json", **self.config.headers})
                        response.raise_for_status()
                    self.sent += 1
                except Exception as exc:  # an unreachable collector loses its events, never the run
                    self.failed += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.warning("OpenLineage: could not send an event (%s)", self.last_error)
        finally:
            if handle is not None:
                handle.close()
            if client is not None:
                client.close()

    def _url(self) -> str:
        from kiban.project.loader import resolve_url

        return resolve_url(self.config.url or "", self.project.root)

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (waiting at most ``timeout`` seconds) and stop."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)


def emitter_for(project: Project, graph: Graph | None = None) -> OpenLineageEmitter | None:
    """The project's OpenLineage listener, or None when ``kiban.yml`` configures none."""
    config = getattr(project.config, "openlineage", None)
    return OpenLineageEmitter(project, config, graph) if config is not None else None
