"""The data behind the console's index pages: the asset catalog, collected tables and their loads, jobs and their
next ticks, the checks overview, the model registry, users and API tokens.

Each reads the same service the CLI command reads (``kiban loads``, ``kiban jobs``, ``kiban check``,
``kiban models``, ``kiban users``) and returns plain rows; templates only lay them out (no SQL there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kiban.checks.history import StoredResult, trends
from kiban.collect.manifest import LoadRecord, Manifests, SchemaChange
from kiban.ml.registry import ModelVersion, Registry
from kiban.schedule.clock import RealClock
from kiban.schedule.overview import job_rows, next_ticks
from kiban.schedule.ticks import JobSchedule
from kiban.status import CheckStatus, LoadStatus, ModelStatus
from kiban.web.views import Site, asset_state

CATALOG_SORTS = ("name", "layer", "owner", "status", "rows", "built")
CATALOG_PAGE = 100  # assets on one page of the catalog
FILE_SOURCES = ("files", "logs", "xlsx")  # each load reads only files not read before


# -- the asset catalog -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CatalogRow:
    key: str
    layer: str
    description: str | None
    owner: str | None
    tags: tuple[str, ...]
    status: str
    rows: int | None
    built_at: datetime | None


@dataclass(frozen=True)
class Catalog:
    rows: list[CatalogRow]  # one page of the matching assets
    matched: int  # how many match the filters
    total: int  # how many assets there are
    first: int  # the 0-based position of rows[0] among the matching
    layers: list[str]
    owners: list[str]
    tags: list[str]
    statuses: list[str]


def _catalog_rows(site: Site) -> list[CatalogRow]:
    states = asset_state(site)
    built = site.reader.last_built(site.project.name)
    every = []
    for key, asset in site.graph.assets.items():
        cfg = asset.config
        last = built.get(key)
        every.append(CatalogRow(key, asset.layer, cfg.description, cfg.owner, tuple(cfg.tags),
                                states.get(key, "never run"), last.rows if last else None,
                                last.ended_at if last else None))
    return every


def catalog(site: Site, filters: dict[str, str], sort: str = "name", descending: bool = False, page: int = 1
            ) -> Catalog:
    """Every asset with its owner, tags, state, rows and last build; ``filters`` (layer, owner, tag, status,
    q: words in the name or description) narrow it, ``sort`` (one of CATALOG_SORTS) orders it; ``page`` (from 1)
    of CATALOG_PAGE rows."""
    every = site.following("catalog", 60.0, lambda: _catalog_rows(site))  # computed again when a run moves
    words = filters.get("q", "").lower().split()
    found = [r for r in every
             if (not filters.get("layer") or r.layer == filters["layer"])
             and (not filters.get("owner") or r.owner == filters["owner"])
             and (not filters.get("tag") or filters["tag"] in r.tags)
             and (not filters.get("status") or r.status == filters["status"])
             and all(w in f"{r.key} {r.description or ''}".lower() for w in words)]
    keys: dict[str, Any] = {
        "name": lambda r: r.key, "layer": lambda r: (r.layer, r.key), "owner": lambda r: (r.owner or "", r.key),
        "status": lambda r: (r.status, r.key), "rows": lambda r: (r.rows or 0, r.key),
        "built": lambda r: (r.built_at or datetime.min, r.key)}
    blank: dict[str, Any] = {"owner": lambda r: r.owner is None, "rows": lambda r: r.rows is None,
                             "built": lambda r: r.built_at is None}
    missing = blank.get(sort, lambda r: False)
    # what has no value (no owner, never built) comes last whichever way the column is sorted
    found = (sorted((r for r in found if not missing(r)), key=keys[sort if sort in keys else "name"],
                    reverse=descending)
             + sorted((r for r in found if missing(r)), key=lambda r: r.key))
    first = max(0, min(page - 1, (len(found) - 1) // CATALOG_PAGE)) * CATALOG_PAGE
    return Catalog(found[first:first + CATALOG_PAGE], len(found), len(every), first,
                   sorted({r.layer for r in every}), sorted({r.owner for r in every if r.owner}),
                   sorted({t for r in every for t in r.tags}), sorted({r.status for r in every}))


# -- collected tables and their loads --------------------------------------------------------------------------

@dataclass(frozen=True)
class LoadRow:
    load: LoadRecord
    kind: str  # what it brought: new rows, nothing new, empty, all quarantined, refused, retracted
    drift: list[tuple[SchemaChange, str]]
    quarantine_rows: int


@dataclass(frozen=True)
class TableRow:
    key: str
    source: str
    mode: str
    on_drift: str
    last: LoadRow | None
    drift_events: int
    quarantined: int


@dataclass
class TableLoads:
    key: str
    source: str
    source_type: str
    mode: str
    on_drift: str
    loads: list[LoadRow] = field(default_factory=list)
    drift: list[tuple[datetime, str, SchemaChange, str]] = field(default_factory=list)
    quarantine_files: list[tuple[str, str, int]] = field(default_factory=list)  # (load id, path, rows)


def _kind(r: LoadRecord, incremental: bool) -> str:
    """A load with no rows is "nothing new" when the table keeps its earlier rows (an incremental or file
    source read nothing new) and "empty" when a full read found the source empty."""
    if r.retracted_at is not None:
        return "retracted"
    if r.status == LoadStatus.FAILED:
        return "refused"
    if r.rows_landed:
        return "new rows"
    if r.rows_read:
        return "all quarantined"
    return "nothing new" if incremental else "empty"


def _spec(site: Site, key: str) -> tuple[str, Any, Any]:
    source, table = site.project.source_tables()[key]
    spec = site.project.sources[source]
    return source, spec, spec.tables[table]


def collected_tables(site: Site) -> list[TableRow]:
    """Every collected lake table with its newest load, its drift events and rows quarantined (recent loads)."""
    manifests = Manifests(site.reader)
    rows = []
    for key in sorted(site.project.source_tables()):
        source, spec, table = _spec(site, key)
        recent = manifests.loads(site.project.name, key, limit=20)
        incremental = table.mode == "incremental" or spec.type in FILE_SOURCES
        last = recent[0] if recent else None
        rows.append(TableRow(key, source, table.mode, table.on_drift,
                             LoadRow(last, _kind(last, incremental), [], last.rows_quarantined) if last else None,
                             len(manifests.drift(site.project.name, key, limit=100)),
                             sum(r.rows_quarantined for r in recent if r.retracted_at is None)))
    return rows


def table_loads(site: Site, key: str, limit: int = 50) -> TableLoads | None:
    """One collected table's loads (newest first), each with its drift, and the quarantine files kept."""
    if key not in site.project.source_tables():
        return None
    source, spec, table = _spec(site, key)
    manifests = Manifests(site.reader)
    found = manifests.loads(site.project.name, key, limit=limit)
    drift = manifests.drift(site.project.name, None, limit=500, load_ids=[r.load_id for r in found])
    by_load: dict[str, list[tuple[SchemaChange, str]]] = {}
    for _at, load_id, change, action in drift:
        by_load.setdefault(load_id, []).append((change, action))
    incremental = table.mode == "incremental" or spec.type in FILE_SOURCES
    out = TableLoads(key, source, spec.type, table.mode, table.on_drift)
    out.loads = [LoadRow(r, _kind(r, incremental), by_load.get(r.load_id, []), r.rows_quarantined) for r in found]
    out.drift = manifests.drift(site.project.name, key, limit=50)
    out.quarantine_files = [(load, path, n) for _a, load, path, n in manifests.quarantine_files(site.project.name, key)]
    return out


# -- jobs ------------------------------------------------------------------------------------------------------

def jobs(site: Site, ticks: int = 3) -> list[dict[str, Any]]:
    """``kiban jobs``: each job's schedule, next ``ticks`` ticks, latest safe start and last outcome (times naive
    UTC)."""
    def compute() -> list[dict[str, Any]]:
        now = RealClock().now()
        rows = job_rows(site.project, site.reader, now)
        for row in rows:
            schedule = JobSchedule(row["job"], site.project.config.jobs[row["job"]], site.project.config)
            row["next_ticks"] = next_ticks(schedule, now, ticks)
        return rows

    return site.cached("jobs", 10.0, compute)


DAYS = {"*": "every day", "1-5": "on weekdays", "MON-FRI": "on weekdays", "0,6": "on weekends", "6,0": "on weekends",
        **{str(i): f"on {d}s" for i, d in enumerate(
            ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"))}}


def describe_cron(cron: str | None, _: Callable[[str], str] = str) -> str | None:
    """A cron a person reads at once ("every day at 02:30", "on weekdays at 06:00", "every 15 minutes"), or None
    when it is not one of those common shapes (the page then shows the cron itself); ``_`` translates the words."""
    parts = (cron or "").split()
    if len(parts) != 5 or parts[2:4] != ["*", "*"]:
        return None
    minute, hour, days = parts[0], parts[1], parts[4].upper()
    if hour == "*" and minute.startswith("*/") and minute[2:].isdigit() and days == "*":
        return _("every {n} minutes").format(n=int(minute[2:]))
    if hour == "*" and minute.isdigit() and days == "*":
        return _("every hour at :{minute}").format(minute=f"{int(minute):02d}")
    if minute.isdigit() and hour.isdigit() and days in DAYS:
        return _("{days} at {time}").format(days=_(DAYS[days]), time=f"{int(hour):02d}:{int(minute):02d}")
    return None


# -- checks ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CheckTrend:
    asset: str
    name: str
    severity: str
    latest: StoredResult
    results: list[StoredResult]  # oldest first (the trend reads left to right)

    @property
    def passed(self) -> int:
        return sum(r.status == CheckStatus.PASS for r in self.results)


def check_trends(site: Site, per_check: int = 12, failing_only: bool = False) -> list[CheckTrend]:
    """Every check that ran: its latest result and its last ``per_check`` results; failing ones first."""
    found = site.cached(f"checks:{per_check}", 10.0, lambda: trends(site.reader, site.project.name, per_check))
    out = [CheckTrend(asset, name, rows[0].severity, rows[0], list(reversed(rows)))
           for (asset, name), rows in found.items()]
    if failing_only:
        out = [t for t in out if t.latest.status == CheckStatus.FAIL]
    out.sort(key=lambda t: (t.latest.status != CheckStatus.FAIL, t.asset, t.name))
    return out


# -- models ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelRow:
    model: str
    current: ModelVersion | None
    versions: list[ModelVersion]  # newest first

    @property
    def rejected(self) -> int:
        return sum(v.status == ModelStatus.REJECTED for v in self.versions)


def models(site: Site) -> list[ModelRow]:
    """``kiban models list``: every model, its current version and all its versions."""
    registry = Registry(site.reader, site.project.name, site.project.root)
    grouped: dict[str, list[ModelVersion]] = {}
    for v in registry.versions():
        grouped.setdefault(v.model, []).append(v)
    return [ModelRow(name, next((v for v in rows if v.status == ModelStatus.CURRENT), None), list(reversed(rows)))
            for name, rows in sorted(grouped.items())]
