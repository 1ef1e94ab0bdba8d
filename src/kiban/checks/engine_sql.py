"""Checks on every engine: the suite is compiled once in DuckDB's SQL, then written in the session's dialect.

``kiban.checks.compiler`` writes DuckDB SQL (double-quoted identifiers, ``regexp_full_match``, ``ANTI JOIN``,
``QUALIFY``). A PostgreSQL or Spark session gets every statement transpiled by ``kiban.engines.dialect`` —
the same rewrites models get, so a check means on PostgreSQL what it means on DuckDB — and its metadata
read the engine's way (no ``DESCRIBE`` on PostgreSQL). Column types are reported in DuckDB's spelling
whatever the engine, so a contract (``type: TIMESTAMP WITH TIME ZONE``) judges every engine alike.

A failing probe on PostgreSQL would abort the publishing transaction; probes run inside a savepoint.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, cast

import duckdb

from kiban.checks.result import NOT_FITTING
from kiban.engines.base import Session
from kiban.engines.dialect import transpile
from kiban.errors import KibanError

DUCKDB = "duckdb"
_TYPES: list[duckdb.DuckDBPyConnection] = []  # resolves type names to DuckDB's canonical spelling (no data, in
_TYPES_LOCK = threading.Lock()  # memory); made on first use: a second database and its threads cost every command


def _types() -> duckdb.DuckDBPyConnection:
    """The type-resolving connection (call with _TYPES_LOCK held)."""
    if not _TYPES:
        _TYPES.append(duckdb.connect())
    return _TYPES[0]


def dialect_of(session: Session) -> str:
    """``duckdb``, ``postgres`` or ``spark``: the SQL the session speaks."""
    return str(getattr(session, "dialect", DUCKDB))


def not_fitting() -> tuple[type[Exception], ...]:
    """Errors of every engine that mean "this SQL does not fit the table" (not I/O, not an interruption).

    Evaluated where an error is matched (``except not_fitting():``), so no engine's client is imported for it: an
    error of a client that was never loaded cannot have been raised."""
    errors: list[type[Exception]] = [*NOT_FITTING, KibanError]  # KibanError: a construct the engine cannot express
    pg = sys.modules.get("psycopg.errors")
    if pg is not None:
        errors += [pg.SyntaxErrorOrAccessRuleViolation, pg.DataError, pg.FeatureNotSupported]
    spark = sys.modules.get("pyspark.errors")
    if spark is not None:
        errors += [spark.AnalysisException, spark.ParseException]
    return tuple(errors)


def as_duckdb_relation(relation: str) -> str:
    """A relation name as DuckDB's SQL writes it (Spark hands over backquoted names)."""
    if not relation.startswith("`"):
        return relation
    from sqlglot import exp, parse_one

    return parse_one(relation, read="spark", into=exp.Table).sql("duckdb", identify=True)


def for_engine(sql: str, dialect: str, what: str, zone: str | None = None) -> str:
    """``sql`` (DuckDB) as the session's dialect; ``what`` names the checks in errors."""
    if dialect == DUCKDB:
        return sql

    return transpile(sql, dialect, what, zone=zone)


def execute(session: Session, sql: str, what: str) -> list[tuple[Any, ...]]:
    return session.execute(for_engine(sql, dialect_of(session), what, getattr(session, "zone", None)))


def query(session: Session, sql: str, what: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run ``sql`` (DuckDB's SQL); its column names and rows."""
    dialect = dialect_of(session)
    if dialect == DUCKDB:
        result = cast(Any, session).cursor.execute(sql)
        return [d[0] for d in result.description], result.fetchall()
    names, rows = cast(Any, session).query(for_engine(sql, dialect, what, getattr(session, "zone", None)))
    return list(names), rows


def probe(session: Session, sql: str, what: str) -> None:
    """Plan ``sql`` without running it: raises the engine's error when it does not bind."""
    dialect = dialect_of(session)
    text = for_engine(sql, dialect, what, getattr(session, "zone", None))
    if dialect == DUCKDB:
        session.execute("EXPLAIN " + text)
    elif dialect == "spark":
        cast(Any, session).ensure(text)  # the tables it reads registered first (SparkEngine._ensure)
        _ = cast(Any, session).spark.sql(text).schema  # analysis is eager for the schema (Spark Connect too)
    else:
        savepoint(session, "EXPLAIN " + text)


def savepoint(session: Session, sql: str) -> list[tuple[Any, ...]]:
    """On PostgreSQL, run ``sql`` so that its failure leaves the surrounding transaction usable."""
    if dialect_of(session) != "postgres":
        return session.execute(sql)
    session.execute("SAVEPOINT __kiban_check")
    try:
        rows = session.execute(sql)
    except BaseException:
        session.execute("ROLLBACK TO SAVEPOINT __kiban_check")
        raise
    session.execute("RELEASE SAVEPOINT __kiban_check")
    return rows


def describe(session: Session, relation: str) -> dict[str, tuple[str, str]]:
    """Lower-case column name → (name, DuckDB type) of ``relation`` (given in DuckDB's quoting)."""
    dialect = dialect_of(session)
    if dialect == DUCKDB:
        rows = [(str(r[0]), str(r[1])) for r in session.execute(f"DESCRIBE {relation}")]
    elif dialect == "postgres":
        found = session.execute(
            "select a.attname, format_type(a.atttypid, a.atttypmod) from pg_attribute a "
            "where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped order by a.attnum", [relation])
        rows = [(str(n), str(t)) for n, t in found]
        rows = list(zip([n for n, _ in rows], canonical([t for _, t in rows], dialect), strict=True))
    else:
        from sqlglot import exp, parse_one

        rows = []
        target = parse_one(relation, read=DUCKDB, into=exp.Table).sql(dialect)
        known = getattr(session, "columns_of", None)  # the engine knows the schema (Spark: the version it wrote)
        described = known(target) if known is not None else None
        for name, kind, *_ in described if described is not None else session.execute("DESCRIBE " + target):
            if not name or str(name).startswith("#"):
                break  # partition information follows
            rows.append((str(name), str(kind)))
        rows = list(zip([n for n, _ in rows], canonical([t for _, t in rows], dialect), strict=True))
    return {name.lower(): (name, kind) for name, kind in rows}


def canonical(types: list[str], dialect: str = DUCKDB) -> list[str]:
    """Type names (in ``dialect``) as DuckDB spells them (``typeof(cast(null as T))``); unknown ones as given."""
    from sqlglot import exp
    from sqlglot.errors import SqlglotError

    out = []
    for name in types:
        text = name
        if dialect != DUCKDB:
            try:
                text = exp.DataType.build(name, dialect=dialect).sql(DUCKDB)
            except (SqlglotError, ValueError):
                out.append(name.upper())
                continue
        with _TYPES_LOCK:
            try:
                out.append(str(_types().execute(f"SELECT typeof(CAST(NULL AS {text}))").fetchone()[0]))  # type: ignore[index]
            except duckdb.Error:
                if dialect == DUCKDB:
                    raise
                out.append(name.upper())
    return out


class TypeSession:
    """A session that only resolves DuckDB type names (contracts judged on another engine's table)."""

    dialect = DUCKDB

    def execute(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with _TYPES_LOCK:
            return _types().execute(sql, params).fetchall()

    def interrupt(self) -> None:
        """Nothing runs long here."""

    def close(self) -> None:
        """The connection is shared."""
