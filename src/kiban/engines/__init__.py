"""Engines: where SQL runs (DuckDB by default)."""

from kiban.engines.base import AuditHook, BuildResult, Engine, Session
from kiban.engines.spark import SparkEngine
from kiban.errors import ConfigError


def open_engine(url: str) -> Engine:
    """Open the engine named by a warehouse URL (``duckdb:///path``)."""
    if url.startswith("duckdb:///"):
        from kiban.engines.duckdb import DuckDBEngine

        return DuckDBEngine(url[len("duckdb:///"):])
    if url.startswith(("postgresql://", "postgres://")):
        from kiban.engines.postgres import PostgresEngine

        return PostgresEngine(url)
    if url.startswith(("spark:", "sc://")):
        return SparkEngine(url)
    scheme = url.split(":", 1)[0]
    raise ConfigError(f"unsupported warehouse '{scheme}'",
                      "the warehouse URL starts with duckdb:///, postgresql://, spark: or sc://")


__all__ = ["AuditHook", "BuildResult", "Engine", "Session", "open_engine"]
