"""One run's page (``/runs/{id}``): what it builds now, what waits, when it should end, and a timeline that stays
readable at 500 assets.

While a run goes, the page shows the assets in flight with their elapsed time and expected remaining time, the
queue, and an ETA for the whole run. The ETA is the breach forecast's own simulation (``kiban.slo.predict``:
each step's p50/p90 build time from its history, the project's thread limit, a step starting when its inputs
are done) run over what is left. What is building is exact for a run started from this console (its events);
for a run started elsewhere (``kiban run``, the scheduler) it is inferred from the store: the executor starts
an asset as soon as its inputs are done and a thread is free, so the first ``threads`` of those are shown as
building and the page says it inferred them.

The timeline groups the assets by layer: one scrolling frame, a summary bar per group, groups without a
problem folded when they are long; bars are coloured *and* marked (✕ failed, ↷ skipped, ▶ building).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

from kiban.errors import KibanError
from kiban.graph import select
from kiban.slo.predict import Concurrency, Durations, Predictor, RunState
from kiban.status import AttemptStatus, RunStatus
from kiban.store import utcnow
from kiban.web import i18n
from kiban.web.models import AttemptOut, RunDetail
from kiban.web.svg import STATE_COLOURS, _num
from kiban.web.views import Site, utc

DURATIONS_TTL = 600.0  # the per-asset build times the ETA uses (from the service-level assessment)
FOLD = 30  # a group longer than this, with nothing wrong in it, starts folded
MARKS = {AttemptStatus.FAILED: "✕", AttemptStatus.SKIPPED: "↷", AttemptStatus.CANCELLED: "⊘",
         AttemptStatus.RETRYING: "↻", "building": "▶"}
DONE = (AttemptStatus.SUCCESS, AttemptStatus.FRESH)
BROKEN = (AttemptStatus.FAILED, AttemptStatus.SKIPPED, AttemptStatus.CANCELLED)


@dataclass
class Flight:
    """An asset being built now."""

    key: str
    since: datetime
    elapsed: float
    remaining: float | None  # expected seconds still needed (p50), None when unknown


@dataclass
class Progress:
    done: int
    total: int
    building: list[Flight] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)
    eta: datetime | None = None  # when the run should end (p50), and the top of its range (p90)
    eta_high: datetime | None = None
    exact: bool = False  # building is known from the run's events (else inferred from the store)


def _durations(site: Site) -> tuple[dict[str, float], dict[str, float]]:
    def compute() -> tuple[dict[str, float], dict[str, float]]:
        result = site.assessment()
        return dict(result.p50), dict(result.p90)

    return site.cached("run-page:durations", DURATIONS_TTL, compute)


def progress(site: Site, detail: RunDetail, building: dict[str, datetime] | None,
             now: datetime | None = None) -> Progress | None:
    """Where a running run is; None when it is over or its plan cannot be known (the project changed)."""
    if detail.run.status != RunStatus.RUNNING:
        return None
    record = site.reader.run(detail.run.run_id)
    graph = site.graph
    try:
        planned = set(select(graph, detail.run.selection, (record.options if record else {}).get("exclude", [])))
    except KibanError:
        return None
    now = now or utcnow().replace(tzinfo=UTC)
    last = {a.asset: a for a in detail.attempts}
    finished = {k: utc(a.ended_at) or now for k, a in last.items() if a.status in DONE}
    broken = {k for k, a in last.items() if a.status in BROKEN}
    # a lake table is planned only when the run collects it (it then has attempts); files are just read
    planned = {k for k in planned if graph.assets[k].layer != "lake"} | {k for k in last if k in graph.assets}
    started_at = utc(detail.run.started_at)
    if building is not None:
        since = {k: (t if t.tzinfo else t.replace(tzinfo=UTC)) for k, t in building.items() if k not in finished}
    else:  # inferred: inputs done, not finished, first come first served up to the thread limit
        ready = [k for k in graph.sorted(planned) if k not in finished and k not in broken
                 and all(d in finished for d in graph.deps[k] if d in planned)]
        threads = site.project.config.effective_threads
        since = {k: max([started_at, *(finished[d] for d in graph.deps[k] if d in finished)])
                 for k in ready[:threads]}
    p50, p90 = _durations(site)
    predictor = Predictor(graph, {}, {}, Durations(p50, p90),
                          Concurrency(threads=site.project.config.effective_threads))
    naive = now.replace(tzinfo=None)
    state = RunState(planned=planned, started={k: t.replace(tzinfo=None) for k, t in since.items()},
                     finished={k: t.replace(tzinfo=None) for k, t in finished.items()}, broken=broken)
    try:
        f50 = predictor.finish_times(state, naive, 0.5)
        f90 = predictor.finish_times(state, naive, 0.9)
    except KeyError:  # an asset the served graph does not know (the project changed under the run)
        f50 = f90 = {}
    left = [k for k in planned if k not in finished and k not in broken]
    eta = max((f50[k] for k in left if k in f50), default=None)
    high = max((f90[k] for k in left if k in f90), default=None)
    flights = [Flight(k, t, (now - t).total_seconds(),
                      (f50[k] - naive).total_seconds() if k in f50 else None) for k, t in since.items()]
    flights.sort(key=lambda f: f.since)
    queued = [k for k in graph.sorted(left) if k not in since]
    return Progress(done=len(finished) + len(broken), total=len(planned), building=flights, queued=queued,
                    eta=eta.replace(tzinfo=UTC) if eta else None, eta_high=high.replace(tzinfo=UTC) if high else None,
                    exact=building is not None)


@dataclass
class _Row:
    key: str
    start: float
    end: float
    status: str


def _group_of(key: str) -> str:
    return key.split(".", 1)[0]


def timeline(attempts: Sequence[AttemptOut], flights: Sequence[Flight], now: datetime | None = None,
             width: int = 900, lang: str = "en") -> str:
    """The run's assets on one time axis, grouped by layer, in a frame that scrolls (HTML with one SVG per
    group). A building asset is a bar up to now, marked ▶. Words in the reader's language ``lang``."""
    _ = i18n.gettext(lang)
    last: dict[str, AttemptOut] = {}
    for a in attempts:
        last[a.asset] = a
    now = now or utcnow().replace(tzinfo=UTC)
    spans: list[tuple[str, datetime, datetime, str]] = [
        (k, utc(a.started_at), utc(a.ended_at), a.status) for k, a in last.items()
        if a.started_at is not None and a.ended_at is not None]
    spans += [(f.key, f.since, now, "building") for f in flights if f.key not in last or
              last[f.key].status == AttemptStatus.RETRYING]
    if not spans:
        return f'<p class="muted">{escape(_("Nothing timed in this run yet."))}</p>'
    t0 = min(s.timestamp() for _, s, _, _ in spans)
    t1 = max(e.timestamp() for _, _, e, _ in spans)
    span = (t1 - t0) or 1.0
    groups: dict[str, list[_Row]] = {}
    for key, s, e, st in sorted(spans, key=lambda x: (x[1], x[0])):
        groups.setdefault(_group_of(key), []).append(_Row(key, s.timestamp() - t0, e.timestamp() - t0, st))
    label_w, row = 230.0, 16.0
    w = width - label_w - 10
    order = [g for g in ("lake", "warehouse", "mart") if g in groups] + sorted(set(groups) - {"lake", "warehouse",
                                                                                               "mart"})
    sec = escape(_("s"))
    parts = [f'<div class="timeline-frame" role="region" aria-label="{escape(_("timeline of the run"))}" '
             f'tabindex="0"><div class="timeline-axis"><span>0 {sec}</span>'
             f'<span>{span:.2f} {sec}</span></div>']
    for name in order:
        rows = groups[name]
        counts: dict[str, int] = {}
        for r in rows:
            counts[r.status] = counts.get(r.status, 0) + 1
        trouble = any(st not in DONE for st in counts)
        first, end = min(r.start for r in rows), max(r.end for r in rows)
        summary = " · ".join(f"{MARKS.get(st, '')}{_(st)} {n}".strip() for st, n in sorted(counts.items()))
        bar = (f'<svg class="gantt-sum" viewBox="0 0 {width} 14" width="{width}" height="14" aria-hidden="true">'
               f'<rect x="{_num(label_w + first / span * w)}" y="3" width="{_num(max((end - first) / span * w, 2))}" '
               f'height="8" fill="{STATE_COLOURS["failed"] if trouble else "#9ca3af"}"/></svg>')
        height = int(len(rows) * row + 4)
        bars = []
        for i, r in enumerate(rows):
            x = label_w + r.start / span * w
            bw = max((r.end - r.start) / span * w, 2.0)
            y = 2 + i * row
            mark = MARKS.get(r.status, "")
            colour = STATE_COLOURS.get(r.status, STATE_COLOURS["running"] if r.status == "building" else "#9ca3af")
            bars.append(f'<g class="bar b-{escape(r.status)}"><text x="{_num(label_w - 6)}" y="{_num(y + 11)}" '
                        f'text-anchor="end">{escape(mark + " " if mark else "")}{escape(r.key)}</text>'
                        f'<rect x="{_num(x)}" y="{_num(y + 2)}" width="{_num(bw)}" height="{_num(row - 5)}" '
                        f'fill="{colour}"/><title>{escape(r.key)} {escape(_(r.status))} '
                        f'{r.end - r.start:.2f} {sec}</title></g>')
        folded = len(rows) > FOLD and not trouble
        parts.append(f'<details class="tl-group" data-group="{escape(name)}"{"" if folded else " open"}>'
                     f'<summary><strong>{escape(name)}</strong> {len(rows)} · {escape(summary)}{bar}</summary>'
                     f'<svg class="gantt" role="img" aria-label="{escape(name)}: '
                     f'{escape(_("{n} assets").format(n=len(rows)))}" '
                     f'viewBox="0 0 {width} {height}" width="{width}" height="{height}">{"".join(bars)}</svg>'
                     f'</details>')
    parts.append("</div>")
    return "".join(parts)


def attempt_tables(attempts: Sequence[AttemptOut], keep: int = 50) -> dict[str, Any]:
    """What the attempts table shows: every problem; the built ones in full when few, else the slowest ``keep``
    (the page links to all of them)."""
    problems = [a for a in attempts if a.status not in DONE]
    built = [a for a in attempts if a.status in DONE]
    shown = built if len(built) <= keep + 10 else sorted(built, key=lambda a: -(a.seconds or 0.0))[:keep]
    return {"problems": problems, "built": shown, "built_total": len(built), "cut": len(shown) < len(built)}


def eta_words(p: Progress, now: datetime | None = None, lang: str = "en") -> str:
    """"about 3 min left" from the ETA, or why there is none (in the reader's language)."""
    _ = i18n.gettext(lang)
    if p.eta is None:
        return _("no estimate (nothing left that can run)" if p.total and p.done >= p.total else "no estimate yet")
    now = now or utcnow().replace(tzinfo=UTC)
    left = max((p.eta - now).total_seconds(), 0.0)
    high = max((p.eta_high - now).total_seconds(), left) if p.eta_high else left
    return _("about {time} left").format(time=_span(left)) + (
        _(" (at most {time} at the slow end)").format(time=_span(high)) if high > left + 1 else "")


def _span(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return str(timedelta(seconds=int(seconds)))[:-3].replace(":", " h ", 1) + " min"
