"""Pictures drawn on the server as SVG: time-series charts, a run's Gantt timeline, the lineage graph.

Nothing is loaded from elsewhere; the browser only zooms and pans the graph (static/kiban.js).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from kiban.graph import Graph
from kiban.status import Verdict
from kiban.web import i18n

STATE_COLOURS = {
    "success": "#16a34a", "fresh": "#86efac", "failed": "#dc2626", "skipped": "#f59e0b", "cancelled": "#a855f7",
    "running": "#0ea5e9", "retrying": "#f59e0b", "never run": "#d1d5db", "lake": "#93c5fd", "abandoned": "#b91c1c",
    "met": "#16a34a", "late": "#f59e0b", "incomplete": "#f97316", "bad_data": "#e11d48", "pending": "#9ca3af",
    "at_risk": "#f59e0b",
}
NODE_W, NODE_H, GAP_X, GAP_Y = 190.0, 22.0, 70.0, 8.0


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _label(value: float, lang: str = "en") -> str:
    """An axis or tooltip number, grouped for the reader's locale (1,528,380; 0.0131)."""
    if abs(value) >= 100:
        return i18n.number(round(value), lang)
    return f"{value:.3g}"


def _when(at: datetime, fmt: str, tz: ZoneInfo | None, lang: str) -> str:
    """A time on a chart in the reader's locale, in ``tz`` (UTC when None)."""
    return i18n.when(at if at.tzinfo else at.replace(tzinfo=UTC), fmt, lang, tz or UTC)


def _zoned(title: str, tz: ZoneInfo | None, lang: str) -> str:
    if tz is None:
        return title
    return i18n.gettext(lang)("{title} (times in {zone})").format(title=title, zone=tz.key)


def _tip(at: datetime, tz: ZoneInfo | None, lang: str) -> str:
    """A point's time for its tooltip: in the project's zone and the reader's locale, with the UTC time."""
    aware = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)
    shown = _when(aware, "%Y-%m-%d %H:%M", tz, lang)
    return f"{shown} UTC" if tz is None else f"{shown} ({aware:%Y-%m-%d %H:%M} UTC)"


def line_chart(points: Sequence[tuple[datetime, float]], title: str, unit: str = "", width: int = 520,
               height: int = 160, tz: ZoneInfo | None = None, lang: str = "en") -> str:
    """A line over time with its min and max labelled; a note when there is nothing to draw. With ``tz``, times are
    shown in that zone (named in the title) and each point's tooltip adds its UTC time; dates and words are in the
    reader's language ``lang`` (``title`` comes translated)."""
    _ = i18n.gettext(lang)
    utc = [(at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC) for at, _v in points]
    label = escape(title)
    shown = escape(_zoned(title, tz, lang))
    if not points:
        return (f'<svg class="chart" role="img" aria-label="{label}" viewBox="0 0 {width} 40" width="{width}" '
                f'height="40"><text x="4" y="24" class="muted">{label}: {escape(_("no data yet"))}</text></svg>')
    points = list(zip(utc, (v for _at, v in points), strict=True))
    pad_l, pad_r, pad_t, pad_b = 56.0, 10.0, 22.0, 20.0
    t0, t1 = points[0][0].timestamp(), points[-1][0].timestamp()
    span = (t1 - t0) or 1.0
    low, high = min(v for _, v in points), max(v for _, v in points)
    low = min(low, 0.0)
    rng = (high - low) or 1.0
    w, h = width - pad_l - pad_r, height - pad_t - pad_b

    def xy(at: datetime, value: float) -> tuple[float, float]:
        return pad_l + (at.timestamp() - t0) / span * w, pad_t + h - (value - low) / rng * h

    coords = [xy(at, v) for at, v in points]
    path = " ".join(f"{'M' if i == 0 else 'L'}{_num(x)},{_num(y)}" for i, (x, y) in enumerate(coords))
    dots = "".join(f'<circle cx="{_num(x)}" cy="{_num(y)}" r="2.5"><title>{escape(_tip(at, tz, lang))}'
                   f': {_label(v, lang)}{escape(unit)}</title></circle>' for (x, y), (at, v) in zip(coords, points,
                                                                                                   strict=True))
    return (f'<svg class="chart" role="img" aria-label="{label}" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}"><text x="4" y="14" class="title">{shown}</text>'
            f'<line x1="{pad_l}" y1="{pad_t + h}" x2="{width - pad_r}" y2="{pad_t + h}" class="axis"/>'
            f'<text x="{pad_l - 4}" y="{pad_t + 4}" text-anchor="end">{_label(high, lang)}{escape(unit)}</text>'
            f'<text x="{pad_l - 4}" y="{pad_t + h}" text-anchor="end">{_label(low, lang)}{escape(unit)}</text>'
            f'<text x="{pad_l}" y="{height - 4}">{escape(_when(points[0][0], "%m-%d", tz, lang))}</text>'
            f'<text x="{width - pad_r}" y="{height - 4}" text-anchor="end">'
            f'{escape(_when(points[-1][0], "%m-%d %H:%M", tz, lang))}</text>'
            f'<path d="{path}" class="line"/>{dots}</svg>')


def verdict_bars(days: Sequence[tuple[str, str, float | None]], title: str, width: int = 640, height: int = 120,
                 lang: str = "en") -> str:
    """One bar per due day coloured by its verdict; a late day's bar grows with its lateness. Days (calendar days of
    the project's zone) and verdicts in the reader's language."""
    _ = i18n.gettext(lang)
    label = escape(title)
    if not days:
        return (f'<svg class="chart" role="img" aria-label="{label}" viewBox="0 0 {width} 40" width="{width}" '
                f'height="40"><text x="4" y="24" class="muted">{label}: {escape(_("no due days yet"))}</text></svg>')
    step = (width - 20) / len(days)
    bars = []
    for i, (day, verdict, late) in enumerate(days):
        tall = 30.0 if verdict in (Verdict.MET, Verdict.PENDING) else min(90.0, 45.0 + (late or 0) / 60)
        bars.append(f'<rect x="{_num(10 + i * step)}" y="{_num(height - 16 - tall)}" width="{_num(max(step - 2, 1))}" '
                    f'height="{_num(tall)}" fill="{STATE_COLOURS.get(verdict, "#9ca3af")}" class="v-{escape(verdict)}">'
                    f'<title>{escape(i18n.day(day, lang))}: {escape(_(verdict.replace("_", " ")))}'
                    + (f' ({escape(_("{n} min late").format(n=round((late or 0) / 60)))})' if late else "")
                    + '</title></rect>')
    return (f'<svg class="chart" role="img" aria-label="{label}" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}"><text x="4" y="14" class="title">{label}</text>{"".join(bars)}'
            f'<text x="10" y="{height - 3}">{escape(i18n.day(days[0][0], lang, False))}</text>'
            f'<text x="{width - 10}" y="{height - 3}" text-anchor="end">{escape(i18n.day(days[-1][0], lang, False))}'
            '</text></svg>')


def gantt(bars: Sequence[tuple[str, datetime | None, datetime | None, str]], width: int = 900) -> str:
    """One row per asset of a run: from its start to its end, coloured by its status."""
    timed = [(a, s, e, st) for a, s, e, st in bars if s is not None and e is not None]
    if not timed:
        return '<p class="muted">No timed attempts in this run.</p>'
    t0 = min(s.timestamp() for _, s, _, _ in timed if s)
    t1 = max(e.timestamp() for _, _, e, _ in timed if e)
    span = (t1 - t0) or 1.0
    label_w, row = 240.0, 18.0
    w = width - label_w - 10
    height = int(len(timed) * row + 30)
    rows = []
    for i, (asset, start, end, status) in enumerate(timed):
        assert start is not None and end is not None
        x = label_w + (start.timestamp() - t0) / span * w
        bw = max((end.timestamp() - start.timestamp()) / span * w, 2.0)
        y = 20 + i * row
        secs = end.timestamp() - start.timestamp()
        rows.append(f'<text x="{label_w - 6}" y="{_num(y + 12)}" text-anchor="end">{escape(asset)}</text>'
                    f'<rect x="{_num(x)}" y="{_num(y + 2)}" width="{_num(bw)}" height="{_num(row - 5)}" '
                    f'fill="{STATE_COLOURS.get(status, "#9ca3af")}"><title>{escape(asset)} {escape(status)} '
                    f'{secs:.2f} s</title></rect>')
    return (f'<svg class="gantt" role="img" aria-label="timeline of the run" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}"><text x="{label_w}" y="12">0 s</text>'
            f'<text x="{width - 10}" y="12" text-anchor="end">{span:.2f} s</text>{"".join(rows)}</svg>')


def layout(graph: Graph, keys: Sequence[str]) -> tuple[dict[str, tuple[float, float]], float, float]:
    """A layered layout: each asset in the column of its longest path from a source; rows ordered by the
    mean position of their inputs (a few barycentre sweeps) so edges cross less. O(assets + edges) per sweep."""
    wanted = set(keys)
    rank: dict[str, int] = {}
    for key in graph.order:
        if key in wanted:
            rank[key] = max((rank[d] + 1 for d in graph.deps[key] if d in rank), default=0)
    columns: dict[int, list[str]] = {}
    for key in graph.order:
        if key in rank:
            columns.setdefault(rank[key], []).append(key)
    for col in columns.values():
        col.sort()
    position = {k: float(i) for col in columns.values() for i, k in enumerate(col)}
    for _ in range(4):
        for r in sorted(columns)[1:]:
            def centre(key: str) -> float:
                ups = [position[d] for d in graph.deps[key] if d in position]
                return sum(ups) / len(ups) if ups else position[key]

            columns[r].sort(key=centre)
            position.update({k: float(i) for i, k in enumerate(columns[r])})
    at = {k: (10 + rank[k] * (NODE_W + GAP_X), 10 + position[k] * (NODE_H + GAP_Y)) for k in rank}
    width = 20 + (max(columns, default=0) + 1) * (NODE_W + GAP_X)
    height = 20 + max((len(c) for c in columns.values()), default=0) * (NODE_H + GAP_Y)
    return at, width, height


def effect_chart(points: Sequence[tuple[object, float, float | None]], start: object, title: str, unit: str = "",
                 width: int = 720, height: int = 220, smooth: int = 7, lang: str = "en") -> str:
    """An initiative's KPI: actual (solid) against the counterfactual — what it would have been without the change
    (dashed) — with the start date marked. Points are (day, actual, counterfactual); both lines are drawn as
    ``smooth``-day moving averages so that the weekly pattern does not hide the gap. Colours are inline, so the
    file stands alone (``kiban initiatives measure NAME --svg FILE``). Days and words in the reader's ``lang``."""
    _ = i18n.gettext(lang)
    label = escape(title)
    if len(points) < 2:
        return (f'<svg class="chart" role="img" aria-label="{label}" viewBox="0 0 {width} 40" width="{width}" '
                f'height="40"><text x="4" y="24">{label}: {escape(_("no data yet"))}</text></svg>')

    def rolling(values: list[float | None]) -> list[float | None]:
        out: list[float | None] = []
        for i in range(len(values)):
            window = [v for v in values[max(0, i - smooth + 1): i + 1] if v is not None and v == v]
            # only whole windows: a first day alone (a quiet Monday) would set the scale
            out.append(sum(window) / len(window) if len(window) == smooth else None)
        return out

    actual = rolling([a for _, a, _ in points])
    counter = rolling([c for _, _, c in points])
    shown = [v for v in (*actual, *counter) if v is not None] or [0.0]
    low, high = min(shown), max(shown)
    rng = (high - low) or 1.0
    pad_l, pad_r, pad_t, pad_b = 64.0, 12.0, 24.0, 34.0
    w, h = width - pad_l - pad_r, height - pad_t - pad_b
    n = len(points)

    def xy(i: int, value: float) -> tuple[float, float]:
        return pad_l + i / (n - 1) * w, pad_t + h - (value - low) / rng * h

    def path(values: list[float | None]) -> str:
        parts, pen = [], "M"
        for i, v in enumerate(values):
            if v is None:
                pen = "M"
                continue
            x, y = xy(i, v)
            parts.append(f"{pen}{_num(x)},{_num(y)}")
            pen = "L"
        return " ".join(parts)

    start_i = next((i for i, (d, _, _) in enumerate(points) if str(d) >= str(start)), n - 1)
    sx = pad_l + start_i / (n - 1) * w
    first, last = i18n.day(str(points[0][0]), lang), i18n.day(str(points[-1][0]), lang)
    return (f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{label}" '
            f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" font-family="sans-serif" '
            f'font-size="11"><text x="4" y="14" font-weight="600">{label}</text>'
            f'<rect x="{_num(sx)}" y="{pad_t}" width="{_num(pad_l + w - sx)}" height="{_num(h)}" fill="#f1f5f9"/>'
            f'<line x1="{_num(sx)}" y1="{pad_t}" x2="{_num(sx)}" y2="{pad_t + h}" stroke="#64748b" '
            f'stroke-dasharray="2,2"/><text x="{_num(sx + 3)}" y="{pad_t + 10}" fill="#475569">'
            f'{escape(_("start {day}").format(day=i18n.day(str(start), lang)))}</text>'
            f'<text x="{pad_l - 4}" y="{pad_t + 4}" text-anchor="end">{_label(high, lang)}{escape(unit)}</text>'
            f'<text x="{pad_l - 4}" y="{pad_t + h}" text-anchor="end">{_label(low, lang)}{escape(unit)}</text>'
            f'<text x="{pad_l}" y="{pad_t + h + 14}">{escape(first)}</text>'
            f'<text x="{pad_l + w}" y="{pad_t + h + 14}" text-anchor="end">{escape(last)}</text>'
            f'<path d="{path(counter)}" fill="none" stroke="#94a3b8" stroke-width="1.5" stroke-dasharray="5,3"/>'
            f'<path d="{path(actual)}" fill="none" stroke="#2563eb" stroke-width="1.6"/>'
            f'<text x="{pad_l}" y="{height - 4}" fill="#2563eb">— {escape(_("actual"))}</text>'
            f'<text x="{pad_l + 70}" y="{height - 4}" fill="#64748b">- - '
            f'{escape(_("without the change (counterfactual), {n}-day averages").format(n=smooth))}</text></svg>')


def measurement_chart(result: Any, lang: str = "en") -> str:
    """The chart of a :class:`kiban.value.measure.Measurement`: its treated units' KPI against the counterfactual."""
    e = result.effect
    if not e.series:
        return effect_chart([], None, result.initiative, lang=lang)
    start = e.series[e.pre_days].day if e.pre_days < len(e.series) else e.series[-1].day
    title = i18n.gettext(lang)("{initiative}: {kpi} per treated unit, actual vs without the change")
    return effect_chart([(p.day, p.actual, p.counterfactual) for p in e.series], start,
                        title.format(initiative=result.initiative, kpi=result.kpi),
                        f" {result.measure_unit}" if result.measure_unit else "", lang=lang)


# what a load brought, by the shape under its bar as well as its colour (never colour alone)
LOAD_KINDS = {
    "new rows": ("#2563eb", ""), "nothing new": ("#9ca3af", "·"), "empty": ("#dc2626", "∅"),
    "all quarantined": ("#f59e0b", "!"), "refused": ("#b91c1c", "×"), "retracted": ("#a855f7", "↶"),
}


def load_bars(loads: Sequence[tuple[datetime, int, str]], title: str, width: int = 640, height: int = 150,
              tz: ZoneInfo | None = None, lang: str = "en") -> str:
    """One bar per load (oldest first) of the rows it landed, with what kind of load it was: a load that found
    nothing new is a grey dot, not a drop to zero; a source that was empty is a red ∅; a refused load a ×."""
    _ = i18n.gettext(lang)
    label = escape(title)
    if not loads:
        return (f'<svg class="chart" role="img" aria-label="{label}" viewBox="0 0 {width} 40" width="{width}" '
                f'height="40"><text x="4" y="24" class="muted">{label}: {escape(_("no loads yet"))}</text></svg>')
    shown = escape(_zoned(title, tz, lang))
    pad_l, pad_t, pad_b = 56.0, 22.0, 34.0
    top = max(rows for _, rows, _ in loads) or 1
    step = (width - pad_l - 10) / len(loads)
    h = height - pad_t - pad_b
    bars = []
    for i, (at, rows, kind) in enumerate(loads):
        colour, mark = LOAD_KINDS.get(kind, ("#9ca3af", "?"))
        tip = f"{_tip(at, tz, lang)}: {_(kind)}, " + _("{n} rows landed").format(n=i18n.number(rows, lang))
        tall = max(rows / top * h, 2.0) if rows else 2.0
        x = pad_l + i * step
        bars.append(f'<g class="load k-{escape(kind.replace(" ", "-"))}"><title>{escape(tip)}</title>'
                    f'<rect x="{_num(x)}" y="{_num(pad_t + h - tall)}" width="{_num(max(step - 2, 1))}" '
                    f'height="{_num(tall)}" fill="{colour}"/>'
                    + (f'<text x="{_num(x + max(step - 2, 1) / 2)}" y="{_num(pad_t + h + 12)}" text-anchor="middle" '
                       f'class="mark">{mark}</text>' if mark else "") + "</g>")
    return (f'<svg class="chart" role="img" aria-label="{label}" viewBox="0 0 {width} {height}" width="{width}" '
            f'height="{height}"><text x="4" y="14" class="title">{shown}</text>'
            f'<line x1="{pad_l}" y1="{pad_t + h}" x2="{width - 10}" y2="{pad_t + h}" class="axis"/>'
            f'<text x="{pad_l - 4}" y="{pad_t + 4}" text-anchor="end">{_label(top, lang)}</text>'
            f'<text x="{pad_l - 4}" y="{pad_t + h}" text-anchor="end">0</text>{"".join(bars)}'
            f'<text x="{pad_l}" y="{height - 4}">{escape(_when(loads[0][0], "%m-%d %H:%M", tz, lang))}</text>'
            f'<text x="{width - 10}" y="{height - 4}" text-anchor="end">'
            f'{escape(_when(loads[-1][0], "%m-%d %H:%M", tz, lang))}</text></svg>')
