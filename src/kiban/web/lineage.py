"""The lineage page (``/graph``): thousands of assets, drawn on the server, explored in the browser.

Why a server-side layout and SVG rather than a JavaScript graph library: the layered layout (``svg.layout``) is
computed once per filter and shared between requests; the browser receives finished coordinates and only zooms,
pans and searches (``static/kiban.js``), so the first paint does not wait for a layout in JavaScript (dagre or
ELK take seconds at 5,000 nodes), nothing is downloaded at run time, and every box is a real link that works
without script. To stay quick at 5,000 assets the page keeps the document small: all edges are one ``<path>``,
all arrowheads another, and each box carries its state as a class (colour *and* a border style) and an icon
(✓ ✕ ↷ ○ ◆ …), never colour alone.

Filters: layer, tag, owner, and a focus in selection syntax (``+mart.daily_sales+``) with a depth — how many
steps up (``+`` before) and down (``+`` after) to follow; a bare name with a depth means both ways.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from html import escape
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from starlette.responses import Response

from kiban.errors import KibanError
from kiban.graph import Graph, select
from kiban.status import AttemptStatus
from kiban.web import svg, views
from kiban.web.accounts import User
from kiban.web.auth import current_user
from kiban.web.templating import render
from kiban.web.views import Site

router = APIRouter(include_in_schema=False)
Viewer = Annotated[User, Depends(current_user)]

LAYERS = ("lake", "warehouse", "mart")
DEPTHS = (1, 2, 3, 5)
NEVER = "never run"
# a state's icon (drawn before the name) and its box class; the class sets colour and border style together
ICONS = {
    AttemptStatus.SUCCESS: "✓", AttemptStatus.FRESH: "✓", AttemptStatus.FAILED: "✕", AttemptStatus.SKIPPED: "↷",
    AttemptStatus.CANCELLED: "⊘", AttemptStatus.RETRYING: "↻", "running": "▶", "abandoned": "✕", NEVER: "○",
    "lake": "◆",
}
LEGEND = (("success", "✓ built"), ("fresh", "✓ fresh (already current)"), ("failed", "✕ failed"),
          ("skipped", "↷ skipped"), ("never_run", "○ never run"), ("lake", "◆ collected (lake)"))


def owner_of(graph: Graph, key: str) -> str:
    return getattr(graph.assets[key].config, "owner", None) or ""


def _step(graph: Graph, start: set[str], depth: int | None, up: bool) -> set[str]:
    """What lies ``depth`` steps upstream (or downstream) of ``start``; ``None``: all of it."""
    if depth is None:
        found: set[str] = set()
        for key in start:
            found |= graph.upstream(key) if up else graph.downstream(key)
        return found
    seen, edge = set(start), set(start)
    for _ in range(depth):
        edge = {n for k in edge for n in (graph.deps[k] if up else graph.children[k])} - seen
        if not edge:
            break
        seen |= edge
    return seen - start


def focus(graph: Graph, terms: Iterable[str], depth: int | None) -> set[str]:
    """The assets a focus names: each term in selection syntax (``+name+``, ``name+``, ``tag:x``), followed
    ``depth`` steps; with a depth, a term without ``+`` is followed both ways (a neighbourhood)."""
    chosen: set[str] = set()
    for term in terms:
        up, down = term.startswith("+"), term.endswith("+") and len(term) > 1
        core = term.strip("+")
        base = set(select(graph, [core]))  # an unknown name is a clear error, with did-you-mean
        if depth is not None and not up and not down:
            up = down = True
        chosen |= base
        if up:
            chosen |= _step(graph, base, depth, up=True)
        if down:
            chosen |= _step(graph, base, depth, up=False)
    return chosen


def _label(key: str, limit: int = 27) -> str:
    return key if len(key) <= limit else key[:limit - 1] + "…"


WINDOW = 600  # up to this many boxes, every box is a link in the page; above, only those in view (kiban.js)
VIEW = (1400.0, 640.0)  # the opening view a server-drawn window covers (the frame at 1440 px)
STRIP = 1500.0  # px: edges and boxes are drawn in tiles of this size (out of view, the browser skips them)


def _node(key: str, x: float, y: float, state: str) -> str:
    num = svg._num
    return (f'<a href="/assets/{escape(key)}" class="node st-{escape(state.replace(" ", "_"))}" '
            f'data-key="{escape(key)}"><rect x="{num(x)}" y="{num(y)}" width="{svg.NODE_W}" height="{svg.NODE_H}" '
            f'rx="4"/><text x="{num(x + 5)}" y="{num(y + 15)}">{ICONS.get(state, "•")} {escape(_label(key))}</text>'
            f'<title>{escape(key)}: {escape(state)}</title></a>')


def opening(at: dict[str, tuple[float, float]], height: float, centre: str | None) -> tuple[float, float]:
    """The top left corner of the opening view: around ``centre``, else the middle of the left edge (the
    sources), never an empty corner. kiban.js opens on the same spot."""
    vw, vh = VIEW
    if centre is not None and centre in at:
        x, y = at[centre]
        return max(0.0, x + svg.NODE_W / 2 - vw / 2), max(0.0, y + svg.NODE_H / 2 - vh / 2)
    return 0.0, max(0.0, height / 2 - vh / 2)


def draw(graph: Graph, keys: Sequence[str], states: dict[str, str], at: dict[str, tuple[float, float]],
         size: tuple[float, float], centre: str | None = None) -> str:
    """The lineage as one SVG: edges (one path) with arrowheads (one path) under boxes that link to their
    assets. ``centre``: the asset the view opens on (the focus, else the first broken one).

    Above :data:`WINDOW` boxes, every box is still drawn — one path per state, so 5,000 boxes are a handful of
    elements — but the labels and links only for the opening view; the page's script draws those of whatever
    comes into view from the positions it is given (``nodes_json``)."""
    w, h, num = svg.NODE_W, svg.NODE_H, svg._num
    # paths in strips of the drawing, so the browser skips painting (and hit-testing) what is out of view
    curves: dict[tuple[int, int], list[str]] = {}
    heads: dict[tuple[int, int], list[str]] = {}
    for key in keys:
        x2, y2 = at[key]
        ey = y2 + h / 2
        strip = int(x2 // STRIP), int(y2 // STRIP)
        for up in graph.deps[key]:
            if up not in at:
                continue
            x1, y1 = at[up]
            sx, sy = x1 + w, y1 + h / 2
            ex = x2 - 6  # the curve stops where its arrowhead begins
            mid = (sx + ex) / 2
            curves.setdefault(strip, []).append(
                f"M{num(sx)},{num(sy)}C{num(mid)},{num(sy)} {num(mid)},{num(ey)} {num(ex)},{num(ey)}")
        if any(up in at for up in graph.deps[key]):
            heads.setdefault(strip, []).append(f"M{num(x2)},{num(ey)}l-7,-3.5v7z")  # its inputs share one head
    lines = "".join(f'<path class="edges" d="{"".join(d)}"/>' for _, d in sorted(curves.items()))
    lines += "".join(f'<path class="arrows" d="{"".join(d)}"/>' for _, d in sorted(heads.items()))
    width, height = size
    windowed = len(keys) > WINDOW
    boxes = ""
    if windowed:
        by_state: dict[tuple[str, int, int], list[str]] = {}
        for key in keys:
            x, y = at[key]
            by_state.setdefault((states.get(key, NEVER), int(x // STRIP), int(y // STRIP)), []).append(
                f"M{num(x)},{num(y)}h{w}v{h}h-{w}z")
        boxes = "".join(f'<path class="boxes st-{escape(st.replace(" ", "_"))}" d="{"".join(d)}"/>'
                        for (st, _, _), d in sorted(by_state.items()))
        left, top = opening(at, height, centre)
        shown = [k for k in keys if left - w <= at[k][0] <= left + VIEW[0] and top - h <= at[k][1] <= top + VIEW[1]]
    else:
        shown = list(keys)
    nodes = "".join(_node(k, *at[k], states.get(k, NEVER)) for k in shown)
    return (f'<svg id="lineage" class="lineage" role="img" tabindex="0" aria-labelledby="lineage-label" '
            f'viewBox="0 0 {num(width)} {num(height)}" width="100%" height="640" '
            f'preserveAspectRatio="xMinYMin meet"' + (f' data-centre="{escape(centre)}"' if centre else "")
            + (' data-window="1"' if windowed else "")
            + f'><g id="viewport">{lines}{boxes}<g id="labels">{nodes}</g>'
            f'<path id="hits" class="hits" d=""/></g></svg>')


def nodes_json(keys: Sequence[str], states: dict[str, str], at: dict[str, tuple[float, float]]) -> str:
    """Every box for the page's script (find, and the labels of what comes into view): [key, x, y, state]."""
    rows = [[k, round(at[k][0], 1), round(at[k][1], 1), states.get(k, NEVER)] for k in keys]
    return json.dumps({"nodes": rows, "icons": ICONS, "w": svg.NODE_W, "h": svg.NODE_H},
                      ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")


def _centre(keys: Sequence[str], cores: set[str], states: dict[str, str]) -> str | None:
    if cores:
        return next((k for k in keys if k in cores), None)
    broken = (AttemptStatus.FAILED, AttemptStatus.SKIPPED)
    return next((k for k in keys if states.get(k) in broken), None)


@router.get("/graph")
def graph_page(request: Request, user: Viewer, layer: Annotated[str, Query(max_length=100)] = "",
               tag: Annotated[str, Query(max_length=200)] = "", owner: Annotated[str, Query(max_length=200)] = "",
               focus_: Annotated[str, Query(alias="focus", max_length=400)] = "",
               depth: Annotated[str, Query(max_length=3)] = "") -> Response:
    site: Site = request.app.state.site
    graph = site.graph
    tags, owners = site.cached("lineage:choices", 300.0, lambda: _choices(graph))
    layers = [x for x in layer.split(",") if x]
    wanted = [t for t in tag.split(",") if t]
    unknown = [x for x in layers if x not in LAYERS] + [t for t in wanted if t not in tags]
    if owner and owner not in owners:
        unknown.append(owner)
    if unknown:  # also keeps the layout cache to the filters that exist
        raise HTTPException(404, f"no layer, tag or owner named '{unknown[0]}'")
    steps = int(depth) if depth.isdigit() and int(depth) in DEPTHS else None
    terms = focus_.split()
    state = views.asset_state(site)
    cache_key = f"lineage:{','.join(layers)}:{','.join(wanted)}:{owner}:{' '.join(terms)}:{steps}"

    def compute() -> tuple[list[str], dict[str, tuple[float, float]], float, float, set[str]]:
        keys = select(graph, [f"tag:{t}" for t in wanted]) if wanted else list(graph.order)
        cores: set[str] = set()
        if terms:
            chosen = focus(graph, terms, steps)
            cores = {k for t in terms for k in select(graph, [t.strip("+")])}
            keys = [k for k in keys if k in chosen]
        if layers:
            keys = [k for k in keys if graph.assets[k].layer in layers]
        if owner:
            keys = [k for k in keys if owner_of(graph, k) == owner]
        at, width, height = svg.layout(graph, keys)
        return keys, at, width, height, cores

    try:
        keys, at, width, height, cores = site.cached(cache_key, 300.0, compute)
    except KibanError as exc:
        return render(request, "graph.html", 400, picture="", nodes="", tags=tags, owners=owners, layer=layer, tag=tag,
                      owner=owner, focus=focus_, depth=depth, depths=DEPTHS, count=0, legend=LEGEND,
                      problem=str(exc), title="Lineage")
    # drawn again only when the states change (one kept picture per filter)
    picture, data = site.keep(f"{cache_key}:svg", (id(graph), state), lambda: (
        draw(graph, keys, state, at, (width, height), _centre(keys, cores, state)),
        nodes_json(keys, state, at)))
    return render(request, "graph.html", picture=picture, nodes=data, tags=tags, owners=owners, layer=layer, tag=tag,
                  owner=owner, focus=focus_, depth=depth, depths=DEPTHS, count=len(keys), legend=LEGEND,
                  problem=None, title="Lineage")


def _choices(graph: Graph) -> tuple[list[str], list[str]]:
    tags = sorted({t for a in graph.assets.values() for t in a.tags})
    owners = sorted({o for k in graph.assets if (o := owner_of(graph, k))})
    return tags, owners
