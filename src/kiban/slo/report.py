"""The morning report: today's use cases and verdicts, each miss with its root cause and workaround,
error budgets, and the assets whose build time grows fastest. As text lines, Markdown or HTML."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime
from statistics import median
from typing import Any

from kiban.slo.budget import too_tight
from kiban.slo.cause import explain, span
from kiban.slo.service import Assessment
from kiban.status import Verdict

SYMBOL = {"met": "✅", "late": "⏰", "failed": "❌", "incomplete": "◐", "bad_data": "⚠️", "pending": "…",
          "at_risk": "⚠️"}


@dataclass(frozen=True)
class Row:
    usecase: str
    due: str
    deadline: str
    verdict: str
    detail: str
    attainment: str
    budget_left: str
    burn: str


def _local(value: datetime | None, result: Assessment) -> str:
    if value is None:
        return "-"
    return value.replace(tzinfo=UTC).astimezone(result.context.tz).strftime("%m-%d %H:%M")


def rows(result: Assessment) -> list[Row]:
    out = []
    for name in sorted(result.context.project.usecases):
        verdict = result.current.get(name)
        spent = result.budgets[name]
        detail = ""
        if verdict is not None:
            if verdict.verdict == Verdict.LATE:
                detail = f"{span(verdict.lateness_s or 0)} late"
            elif verdict.verdict == Verdict.MET:
                detail = f"ready {_local(verdict.satisfied_at, result)}"
            failures = verdict.evidence.get("failures")
            if failures and verdict.verdict not in (Verdict.MET, Verdict.LATE):
                detail = f"{failures[0]['asset']} {failures[0]['status']}"
        out.append(Row(
            usecase=name, due=str(verdict.due_date) if verdict else "-",
            deadline=_local(verdict.deadline, result) if verdict else "-",
            verdict=verdict.verdict if verdict else "not due", detail=detail,
            attainment=f"{spent.attainment:.0%}" if spent.attainment is not None else "-",
            budget_left=f"{spent.left} of {spent.allowed}" if spent.due else "-",
            burn=f"{spent.burn_rate:.1f}×" if spent.burn_rate is not None else "-"))
    return out


def slowest_growing(result: Assessment, limit: int = 5) -> list[tuple[str, float, float]]:
    """(asset, median of recent builds, growth ratio over the builds before them)."""
    found = []
    for key, facts in result.facts.assets.items():
        durations = facts.durations
        if len(durations) < 6:
            continue
        half = len(durations) // 2
        before, recent = median(durations[:half]), median(durations[half:])
        if before > 0:
            found.append((key, recent, recent / before))
    return sorted(found, key=lambda item: item[2], reverse=True)[:limit]


def misses(result: Assessment) -> list[dict[str, str]]:
    out = []
    for verdict in result.misses():
        incident = result.known.get((verdict.usecase, verdict.due_date)) or next(
            (i for i in result.incidents if i.usecase == verdict.usecase and i.due_date == verdict.due_date), None)
        found = (incident.root_cause if incident and incident.root_cause else None) or _explained(result, verdict)
        cause = (str(found.get("reason") or "")[:300] or
                 f"{found['asset']} {found['status']}: {str(found.get('error', ''))[:200]}") if found else ""
        out.append({"usecase": verdict.usecase, "due": str(verdict.due_date), "verdict": verdict.verdict,
                    "late": span(verdict.lateness_s) if verdict.lateness_s else "",
                    "cause": cause or "-", "workaround": incident.workaround or "-" if incident else "-",
                    "incident": f"#{incident.id}" if incident else ""})
    return out


def _explained(result: Assessment, verdict: Any) -> dict[str, Any] | None:
    """A miss without an incident explained as an incident would be (``kiban.slo.cause.explain``)."""
    start = verdict.evidence.get("window_start")
    window_start = datetime.fromisoformat(start) if start else verdict.deadline
    return explain(result.context, result.facts, verdict.verdict, verdict.evidence, window_start,
                   min(result.now, verdict.satisfied_at or result.now), usecase=verdict.usecase)


def markdown(result: Assessment, title: str) -> str:
    lines = [f"# {title}", "", f"_{result.today} — generated {_local(result.now, result)}_", "",
             "## Use cases today", "", "| | use case | due | deadline | verdict | detail | attainment | "
             "budget left | burn |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows(result):
        lines.append(f"| {SYMBOL.get(r.verdict, '')} | {r.usecase} | {r.due} | {r.deadline} | {r.verdict} | "
                     f"{r.detail} | {r.attainment} | {r.budget_left} | {r.burn} |")
    missed = misses(result)
    lines += ["", "## Misses (last 7 days)", ""]
    if missed:
        lines += ["| use case | day | verdict | late | root cause | workaround | incident |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {m['usecase']} | {m['due']} | {m['verdict']} | {m['late']} | {m['cause']} | "
                  f"`{m['workaround']}` | {m['incident']} |" for m in missed]
    else:
        lines.append("None. Every promise was kept.")
    tight = [w for name in sorted(result.budgets) if (w := too_tight(result.budgets[name]))]
    if tight:
        lines += ["", "## Targets too tight for their window", "", *(f"- {w}" for w in tight)]
    growing = slowest_growing(result)
    if growing:
        lines += ["", "## Build times growing fastest", "", "| asset | recent median | growth |", "|---|---|---|"]
        lines += [f"| {k} | {v:.1f} s | {g:.2f}× |" for k, v, g in growing]
    return "\n".join(lines) + "\n"


def to_html(result: Assessment, title: str) -> str:
    """A self-contained page (inline CSS, no scripts, nothing loaded from elsewhere)."""
    def table(header: list[str], body: list[list[str]]) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        rows_html = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table>"

    colours = {"met": "#15803d", "late": "#b45309", "at_risk": "#b45309", "pending": "#6b7280"}
    today = [[SYMBOL.get(r.verdict, ""), r.usecase, r.due, r.deadline, r.verdict, r.detail, r.attainment,
              r.budget_left, r.burn] for r in rows(result)]
    body = table(["", "use case", "due", "deadline", "verdict", "detail", "attainment", "budget left", "burn"], today)
    for verdict, colour in colours.items():
        body = body.replace(f"<td>{verdict}</td>", f'<td style="color:{colour};font-weight:600">{verdict}</td>')
    body = body.replace("<td>failed</td>", '<td style="color:#b91c1c;font-weight:600">failed</td>')
    missed = misses(result)
    miss_html = table(["use case", "day", "verdict", "late", "root cause", "workaround", "incident"],
                      [[m["usecase"], m["due"], m["verdict"], m["late"], m["cause"], m["workaround"], m["incident"]]
                       for m in missed]) if missed else "<p>None. Every promise was kept.</p>"
    growing = slowest_growing(result)
    grow_html = table(["asset", "recent median", "growth"], [[k, f"{v:.1f} s", f"{g:.2f}×"] for k, v, g in growing]) \
        if growing else "<p>No build is growing noticeably.</p>"
    style = ("body{font-family:system-ui,sans-serif;margin:2rem;color:#111}table{border-collapse:collapse;"
             "margin:.5rem 0 1.5rem}td,th{border-bottom:1px solid #ddd;padding:.3rem .7rem;text-align:left}"
             "th{background:#f3f4f6}")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p>{result.today} — generated {_local(result.now, result)}</p><h2>Use cases today</h2>{body}"
            f"<h2>Misses (last 7 days)</h2>{miss_html}<h2>Build times growing fastest</h2>{grow_html}"
            "</body></html>\n")


def plain(result: Assessment, title: str) -> str:
    """The report as plain lines, for chat channels and e-mail bodies that do not render tables."""
    lines = [f"{result.today}"]
    for r in rows(result):
        lines.append(f"{SYMBOL.get(r.verdict, '·')} {r.usecase}: {r.verdict}"
                     + (f" ({r.detail})" if r.detail else "") + f"; met {r.attainment}, budget {r.budget_left}")
    missed = misses(result)
    if missed:
        lines.append("Misses in the last 7 days:")
        lines += [f"- {m['usecase']} {m['due']} {m['verdict']} {m['late']}: {m['cause']} (fix: {m['workaround']}) "
                  f"{m['incident']}".rstrip() for m in missed]
    return "\n".join(lines) + "\n"
