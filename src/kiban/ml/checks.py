"""Checks of models, judged like any other check (severity, recorded results, a blocking failure keeps the
old version): ``drift`` — the checked table's features against the training data of a model's current version;
``accuracy`` — predictions against the actuals that have arrived since.

Declared in a sidecar like every check::

    checks:
      - drift: {model: warehouse.demand_model, psi: 0.25, ks: 0.3}
        severity: warn
      - accuracy: {actuals: warehouse.daily_demand, on: [sales_date, store_id, product_id],
                   predicted: forecast_qty, actual: quantity, metric: mape, max: 0.5}
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from kiban.checks import engine_sql
from kiban.checks.quoting import quote
from kiban.checks.result import CheckContext, CheckResult
from kiban.checks.spec import Accuracy, Drift
from kiban.errors import did_you_mean
from kiban.ml import drift
from kiban.project.loader import find_project_root
from kiban.status import CheckStatus

if TYPE_CHECKING:
    from kiban.checks.suite import Check, Suite
    from kiban.engines.base import Session


def judge(session: Session, relation: str, check: Check, suite: Suite, ctx: CheckContext) -> CheckResult:
    spec = check.spec
    relation = engine_sql.as_duckdb_relation(relation)  # the SQL below is DuckDB's, compiled for the engine
    if isinstance(spec, Drift):
        return _drift(session, relation, check, spec, suite)
    assert isinstance(spec, Accuracy)
    return _accuracy(session, relation, check, spec, ctx)


def _columns(session: Session, relation: str) -> dict[str, str]:
    """Lower-case name → name of the relation's columns, asked the engine's way (issue 18: not ``DESCRIBE`` on
    PostgreSQL)."""
    return {lower: name for lower, (name, _kind) in engine_sql.describe(session, relation).items()}


def _drift(session: Session, relation: str, check: Check, spec: Drift, suite: Suite) -> CheckResult:
    from kiban.ml.registry import open_registry

    registry = open_registry(find_project_root(suite.asset.path.parent))
    try:
        known = registry.models()
        model = spec.model if spec.model in known else next(
            (k for k in known if k.split(".", 1)[-1] == spec.model), spec.model)
        current = registry.current(model)
    finally:
        registry.store.close()
    result = CheckResult(check.asset, check.name, check.kind, check.severity, "pass")
    if current is None:
        result.status = CheckStatus.FAIL
        result.detail = f"{model} has no current version to compare with" + (
            "" if model in known else f" ({did_you_mean(model, known) or 'no such model in the registry'})")
        return result
    if not current.baseline:
        raise check.error(f"{model} v{current.version} kept no training distribution",
                          "return kiban.Trained(model, metrics, params, features=<the training features>)")
    present = _columns(session, relation)
    if spec.columns:
        for name in spec.columns:
            if name.lower() not in present:
                raise check.error(f"{check.asset} has no column '{name}'", did_you_mean(name, list(present.values())))
            if name not in current.baseline:
                raise check.error(f"{model} v{current.version} kept no distribution of '{name}'",
                                  f"features it kept: {', '.join(current.baseline)}")
        wanted = list(spec.columns)
    else:
        wanted = [c for c in current.baseline if c.lower() in present]
        if not wanted:
            raise check.error(f"{check.asset} has none of the features of {model} ({', '.join(current.baseline)})")
    columns = _values(session, f"SELECT {', '.join(quote(present[c.lower()]) for c in wanted)} FROM {relation}")
    observed: dict[str, Any] = {}
    parts: list[str] = []
    drifted: list[str] = []
    for i, name in enumerate(wanted):
        values = columns[i] if i < len(columns) else []
        psi, ks = drift.psi(current.baseline[name], values), drift.ks(current.baseline[name], values)
        observed[name] = {"psi": _finite(psi), "ks": _finite(ks)}
        over = (math.isfinite(psi) and psi > spec.psi) or (spec.ks is not None and math.isfinite(ks) and ks > spec.ks)
        if over:
            drifted.append(name)
        parts.append(f"{name}: PSI {psi:.3f}, KS {ks:.3f}" + (" (drifted)" if over else ""))
    result.rows = len(columns[0]) if columns else 0
    result.observed = {"model": model, "version": current.version, "columns": observed}
    result.status = CheckStatus.FAIL if drifted else CheckStatus.PASS
    limits = f"PSI ≤ {spec.psi:g}" + (f", KS ≤ {spec.ks:g}" if spec.ks is not None else "")
    result.detail = (f"{len(drifted)} of {len(wanted)} features drifted from {model} v{current.version}'s training "
                     f"data ({limits}) — " if drifted else f"against {model} v{current.version} ({limits}): ") \
        + "; ".join(parts)
    return result


def _accuracy(session: Session, relation: str, check: Check, spec: Accuracy, ctx: CheckContext) -> CheckResult:
    actuals = engine_sql.as_duckdb_relation(ctx.relation_of(spec.actuals))
    error = f"abs(a.{quote(spec.actual)} - p.{quote(spec.predicted)})"
    join = " AND ".join(f"p.{quote(c)} = a.{quote(c)}" for c in spec.on)
    measure = {"mape": f"avg({error} / abs(a.{quote(spec.actual)})) FILTER (WHERE a.{quote(spec.actual)} <> 0)",
               "wape": f"sum({error}) / nullif(sum(abs(a.{quote(spec.actual)})), 0)",
               "mae": f"avg({error})", "rmse": f"sqrt(avg(({error}) * ({error})))"}[spec.metric]
    sql = (f"SELECT count(*), {measure} FROM {relation} AS p JOIN {actuals} AS a ON {join} "
           f"WHERE a.{quote(spec.actual)} IS NOT NULL AND p.{quote(spec.predicted)} IS NOT NULL")
    try:
        text = engine_sql.for_engine(sql, engine_sql.dialect_of(session), check.name, getattr(session, "zone", None))
        matched, value = engine_sql.savepoint(session, text)[0]  # PostgreSQL: a failure leaves the publish usable
    except engine_sql.not_fitting() as exc:
        raise check.error(f"cannot compare with {spec.actuals}: {str(exc).strip().splitlines()[0]}",
                          f"does {spec.actuals} have the columns {', '.join((*spec.on, spec.actual))}?") from None
    result = CheckResult(check.asset, check.name, check.kind, check.severity, "pass", rows=int(matched))
    result.observed = {"metric": spec.metric, "value": _finite(value), "matched": int(matched)}
    if not matched or value is None:
        result.detail = f"no actuals yet in {spec.actuals} for these predictions"
        return result
    value = float(value)
    percent = spec.metric in ("mape", "wape")
    shown = f"{value:.1%}" if percent else f"{value:.4g}"
    limit = f"{spec.max:.1%}" if percent else f"{spec.max:g}"
    result.status = CheckStatus.FAIL if value > spec.max else CheckStatus.PASS
    result.detail = f"{spec.metric.upper()} {shown} over {int(matched):,} predictions with actuals (max {limit})"
    return result


def _values(session: Session, sql: str) -> list[Any]:
    """The result's columns (as numpy arrays from DuckDB: no Python object per value)."""
    cursor = getattr(session, "cursor", None)
    if cursor is not None:
        result = cursor.execute(sql).fetchnumpy()
        return [result[name] for name in result]
    rows = engine_sql.execute(session, sql, "drift")
    return [list(column) for column in zip(*rows, strict=True)] if rows else []


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


__all__ = ["judge"]
