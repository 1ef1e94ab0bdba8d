"""``kiban models``: the model registry — list models, show a model's versions, compare two versions."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kiban.cli import State, app
from kiban.cli.output import JsonOpt
from kiban.status import ModelStatus

if TYPE_CHECKING:
    from kiban.ml.registry import ModelVersion, Registry

models_app = typer.Typer(help="Trained models: versions, metrics, promotion decisions.", no_args_is_help=True)
app.add_typer(models_app, name="models")

STATUS_STYLE = {"current": "green", "rejected": "red", "retired": "dim"}


def _registry() -> tuple[Registry, str]:
    from kiban.ml.registry import open_registry
    from kiban.project.loader import find_project_root, load_project

    project = load_project(find_project_root(State.project_dir))
    return open_registry(project.root), project.config.timezone


def _model(registry: Registry, name: str) -> str:
    from kiban.errors import UsageError, did_you_mean

    known = registry.models()
    if name in known:
        return name
    matches = [k for k in known if k.split(".", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0]
    raise UsageError(f"no model named '{name}' in the registry",
                     did_you_mean(name, known) or (f"models: {', '.join(known)}" if known
                                                   else "train one with `kiban run` (an @kiban.train asset)"))


def _version_json(v: ModelVersion) -> dict[str, Any]:
    from kiban.cli.output import utc_iso

    return {"version": v.version, "status": v.status, "metric": v.metric, "metric_value": v.metric_value,
            "direction": v.direction, "metrics": v.metrics, "params": v.params, "trained_at": utc_iso(v.trained_at),
            "reason": v.reason, "data_fingerprint": v.data_fingerprint, "artefact": v.artefact, "sha256": v.sha256}


def _status(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def _value(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


@models_app.command("list")
def list_models(as_json: JsonOpt = False) -> None:
    """Every model: its current version and how it scores."""
    from rich.table import Table

    from kiban.cli.output import console, emit_json, local_time, utc_iso

    registry, tz = _registry()
    try:
        versions = registry.versions()
    finally:
        registry.store.close()
    if as_json:
        grouped: dict[str, list[ModelVersion]] = {}
        for v in versions:
            grouped.setdefault(v.model, []).append(v)
        emit_json({"models": [{
            "model": model, "current": next((v.version for v in rows if v.status == ModelStatus.CURRENT), None),
            "metric": rows[-1].metric,
            "value": next((v.metric_value for v in rows if v.status == ModelStatus.CURRENT), None),
            "versions": len(rows), "rejected": sum(v.status == ModelStatus.REJECTED for v in rows),
            "last_trained": utc_iso(rows[-1].trained_at)} for model, rows in grouped.items()]})
        return
    if not versions:
        console.print("no trained models yet (declare one with @kiban.train and run `kiban run`)")
        return
    table = Table(box=None, header_style="bold")
    for column in ("model", "current", "metric", "value", "versions", "rejected", "last trained"):
        table.add_column(column, no_wrap=column in ("model", "last trained"))
    by_model: dict[str, list[ModelVersion]] = {}
    for v in versions:
        by_model.setdefault(v.model, []).append(v)
    for model, rows in by_model.items():
        current = next((v for v in rows if v.status == ModelStatus.CURRENT), None)
        last = rows[-1]
        table.add_row(model, f"v{current.version}" if current else "[red]none[/]", last.metric,
                      _value(current.metric_value) if current else "—", str(len(rows)),
                      str(sum(v.status == ModelStatus.REJECTED for v in rows)), local_time(last.trained_at, tz))
    console.print(table)


@models_app.command("show")
def show(
    model: Annotated[str, typer.Argument(help="The model (its training asset): warehouse.demand_model or "
                                         "demand_model.")],
    version: Annotated[int | None, typer.Option("--version", "-v", help="Details of this version "
                                                "(default: the current one).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """A model's versions, and the details of one (default: the current one)."""
    from rich.table import Table

    from kiban.cli.output import console, emit_json, local_time
    from kiban.errors import UsageError

    registry, tz = _registry()
    try:
        key = _model(registry, model)
        versions = registry.versions(key)
    finally:
        registry.store.close()
    if version is not None and all(v.version != version for v in versions):
        raise UsageError(f"{key} has no version {version}",
                         f"versions: {', '.join(f'v{v.version}' for v in versions)}")
    if as_json:
        emit_json({"model": key, "versions": [_version_json(v) for v in versions]})
        return
    table = Table(box=None, header_style="bold", title=f"[bold]{key}[/]", title_justify="left")
    metrics = {v.metric for v in versions}  # the decisive metric may have changed between versions
    one = len(metrics) == 1
    for column in ("version", "status", versions[0].metric if one else "metric", "trained", "reason"):
        table.add_column(column)
    for v in versions:
        table.add_row(f"v{v.version}", _status(v.status), _value(v.metric_value) if one else
                      f"{v.metric} {_value(v.metric_value)}", local_time(v.trained_at, tz), v.reason or "")
    console.print(table)
    chosen = next((v for v in versions if v.version == version), None) if version is not None else \
        next((v for v in versions if v.status == ModelStatus.CURRENT), versions[-1])
    if chosen is None:
        raise UsageError(f"{key} has no version {version}",
                         f"versions: {', '.join(f'v{v.version}' for v in versions)}")
    console.print(f"\n[bold]v{chosen.version}[/] ({_status(chosen.status)})")
    details: list[tuple[str, Any]] = [
        ("metrics", ", ".join(f"{k}={_value(v)}" for k, v in chosen.metrics.items())),
        ("params", json.dumps(chosen.params, ensure_ascii=False)),
        ("training data", chosen.data_fingerprint[:16]),
        ("artefact", f".kiban/models/{chosen.artefact}  sha256 {chosen.sha256[:16]}…"),
        ("features kept", ", ".join(chosen.baseline) or "none (Trained(features=…) not given)"),
    ]
    for label, text in details:
        console.print(f"  [bold]{label:<14}[/] {text}")


@models_app.command("compare")
def compare(
    model: Annotated[str, typer.Argument(help="The model (its training asset).")],
    first: Annotated[int | None, typer.Argument(help="A version (default: the current one).")] = None,
    second: Annotated[int | None, typer.Argument(help="Another version (default: the newest).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Two versions side by side: metrics, parameters, training data."""
    from rich.table import Table

    from kiban.cli.output import console
    from kiban.errors import UsageError

    registry, _ = _registry()
    try:
        key = _model(registry, model)
        versions = {v.version: v for v in registry.versions(key)}
    finally:
        registry.store.close()
    current = next((v.version for v in versions.values() if v.status == ModelStatus.CURRENT), None)
    a_no = first if first is not None else (current or min(versions))
    b_no = second if second is not None else max(versions)
    for number in (a_no, b_no):
        if number not in versions:
            raise UsageError(f"{key} has no version {number}", f"versions: {', '.join(f'v{n}' for n in versions)}")
    a, b = versions[a_no], versions[b_no]
    if as_json:
        from kiban.cli.output import emit_json

        emit_json({"model": key, "a": _version_json(a), "b": _version_json(b)})
        return
    table = Table(box=None, header_style="bold", title=f"[bold]{key}[/]: v{a_no} vs v{b_no}", title_justify="left")
    for column in ("", f"v{a_no}", f"v{b_no}", "change"):
        table.add_column(column)
    table.add_row("status", _status(a.status), _status(b.status), "")
    for name in sorted(set(a.metrics) | set(b.metrics)):
        x, y = a.metrics.get(name), b.metrics.get(name)
        change = f"{y - x:+.4g}" if x is not None and y is not None else ""
        if name == a.metric and x is not None and y is not None and x != y:
            better = (y < x) == (a.direction == "min")
            change += " [green](better)[/]" if better else " [red](worse)[/]"
        table.add_row(f"{name}{' *' if name == a.metric else ''}", _value(x), _value(y), change)
    for name in sorted(set(a.params) | set(b.params)):
        x, y = a.params.get(name), b.params.get(name)
        table.add_row(f"param {name}", str(x), str(y), "" if x == y else "changed")
    table.add_row("training data", a.data_fingerprint[:12], b.data_fingerprint[:12],
                  "same" if a.data_fingerprint == b.data_fingerprint else "changed")
    console.print(table)
    console.print(f"* decides promotion ({'lower' if a.direction == 'min' else 'higher'} is better)")
