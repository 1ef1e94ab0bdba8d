"""Engines: where SQL runs (DuckDB by default)."""

from kiban.engines.base import AuditHook, BuildResult, Engine, Session
from kiban.errors import ConfigError


def open_engine(url: str, timezone: str | None = None) -> Engine:
    """Open the engine named by a warehouse URL (``duckdb:///path``).

    ``timezone`` (the project's ``timezone:``) is set on every session of the engine, so a timestamp with a
    time zone means the same hour, day and date on every engine, whatever the machine's or server's zone.
    """
    if url.startswith("duckdb:///"):
        from kiban.engines.duckdb import DuckDBEngine

        return DuckDBEngine(url[len("duckdb:///"):], timezone=timezone)
    if url.startswith(("postgresql://", "postgres://")):
        from kiban.engines.postgres import PostgresEngine

        return PostgresEngine(url, timezone=timezone)
    if url.startswith(("spark:", "sc://")):
        from kiban.engines.spark import SparkEngine  # its module costs ≈ 10 CPU-ms a process that has no Spark

        return SparkEngine(url, timezone=timezone)
    scheme = url.split(":", 1)[0]
    raise ConfigError(f"unsupported warehouse '{scheme}'",
                      "the warehouse URL starts with duckdb:///, postgresql://, spark: or sc://")


__all__ = ["AuditHook", "BuildResult", "Engine", "Session", "open_engine"]
