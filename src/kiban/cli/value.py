"""CLI for initiatives and their measured value: ``kiban initiatives`` (list, show, measure) and ``kiban value``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from kiban.cli import State, app
from kiban.cli.output import JsonOpt, console, emit_json, utc_iso
from kiban.cli.web import VALUE_MODULES, need_extra

initiatives_app = typer.Typer(help="Initiatives: what the data is used for, and the effect it had, measured.",
                              invoke_without_command=True)
app.add_typer(initiatives_app, name="initiatives")


def _load() -> tuple[Any, Any]:
    from kiban.graph import build_graph
    from kiban.project import load_project

    project = load_project(State.project_dir)
    return project, build_graph(project)


def _initiative(project: Any, name: str) -> Any:
    from kiban.errors import UsageError, did_you_mean

    found = project.initiatives.get(name)
    if found is None:
        raise UsageError(f"no initiative '{name}'", did_you_mean(name, project.initiatives)
                         or "initiatives are initiatives/NAME.yml (see docs/initiatives.md)")
    return found


def money(value: float, currency: str = "") -> str:
    if not math.isfinite(value):
        return "unbounded"
    sign = "-" if value < 0 else ""
    value = abs(value)
    text = f"{value / 1e6:,.2f}M" if value >= 1e6 else f"{value / 1e3:,.1f}k" if value >= 1e4 else f"{value:,.0f}"
    return f"{sign}{text}{(' ' + currency) if currency else ''}"


@initiatives_app.callback()
def initiatives_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every initiative: status, owner, KPI, and its latest measured value."""
    if ctx.invoked_subcommand is not None:
        return
    from kiban.store import Store
    from kiban.value.ledger import latest

    project, _ = _load()
    store = Store(project.state_url)
    try:
        newest = latest(store, project.name)
    finally:
        store.close()
    if as_json:
        emit_json([{"name": name, "status": i.config.status, "owner": i.config.owner, "question": i.config.question,
                    "kpi": i.config.kpi.name if i.config.kpi else None,
                    "value_per_month": dict(zip(("estimate", "low", "high"), newest[name].per_month, strict=True))
                    if name in newest else None} for name, i in sorted(project.initiatives.items())])
        return
    if not project.initiatives:
        console.print("no initiatives yet: describe one in initiatives/NAME.yml (see docs/initiatives.md)")
        return
    table = Table(box=None, header_style="bold", title="initiatives", title_justify="left")
    for col in ("initiative", "status", "owner", "kpi", "value / month (95% CI)", "measured"):
        table.add_column(col)
    for name, i in sorted(project.initiatives.items()):
        entry = newest.get(name)
        value = "-"
        if entry is not None:
            est, low, high = entry.per_month
            value = f"{money(est, i.config.currency)} ({money(low)} – {money(high)})"
        table.add_row(escape(name), i.config.status, escape(i.config.owner or "-"),
                      escape(i.config.kpi.name if i.config.kpi else "-"), value,
                      entry.measured_at.strftime("%Y-%m-%d") if entry else "never")
    console.print(table)


@initiatives_app.command("show")
def initiatives_show(name: Annotated[str, typer.Argument(help="The initiative (initiatives/NAME.yml).")],
                     as_json: JsonOpt = False) -> None:
    """One initiative: question, hypothesis, people, what it relies on, and its measurements over time."""
    from kiban.store import Store
    from kiban.value.ledger import history

    project, _ = _load()
    initiative = _initiative(project, name)
    store = Store(project.state_url)
    try:
        entries = history(store, project.name, name)
    finally:
        store.close()
    cfg = initiative.config
    if as_json:
        emit_json({"name": name, **cfg.model_dump(mode="json"),
                   "measurements": [{"measured_at": utc_iso(e.measured_at), "method": e.method,
                                     "estimate": e.estimate, "low": e.low, "high": e.high, "value": e.value,
                                     "value_low": e.value_low, "value_high": e.value_high,
                                     "data_through": e.data_through} for e in entries]})
        return
    console.print(f"[bold]{escape(name)}[/] ({cfg.status}) — {escape(cfg.question)}")
    if cfg.hypothesis:
        console.print(f"  hypothesis: {escape(cfg.hypothesis)}")
    console.print(f"  owner: {escape(cfg.owner or '-')}   sponsor: {escape(cfg.sponsor or '-')}")
    console.print(f"  relies on: use cases {', '.join(cfg.usecases) or '-'}; assets {', '.join(cfg.assets) or '-'}")
    if cfg.kpi is not None:
        measure = escape(cfg.kpi.measure or "unit")
        console.print(f"  KPI: {escape(cfg.kpi.name)} ({measure}) per {escape(cfg.unit)} and day; "
                      f"worth {cfg.value_per_unit:g} {escape(cfg.currency)} per {measure}")
    if cfg.intervention is not None:
        iv = cfg.intervention
        control = len(iv.control) or ("the other" if iv.treated else "no")
        console.print(f"  intervention: from {iv.start}" + (f" to {iv.end}" if iv.end else "")
                      + f"; {len(iv.treated) or 'all'} treated, {control} control {cfg.unit}s; design {iv.method}")
    if cfg.decision:
        console.print(f"  decision: {escape(cfg.decision)}")
    if entries:
        table = Table(box=None, header_style="bold", title="measurements", title_justify="left")
        for col in ("measured", "data through", "method", "effect / unit / day (95% CI)", "value (95% CI)"):
            table.add_column(col)
        for e in entries:
            table.add_row(e.measured_at.strftime("%Y-%m-%d %H:%M"), str(e.data_through), e.method,
                          f"{e.estimate:,.4g} ({e.low:,.4g} – {e.high:,.4g})",
                          f"{money(e.value, cfg.currency)} ({money(e.value_low)} – {money(e.value_high)})")
        console.print(table)
    else:
        console.print(f"  not measured yet: kiban initiatives measure {escape(name)}")


@initiatives_app.command("measure")
def initiatives_measure(
    name: Annotated[str, typer.Argument(help="The initiative (initiatives/NAME.yml).")],
    svg: Annotated[Path | None, typer.Option("--svg", help="Also write the chart actual vs counterfactual.")] = None,
    record: Annotated[bool, typer.Option("--record/--no-record",
                                         help="Add the measurement to the value ledger (default).")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Measure the initiative's effect on its KPI from the published data, with a 95% interval and its assumptions."""
    need_extra("initiatives measure", "value", VALUE_MODULES)
    from kiban.store import Store
    from kiban.value.ledger import record as add
    from kiban.value.measure import measure_initiative

    project, graph = _load()
    initiative = _initiative(project, name)
    result = measure_initiative(project, initiative, readable=graph.readable)
    if record:
        store = Store(project.state_url)
        try:
            add(store, project.name, result)
        finally:
            store.close()
    if svg is not None:
        from kiban.web.svg import measurement_chart

        svg.write_text(measurement_chart(result), encoding="utf-8")
    if as_json:
        emit_json(result.as_dict())
        return
    print_measurement(result)


def print_measurement(result: Any) -> None:
    e = result.effect
    unit = f" {result.measure_unit}" if result.measure_unit else ""
    value, low, high = result.value
    console.print(f"[bold]{escape(result.initiative)}[/]: {escape(result.kpi)}, {result.data_from} … "
                  f"{result.data_through}, design [bold]{e.method}[/] ({e.treated_units} treated, "
                  f"{e.control_units} control; {e.pre_days} days before, {e.post_days} after)")
    rel = f" ({e.relative:+.1%} of the baseline {e.baseline:,.4g}{unit})" if e.relative is not None else ""
    console.print(f"  effect per unit and day: [bold]{e.estimate:+,.4g}{unit}[/]{rel}, "
                  f"{e.level:.0%} interval {e.low:+,.4g} … {e.high:+,.4g}, p = {e.p_value:.3g}")
    console.print(f"  value over {e.unit_days:,} unit-days: [bold]{money(value, result.currency)}[/] "
                  f"({money(low)} … {money(high)}); per month {money(result.value_per_month[0], result.currency)}")
    verdict = ("the interval excludes zero: the data show an effect" if e.excludes_zero
               else "the interval includes zero: the data do not show an effect of this size")
    console.print(f"  {verdict}")
    if e.pre_fit:
        console.print("  pre-period fit: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                                        for k, v in e.pre_fit.items()))
    console.print("  assumptions:")
    for text in e.assumptions:
        console.print(f"    - {escape(text)}")
    for text in e.notes:
        console.print(f"  note: {escape(text)}")


@app.command("value")
def value_ledger(
    by: Annotated[str, typer.Option("--by", help="usecase or asset")] = "usecase",
    as_json: JsonOpt = False,
) -> None:
    """The value ledger: per use case (or asset), the value of the initiatives relying on it, next to its
    service level, build time, storage and usage."""
    from kiban.errors import UsageError
    from kiban.store import Store
    from kiban.value.ledger import holdings

    if by not in ("usecase", "asset"):
        raise UsageError(f"--by {by}: use usecase or asset")
    project, graph = _load()
    store = Store(project.state_url)
    try:
        usecases, assets = holdings(project, graph, store)
    finally:
        store.close()
    rows = usecases if by == "usecase" else assets
    if as_json:
        emit_json([h.as_dict() for h in rows])
        return
    currency = next((i.config.currency for i in project.initiatives.values() if i.config.currency), "")
    table = Table(box=None, header_style="bold", title=f"value ledger by {by}", title_justify="left")
    for col in (by, "initiatives", "value / month", "service level", "build p50", "rows", "reads 30d"):
        table.add_column(col, justify="right" if col not in (by, "initiatives") else "left")
    for h in rows:
        table.add_row(escape(h.name), escape(", ".join(h.initiatives) or "-"),
                      money(h.value_per_month, currency) if h.measured else "-",
                      f"{h.service_level:.0%}" if h.service_level is not None else "-",
                      f"{h.build_seconds:.1f}s" if h.build_seconds is not None else "-",
                      f"{h.storage_rows:,}" if h.storage_rows is not None else "-", str(h.reads_30d))
    console.print(table)
