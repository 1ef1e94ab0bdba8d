"""The catalog's data for the web console, read from ``kiban.catalog`` exactly as the CLI reads it.

The dictionary (columns, lineage, PII, profiles) and its search index are built once and shared between
requests for a minute (a run marks them stale, see ``Site.expire``); the query console is kept per loaded
project. Who may see PII values is a matter of role: ``PII_ROLE`` and up.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiban.catalog import definitions
from kiban.catalog.console import QueryConsole
from kiban.catalog.console import export as write
from kiban.catalog.dictionary import build_dictionary
from kiban.catalog.lineage import STAR
from kiban.catalog.recipes import RECIPES_DIR, load_recipes
from kiban.catalog.requests import MOVES, check_deliverable, events, get_request, lead_times, list_requests, move
from kiban.catalog.search import SearchIndex
from kiban.catalog.usage import Actor, QueryEntry, last_read, log_query, unused, weekly
from kiban.catalog.usage import history as read
from kiban.web import catalog_models as cm
from kiban.web import models as m
from kiban.web.views import Site, utc

if TYPE_CHECKING:
    from kiban.catalog.console import QueryResult
    from kiban.catalog.dictionary import Dictionary
    from kiban.web.accounts import User

PII_ROLE = "admin"  # sees PII values unmasked in the console, recipes and exports (recorded in the history)
DICTIONARY_TTL = 60.0
USAGE_TTL = 5.0  # the usage report: many readers of the same weeks cost one computation per 5 s
EXPORTS = {"csv": "text/csv; charset=utf-8",
           "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def dictionary(site: Site) -> Dictionary:
    return site.cached("catalog:dictionary", DICTIONARY_TTL,
                       lambda: build_dictionary(site.project, site.graph, site.reader))


def search_index(site: Site) -> SearchIndex:
    def build() -> SearchIndex:
        return SearchIndex(dictionary(site).assets.values())

    return site.cached("catalog:search", DICTIONARY_TTL, build)


def console(site: Site) -> QueryConsole:
    """The console over the project as loaded now (a reload gives a fresh one: new models, new lineage). A project
    whose files or published snapshot changed since it was loaded (a run or an edit elsewhere) is loaded again
    first: masks planned from older code or tags than the data's would show what the new ones mask."""
    if definitions.served(site.root, site.project) != site.served:
        site.reload()
    project, graph = site.project, site.graph
    found: QueryConsole = site.cached(f"catalog:console:{id(project)}", float("inf"),
                                      lambda: QueryConsole(project, site.store, graph))
    return found


def actor(site: Site, user: User, team: str | None) -> Actor:
    """The person behind a web request: their name, the team they named (else the last one they used)."""
    chosen = (team or "").strip() or last_team(site, user.name)
    return Actor(user.name, chosen or None, user.can(PII_ROLE))


def last_team(site: Site, user: str) -> str | None:
    from kiban.catalog.usage import history

    return next((r.team for r in history(site.reader, site.project.name, user, 20) if r.team), None)


# -- search ------------------------------------------------------------------------------------------------------

def search(site: Site, query: str, limit: int = 100) -> m.SearchResults:
    """Assets and columns by name, description, tag and owner (the catalog's index, as `kiban search`)."""
    hits = search_index(site).search(query, limit) if query.strip() else []
    return m.SearchResults(query=query, hits=[
        m.SearchHit(kind="column" if h.column else "asset", asset=h.asset, column=h.column, text=h.text)
        for h in hits])


# -- columns -----------------------------------------------------------------------------------------------------

def asset_columns(site: Site, key: str) -> cm.AssetColumns:
    """Every column of an asset: type, docs, PII, the columns it comes from and feeds, its profile."""
    found = dictionary(site)
    doc = found.assets.get(key)
    if doc is None:
        return cm.AssetColumns(asset=key, rows=None, columns=[])
    readers = found.columns.readers
    columns = []
    for c in doc.columns:
        ref = (key, c.name.lower())
        down = sorted(f"{a}.{col}" for a, col in readers.get(ref, set()) | readers.get((key, STAR), set()))
        p = c.profile
        columns.append(cm.CatalogColumn(
            name=c.name, type=c.type, description=c.description, tags=list(c.tags), pii=c.pii, pii_from=c.pii_from,
            anonymised=c.anonymised, upstream=list(c.sources), downstream=down,
            profile=None if p is None else cm.ProfileOut(
                rows=p.rows, null_share=p.null_share, approx_distinct=p.approx_distinct, min_value=p.min_value,
                max_value=p.max_value, examples=list(p.examples), profiled_at=utc(p.profiled_at))))
    return cm.AssetColumns(asset=key, rows=doc.rows, columns=columns)


def column_lineage(site: Site, key: str, column: str) -> cm.ColumnLineage | None:
    """The column's lineage trees, up to the sources and down to every reader; None when no such column."""
    graph = dictionary(site).columns
    name = column.lower()
    if name not in graph.columns.get(key, ()):
        return None

    def tree(node: Any) -> cm.LineageTree:
        return cm.LineageTree(asset=node.asset, column=node.column, children=[tree(c) for c in node.children])

    return cm.ColumnLineage(asset=key, column=name, upstream=tree(graph.upstream((key, name))),
                            downstream=tree(graph.downstream((key, name))))


# -- console -----------------------------------------------------------------------------------------------------

def run_query(site: Site, user: User, sql: str, team: str | None, limit: int, timeout: float) -> QueryResult:
    """Check, run, mask and record one query (raises the catalog's QueryRefused, QueryStopped, QueryFailed)."""
    return console(site).run(sql, actor(site, user, team), limit=limit, timeout=timeout)


def query_out(result: QueryResult) -> cm.QueryOut:
    return cm.QueryOut(query_id=result.query_id, columns=result.columns, types=result.types,
                       rows=[[_plain(v) for v in row] for row in result.rows], truncated=result.truncated,
                       seconds=result.seconds, assets=list(result.assets), masked=list(result.masked),
                       pii_shown=result.pii_shown, notes=list(result.notes))


def _plain(value: Any) -> Any:
    """A value JSON can carry as it is, else its text (decimals, intervals, blobs, nested types)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def export(site: Site, user: User, result: QueryResult, sql: str, fmt: str, kind: str,
           name: str | None) -> bytes:
    """The (already masked) result as a CSV or Excel file, recorded in usage as an export."""
    with tempfile.TemporaryDirectory(prefix="kiban-export-") as folder:
        path = write(result, Path(folder) / f"result.{fmt}")
        data = path.read_bytes()
    who = actor(site, user, None)
    log_query(site.store, site.project.name, who, QueryEntry("export", sql, "ok", result.assets,
                                                             name=f"{name or kind}.{fmt}", rows=len(result.rows),
                                                             pii_shown=result.pii_shown))
    return data


def history(site: Site, user: str, limit: int = 50) -> cm.History:
    return cm.History(entries=[m.from_record(cm.HistoryEntry, r) for r in read(site.reader, site.project.name, user,
                                                                                   limit)])


# -- recipes -----------------------------------------------------------------------------------------------------

def loaded_recipes(site: Site) -> dict[str, Any]:
    """``recipes/*.yml``, read again only when a file there changes (reading parses YAML and every SQL)."""
    project = site.project
    folder = project.root / RECIPES_DIR
    stamp = tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir()
                         if p.suffix in (".yml", ".yaml"))) if folder.is_dir() else ()
    found: dict[str, Any] = site.cached(f"catalog:recipes:{id(project)}:{hash(stamp)}", float("inf"),
                                        lambda: load_recipes(project))
    return found


def recipes(site: Site) -> cm.RecipeList:
    return cm.RecipeList(recipes=[recipe_out(r) for r in loaded_recipes(site).values()])


def recipe_out(recipe: Any) -> cm.RecipeOut:
    cfg = recipe.config
    return cm.RecipeOut(name=recipe.name, description=cfg.description, owner=cfg.owner, tags=list(cfg.tags),
                        sql=cfg.sql, params=[cm.ParamOut(
                            name=n, type=p.type, description=p.description,
                            default=p.default.isoformat() if hasattr(p.default, "isoformat") else p.default,
                            choices=list(p.choices), values_from=p.values_from) for n, p in cfg.params.items()])


def run_recipe(site: Site, user: User, name: str, values: dict[str, str], team: str | None,
               limit: int) -> QueryResult:
    from kiban.catalog.recipes import get_recipe, run_recipe

    recipe = loaded_recipes(site).get(name) or get_recipe(site.project, name)  # the latter: its clear error
    return run_recipe(console(site), recipe, values, actor(site, user, team), limit=limit)


def promote(site: Site, name: str, values: dict[str, str], model: str | None) -> list[str]:
    """Scaffold a mart model from a recipe (``kiban recipes promote``); the site reloads to show it."""
    from kiban.catalog.recipes import get_recipe, promote

    paths = promote(site.project, get_recipe(site.project, name), values, model or None)
    site.reload()
    return [str(p.relative_to(site.project.root)) for p in paths]


# -- data requests -----------------------------------------------------------------------------------------------

def request_out(site: Site, r: Any, with_events: bool = True) -> cm.RequestOut:
    return m.from_record(cm.RequestOut, r, moves=list(MOVES[r.status]), events=[cm.RequestEventOut(
        at=utc(e.at), actor=e.actor, from_status=e.from_status, to_status=e.to_status, note=e.note)
        for e in (events(site.reader, r.id) if with_events else [])])


def lead_times_out(found: list[Any]) -> cm.LeadTimesOut:
    t = lead_times(found)
    return cm.LeadTimesOut(delivered=t.delivered, median_days=t.median_days, p90_days=t.p90_days, open=t.open,
                           overdue=t.overdue)


def request_list(site: Site, status: str | None = None) -> cm.RequestList:
    everything = list_requests(site.reader, site.project.name)
    shown = [r for r in everything if status is None or r.status == status]
    return cm.RequestList(requests=[request_out(site, r, with_events=False) for r in reversed(shown)],
                          lead_times=lead_times_out(everything))


def request_detail(site: Site, request_id: int) -> cm.RequestOut:
    return request_out(site, get_request(site.reader, site.project.name, request_id))


def new_request(site: Site, user: User, body: cm.RequestIn) -> cm.RequestOut:
    from kiban.catalog.requests import RequestDraft, get_request, new_request

    request_id = new_request(site.store, site.project.name, RequestDraft(
        body.title, user.name, team=(body.team or "").strip() or last_team(site, user.name), purpose=body.purpose,
        hypothesis=body.hypothesis, data_needed=body.data_needed, needed_by=body.needed_by))
    return request_out(site, get_request(site.store, site.project.name, request_id))


def move_request(site: Site, user: User, request_id: int, body: cm.RequestMove) -> cm.RequestOut:
    deliverable = check_deliverable(body.deliverable.strip(), site.graph.assets) if body.deliverable else None
    moved = move(site.store, site.project.name, request_id, body.to, user.name, deliverable=deliverable,
                 note=body.note or None)
    return request_out(site, moved)


# -- usage -------------------------------------------------------------------------------------------------------

def usage(site: Site, weeks: int = 8, days: int = 90) -> cm.Usage:
    """Who self-serves, per team and week; which assets are read; what nobody reads; requests' lead times
    (shared between requests for USAGE_TTL seconds)."""
    return site.cached(f"catalog:usage:{weeks}:{days}", USAGE_TTL, lambda: _usage(site, weeks, days))


def _usage(site: Site, weeks: int, days: int) -> cm.Usage:
    store, name = site.reader, site.project.name
    teams = weekly(store, name, weeks)
    served = sum(t.queries + t.recipes for t in teams)
    asked = sum(t.requests for t in teams)
    read = sorted(last_read(store, name).items(), key=lambda item: item[1], reverse=True)
    return cm.Usage(
        weeks=weeks, days=days, teams=[cm.TeamWeekOut(week=t.week, team=t.team, users=t.users, queries=t.queries,
                                                      recipes=t.recipes, assets=t.assets, requests=t.requests)
                                       for t in teams],
        self_served=served, requested=asked, self_served_share=served / (served + asked) if served + asked else None,
        assets_read=[cm.AssetUse(asset=a, last_read=utc(at)) for a, at in read],
        unused=[cm.UnusedOut(asset=u.asset, last_read=utc(u.last_read))
                for u in unused(store, site.project, site.graph, days)],
        lead_times=lead_times_out(list_requests(store, name)))
