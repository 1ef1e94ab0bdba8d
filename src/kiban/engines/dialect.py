"""Models are written in DuckDB's SQL; other engines get them transpiled by SQLGlot.

A construct the target cannot express is an error that names the model and the construct — never a
silently different query. Unqualified table names are qualified with their layer on the way, because the
other engines have no DuckDB search path to find ``orders`` in ``warehouse``.
"""

from __future__ import annotations

from collections.abc import Mapping

from kiban.errors import KibanError


def transpile(sql: str, target: str, model: str, layers: Mapping[str, str] | None = None) -> str:
    """``sql`` (DuckDB dialect) as one statement of ``target`` ('postgres', 'spark').

    ``model`` names the model in errors; ``layers`` maps bare table names to their layer (``orders`` →
    ``warehouse``) so unqualified references find their table.
    """
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ErrorLevel, ParseError, UnsupportedError

    try:
        trees = [t for t in sqlglot.parse(sql, read="duckdb") if t is not None]
    except ParseError as exc:
        raise KibanError(f"{model}: SQLGlot cannot parse the model: {_first_line(exc)}",
                         "the model must be valid DuckDB SQL") from None
    if len(trees) != 1:
        raise KibanError(f"{model}: a model is one SELECT statement, found {len(trees)} statements")
    tree = trees[0]
    if layers:
        ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
        for table in tree.find_all(exp.Table):
            name = table.name.lower()
            if not table.args.get("db") and name not in ctes and name in layers:
                table.set("db", exp.to_identifier(layers[name]))
    for join in tree.find_all(exp.Join):
        if str(join.args.get("method") or "").upper() == "ASOF":  # SQLGlot writes it through; no target runs it
            raise KibanError(f"{model}: ASOF JOIN has no {_engine(target)} equivalent",
                             "rewrite it as a join on a window (e.g. the latest row per key before the time), "
                             "or keep this model on the DuckDB engine")
    try:
        return tree.sql(dialect=target, unsupported_level=ErrorLevel.RAISE)
    except UnsupportedError as exc:
        raise KibanError(f"{model}: {_first_line(exc)} — this construct has no {_engine(target)} equivalent",
                         "rewrite it with portable SQL, or keep this model on the DuckDB engine") from None


def _engine(target: str) -> str:
    return {"postgres": "PostgreSQL", "spark": "Spark SQL"}.get(target, target)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
