"""Running a suite on a relation: describe it, judge the contract, measure everything in one statement,
judge each check, and fetch samples of failing rows for the checks that failed (and only for those).

Statements per table: the columns (metadata), ``EXPLAIN`` of each check that holds user SQL or reads
another table (planning only: an error then names its check), ONE measuring statement, and one per failed
row-level check for its samples. A declaration that does not fit the relation (a column it does not have,
SQL that does not bind) is a :class:`ProjectError` naming the sidecar's file:line, never a silent pass.

The SQL is compiled in DuckDB's dialect and written in the session's (PostgreSQL, Spark) by
``kiban.checks.engine_sql``, so the same checks judge every engine.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from kiban.checks import contract, engine_sql, freshness, volume
from kiban.checks.compiler import ROWS, Compiled, Compiler
from kiban.checks.result import CheckContext, CheckResult, History
from kiban.checks.spec import (
    MODEL_KINDS,
    Contract,
    Expression,
    Freshness,
    Relationships,
    RowCount,
    Sql,
    Volume,
    columns_of,
    row_level,
)
from kiban.checks.suite import THIS, Check, Suite
from kiban.engines.base import Session
from kiban.engines.dialect import QUALIFY_COLUMN
from kiban.errors import KibanError, ProjectError, did_you_mean
from kiban.project import Project
from kiban.status import CheckStatus

if TYPE_CHECKING:
    from kiban.slo.calendar import BusinessCalendar

log = logging.getLogger(__name__)

SAMPLE_TEXT = 200  # characters kept of a long value in a sample
MASK = "•••"


def context(project: Project, history: History | None = None, now: datetime | None = None) -> CheckContext:
    """The context checks of ``project`` run in: its timezone and calendars, ``history`` (earlier
    observations, for volume checks: ``kiban.checks.history.observations``), ``now`` (default: now)."""
    moment = now or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # naive times are UTC, as everywhere in kiban

    def calendar(name: str | None) -> BusinessCalendar:
        from kiban.slo.calendar import calendar_for  # loads `holidays` (~300 modules): only when a check needs it

        return calendar_for(name or project.config.calendar, project.config)

    return CheckContext(now=moment, timezone=ZoneInfo(project.config.timezone), calendar=calendar,
                   history=history or (lambda asset, check: []))


def describe(session: Session, relation: str) -> dict[str, tuple[str, str]]:
    """Lower-case column name → (name, DuckDB type) of ``relation``, on any engine."""
    return engine_sql.describe(session, engine_sql.as_duckdb_relation(relation))


def run_suite(session: Session, relation: str, suite: Suite, ctx: CheckContext) -> list[CheckResult]:
    """Judge ``relation`` (the new or the published version of ``suite.asset``) with every check of ``suite``."""
    relation = engine_sql.as_duckdb_relation(relation)  # compiled as DuckDB SQL, written for the session's engine
    columns = describe(session, relation)
    results: list[CheckResult] = []
    contracts = [c for c in suite.checks if isinstance(c.spec, Contract)]
    for check in contracts:
        results.append(_contract(session, check, suite, columns))
    if any(r.blocks for r in results):
        return results  # a broken contract: the other checks would only trip over the same missing columns
    checks = [c for c in suite.checks if not isinstance(c.spec, Contract) and c.kind not in MODEL_KINDS]
    models = [c for c in suite.checks if c.kind in MODEL_KINDS]  # drift, accuracy: kiban.ml.checks judges them
    if not checks:
        return results + _model_checks(session, relation, models, suite, ctx)
    for check in checks:
        _columns_exist(check, columns)
    compiler = Compiler(relation, columns, ctx.relation_of, one_scan=engine_sql.dialect_of(session) == "spark")
    compiled = compiler.compile(checks)
    for check, part in compiled.parts:  # user SQL and other tables: bind each alone first, so an error names it
        if isinstance(check.spec, Expression | Sql | Relationships):
            try:
                engine_sql.probe(session, part, f"the checks of {suite.asset.key}")
            except engine_sql.not_fitting() as exc:
                raise _not_fitting(check, exc) from None
    row = _measure(session, compiled, suite)
    rows = int(row[ROWS])
    for check in checks:
        results.append(_judge(check, row, compiled, rows, ctx))
    for result, check in zip(results[len(contracts):], checks, strict=True):
        limit = getattr(check.spec, "samples", 0)
        if result.status == CheckStatus.FAIL and limit and row_level(check.spec):
            query = compiler.samples(check, compiled.predicates.get(check.name), limit)
            if query:
                result.samples = _samples(session, query, suite.pii, suite.asset.key)
    return results + _model_checks(session, relation, models, suite, ctx)


def _model_checks(session: Session, relation: str, checks: list[Check], suite: Suite, ctx: CheckContext
                  ) -> list[CheckResult]:
    if not checks:
        return []
    from kiban.ml.checks import judge

    return [judge(session, relation, check, suite, ctx) for check in checks]


def _measure(session: Session, compiled: Compiled, suite: Suite) -> dict[str, Any]:
    what = f"the checks of {suite.asset.key}"
    try:
        names, values = engine_sql.query(session, compiled.sql, what)
    except engine_sql.not_fitting() as exc:
        for check, part in compiled.parts:  # which check? (each in a savepoint on PostgreSQL)
            try:
                engine_sql.savepoint(session, engine_sql.for_engine(
                    part, engine_sql.dialect_of(session), what, getattr(session, "zone", None)))
            except engine_sql.not_fitting() as inner:
                raise _not_fitting(check, inner) from None
            except Exception:  # the engine cannot say more: report the statement's error
                log.debug("checks of %s: no single check to blame", suite.asset.key, exc_info=True)
                break
        raise KibanError(f"the checks of {suite.asset.key} could not run: {_first_line(exc)}",
                         f"look at the checks in {suite.asset.config_path}") from None
    return dict(zip(names, values[0] if values else (), strict=False))


def _judge(check: Check, row: dict[str, Any], compiled: Compiled, rows: int, ctx: CheckContext) -> CheckResult:
    spec = check.spec
    result = CheckResult(check.asset, check.name, check.kind, check.severity, "pass", rows=rows)
    if row_level(spec):
        failures = int(row[compiled.measure[check.name]] or 0)
        allowed = spec.allowed(rows)  # type: ignore[union-attr]
        result.failures = failures
        result.status = CheckStatus.FAIL if failures > allowed else CheckStatus.PASS
        result.detail = _row_detail(check, failures, rows, allowed)
    elif isinstance(spec, RowCount):
        low = spec.min is not None and rows < spec.min
        high = spec.max is not None and rows > spec.max
        result.status = CheckStatus.FAIL if low or high else CheckStatus.PASS
        bounds = " and ".join(p for p in (f"at least {spec.min:,}" if spec.min is not None else "",
                                          f"at most {spec.max:,}" if spec.max is not None else "") if p)
        result.detail = f"{rows:,} rows; expected {bounds}"
        result.observed = {"rows": rows}
    elif isinstance(spec, Freshness):
        newest = row[compiled.measure[check.name]]
        amount, unit = spec.age
        calendar = ctx.calendar(spec.calendar) if unit == "business_days" else None
        verdict = freshness.judge(newest, amount, unit, ctx.now, ctx.timezone, calendar)
        result.status = CheckStatus.PASS if verdict.fresh else CheckStatus.FAIL
        result.detail = verdict.detail
        result.observed = {"newest": _json_value(newest), "age_s": verdict.age_s}
    elif isinstance(spec, Volume):
        _volume(result, check, spec, row, compiled, rows, ctx)
    return result


def _volume(result: CheckResult, check: Check, spec: Volume, row: dict[str, Any], compiled: Compiled, rows: int,
            ctx: CheckContext) -> None:
    observed: dict[str, Any] = {"rows": rows}
    if spec.sum:
        total = row[compiled.measure[check.name] + "_sum"]
        observed["sum"] = float(total) if total is not None else None
    result.observed = observed
    past = ctx.history(check.asset, check.name)
    today = ctx.today
    details, anomalies = [], []
    for measure, label in (("rows", "rows"), ("sum", f"sum of {spec.sum}")):
        value = observed.get(measure)
        if measure not in observed or value is None:
            continue
        series = [(d, float(o[measure])) for d, o in past if o.get(measure) is not None]
        verdict = volume.judge(series, today, float(value), window=spec.window, min_history=spec.min_history,
                               threshold=spec.threshold, direction=spec.direction)
        if verdict.learning:
            details.append(f"{label} {_num(value)}: learning ({verdict.history} of {spec.min_history} days of "
                           "history)")
            continue
        assert verdict.expected is not None and verdict.score is not None
        change = (value / verdict.expected - 1) * 100 if verdict.expected else 0.0
        text = (f"{label} {_num(value)}, usual for a {today.strftime('%A')} {_num(verdict.expected)} "
                f"({change:+.0f}%, score {verdict.score:+.1f}, threshold ±{spec.threshold:g})")
        details.append(text)
        if verdict.anomaly:
            anomalies.append(label)
    result.status = CheckStatus.FAIL if anomalies else CheckStatus.PASS
    result.detail = "; ".join(details)


def _contract(session: Session, check: Check, suite: Suite, columns: dict[str, tuple[str, str]]) -> CheckResult:
    spec = check.spec
    assert isinstance(spec, Contract)
    declared = [(c.name, c.type) for c in suite.asset.config.columns]

    types_of = session if engine_sql.dialect_of(session) == engine_sql.DUCKDB else engine_sql.TypeSession()

    def resolve(types: list[str]) -> list[str]:
        try:
            row = types_of.execute("SELECT " + ", ".join(f"typeof(CAST(NULL AS {t}))" for t in types))[0]
        except engine_sql.not_fitting():
            for t in types:
                try:
                    types_of.execute(f"SELECT CAST(NULL AS {t})")
                except engine_sql.not_fitting():
                    raise check.error(f"the contract declares the type '{t}', which DuckDB does not know") from None
            raise
        return [str(v) for v in row]

    breaches = contract.compare(declared, columns, spec.strict, resolve)
    result = CheckResult(check.asset, check.name, check.kind, check.severity, "fail" if breaches else "pass")
    result.failures = len(breaches) if breaches else None
    result.detail = ("breaking: " + "; ".join(map(str, breaches))) if breaches else \
        f"{len(declared)} declared columns present" + (", nothing else" if spec.strict else "")
    return result


def _columns_exist(check: Check, columns: dict[str, tuple[str, str]]) -> None:
    """Every column a check names must be a column of the relation (checked before any SQL runs)."""
    wanted = list(columns_of(check.spec))
    spec = check.spec
    if isinstance(spec, Volume) and spec.sum:
        wanted.append(spec.sum)
    if isinstance(spec, Expression):
        wanted += check.sql_columns
    for name in wanted:
        if name.lower() not in columns:
            known = [n for n, _ in columns.values()]
            raise check.error(f"{check.asset} has no column '{name}'",
                              did_you_mean(name, known) or f"its columns: {', '.join(known)}")
    if isinstance(spec, Freshness):
        kind = columns[(spec.column or "").lower()][1].upper()
        if not kind.startswith(("DATE", "TIMESTAMP")):
            raise check.error(f"freshness needs a date or timestamp column; {spec.column} is {kind}")


def _not_fitting(check: Check, exc: Exception) -> ProjectError:
    text = _first_line(exc)
    if isinstance(check.spec, Relationships):
        if "does not exist" in text and "Table" in text:  # never built: the check cannot judge the keys yet
            return check.error(f"relationships to {check.target}, which has not been built yet: {text}",
                               f"build it first (kiban run {check.target}), or select it in the same run")
        return check.error(f"relationships to {check.target}: {text}",
                           f"is {check.target} built, and does it have that column?")
    hint = "in a sql check, the table being checked is `this`" if isinstance(check.spec, Sql) \
        and THIS not in text else None
    return check.error(f"the SQL does not run: {text}", hint)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().split("\n")[0]


def _row_detail(check: Check, failures: int, rows: int, allowed: int) -> str:
    spec = check.spec
    if failures == 0:
        return f"0 of {rows:,} rows"
    what = {"not_null": "are null", "unique": "repeat a key another row has", "accepted_values":
            "hold other values", "range": "are out of range", "pattern": "do not match",
            "expression": "fail the condition", "sql": "returned by the query"}.get(spec.kind, "fail")
    if isinstance(spec, Relationships):
        what = f"have no match in {check.target}.{spec.target_column or spec.column}"
    text = f"{failures:,} of {rows:,} rows {what}"
    if allowed:
        text += f" (tolerated: {allowed:,})"
    return text


def _samples(session: Session, query: str, pii: frozenset[str], asset: str) -> list[dict[str, Any]]:
    names, rows = engine_sql.query(session, query, f"the checks of {asset}")
    return [{n: (mask(v) if n.lower() in pii else _json_value(v)) for n, v in zip(names, r, strict=True)
             if not n.startswith(QUALIFY_COLUMN)} for r in rows]


def mask(value: Any) -> Any:
    """A pii value as it may be stored: one constant (``•••``), whatever the value, as the console masks it.
    Not even its shape is kept (length and form tell who it is often enough); the row's other columns and its
    key say which row failed, and a person cleared for the column reads it in the console."""
    return None if value is None else MASK


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal | timedelta):
        return str(value)
    if isinstance(value, bytes):
        return value[:SAMPLE_TEXT // 2].hex()
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= SAMPLE_TEXT else text[:SAMPLE_TEXT] + "…"


def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:,.2f}"

