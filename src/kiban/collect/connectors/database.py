"""What the database connectors (postgres, mysql, sqlite) share: options, the read plan, errors, DuckDB's scanners.

A table is read either whole (``table:``, optionally schema-qualified) or through a ``query:`` (one SELECT).
Incremental reads push ``cursor >= ?`` (always inclusive: rows at the edge are read again — a change inside the
last cursor value lands, and the loader drops what it landed before by content) into the source's query as a
bound parameter, ordered by the cursor. Before reading, :func:`open_transactions` asks the source how long its
oldest open transaction has been running: the next load reads again that far back. See
docs/connectors/databases.md.

The fast path streams Arrow batches out of DuckDB's postgres / mysql scanners, loaded from the PyPI packages
``duckdb-extension-postgres`` / ``duckdb-extension-mysql`` (never downloaded: auto-install is off, and DuckDB
checks their signatures). When the package is missing or built for another DuckDB, the drivers are used.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kiban.collect.connector import ReadContext, SourceError
from kiban.collect.secrets import safe_url
from kiban.errors import closest
from kiban.quoting import literal

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa


class Options(BaseModel):
    """A database table's own keys (under the table, or under the source as defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str | None = None  # default: the table's key in `tables:`; "schema.table" allowed
    query: str | None = None  # one SELECT instead of a table (its columns are the asset's)
    select: tuple[str, ...] = ()  # only these columns of `table:` (default: all)
    reader: Literal["auto", "duckdb", "driver"] = "auto"  # auto: DuckDB's scanner when installed, else the driver
    connect_timeout: int = Field(default=10, ge=1, le=600)  # seconds
    # PostgreSQL's driver path: read a table over this many connections in ctid ranges of one snapshot
    # (None: automatic — several above PARALLEL_FROM_BYTES when the driver reads; 1: one stream)
    streams: int | None = Field(default=None, ge=1, le=16)

    @model_validator(mode="after")
    def _one_of(self) -> Options:
        if self.table and self.query:
            raise ValueError("give either `table:` or `query:`, not both")
        if self.query is not None and not _SELECT.match(self.query):
            raise ValueError("`query:` must be one SELECT (or WITH … SELECT) statement")
        if self.query and self.select:
            raise ValueError("`select:` picks columns of `table:`; with `query:` list them in the SELECT")
        if self.streams and self.streams > 1 and self.query is not None:
            raise ValueError("`streams:` splits a table into page ranges; a `query:` is read in one stream")
        if self.streams and self.streams > 1 and self.reader == "duckdb":
            raise ValueError("`streams:` is the driver's parallel read; DuckDB's scanner splits a table itself "
                             "(set reader: driver, or leave streams out)")
        return self


_SELECT = re.compile(r"^\s*(\(\s*)*(select|with)\b", re.IGNORECASE)


@dataclass(frozen=True)
class SourceRead:
    """What one read asks the source for."""

    schema: str | None  # None: the connection's default (public, the URL's database, main)
    table: str | None  # None when reading a query
    query: str | None
    select: tuple[str, ...]
    cursor: str | None  # incremental only
    since: Any  # None: everything
    inclusive: bool  # cursor >= since (a look-back) rather than cursor > since

    @property
    def label(self) -> str:
        if self.table is None:
            return "the query"
        return f"table {self.schema}.{self.table}" if self.schema else f"table {self.table}"

    @property
    def operator(self) -> str:
        return ">=" if self.inclusive else ">"

    @property
    def filtered(self) -> bool:
        return self.cursor is not None and self.since is not None

    def condition(self, column: str, placeholder: str) -> str:
        """The incremental filter: rows at or past ``since``, and rows with no cursor value at all — no comparison
        places a NULL, so such a row is read by every load (the loader drops it when that version landed before);
        ``cursor >= since`` alone would read it once, in the first load, and never an insert or update after."""
        return f"({column} {self.operator} {placeholder} or {column} is null)"


def plan_of(ctx: ReadContext, options: Options) -> SourceRead:
    incremental = ctx.table.mode == "incremental"
    cursor = ctx.table.cursor if incremental else None
    inclusive = incremental  # the last cursor value is read again: two changes can share it (same second)
    if options.query is not None:
        return SourceRead(None, None, options.query.strip().rstrip(";"), (), cursor, ctx.since, inclusive)
    name = options.table or ctx.table_name
    schema, _, table = name.rpartition(".")
    return SourceRead(schema or None, table, None, options.select, cursor, ctx.since, inclusive)


def scanned(select: str, plan: SourceRead, column: str) -> str:
    """``select`` (one relation of DuckDB's scanners, no WHERE) with the incremental filter, as two scans whose
    simple filters the scanner pushes into the source — ``cursor >= ?`` and ``cursor is null`` — rather than one
    OR that it would evaluate only after reading the whole table."""
    return f"{select} where {column} {plan.operator} ? union all {select} where {column} is null"


def one_stream(ctx: ReadContext, options: Options, kind: str) -> None:
    """``streams:`` is PostgreSQL's: any other database refuses more than one rather than ignore it."""
    if options.streams and options.streams > 1:
        raise ctx.error(f"`streams: {options.streams}` is not available for {kind} (PostgreSQL only)",
                        "remove `streams:` from this source")


def require_url(ctx: ReadContext, kind: str, example: str) -> str:
    if not ctx.url:
        raise ctx.error(f"no `url:` for this {kind} source", f"add `url: env:NAME` and export NAME={example}")
    return ctx.url


def check_columns(ctx: ReadContext, plan: SourceRead, columns: list[str]) -> None:
    """Before any data moves: the selected columns and the cursor exist (naming similar ones when not)."""
    wanted = [("column", c, "select") for c in plan.select]
    if plan.cursor:
        wanted.append(("cursor column", plan.cursor, "cursor"))
    for what, column, key in wanted:
        if column in columns:
            continue
        near = closest(column, columns)
        hint = (f"did you mean '{near}'? " if near else "") + f"{plan.label} has: {', '.join(columns)[:400]}"
        raise ctx.error(f"{what} {column} (`{key}:`) is not a column of {plan.label}", hint)


def missing_table(ctx: ReadContext, plan: SourceRead, tables: list[str]) -> SourceError:
    wanted = f"{plan.schema}.{plan.table}" if plan.schema else (plan.table or "")
    near = closest(wanted, tables) or closest(plan.table or "", tables)
    hint = (f"did you mean '{near}'? " if near else "") + (
        f"tables there: {', '.join(sorted(tables))[:400]}" if tables else "the database has no tables")
    return ctx.error(f"{plan.label} does not exist", hint)


# -- errors -------------------------------------------------------------------------------------------------------

_UNREACHABLE = re.compile(r"(?i)connection refused|could not connect|can't connect|timeout expired|timed out|"
                          r"no route to host|name or service not known|could not translate host|"
                          r"unknown mysql server host|network is unreachable|server closed the connection")
_CREDENTIALS = re.compile(r"(?i)password authentication failed|access denied|authentication failed|"
                          r"no password supplied|role .* does not exist|no pg_hba.conf entry")
_NO_DATABASE = re.compile(r"(?i)database \S+ does not exist|unknown database")


def connection_error(ctx: ReadContext, exc: BaseException, where: str) -> SourceError:
    """A SourceError for a failed connect: unreachable, wrong credentials, unknown database, or other."""
    text = _first_line(exc)
    if _UNREACHABLE.search(text):
        return ctx.error(f"cannot reach the server at {where}: {text}",
                         "is the server running and the host/port in the URL right? (firewall, VPN)")
    if _CREDENTIALS.search(text):
        return ctx.error(f"the server at {where} refused the credentials: {text}",
                         "check the user and password in the URL's environment variable")
    if _NO_DATABASE.search(text):
        return ctx.error(f"the database in the URL does not exist on {where}: {text}")
    return ctx.error(f"cannot connect to {where}: {text}")


def query_error(ctx: ReadContext, plan: SourceRead, exc: BaseException) -> SourceError:
    text = _first_line(exc)
    if _UNREACHABLE.search(text):
        return ctx.error(f"lost the connection while reading {plan.label}: {text}", "collect again when the "
                         "server is back: nothing of this load was committed")
    hint = "run the query in the database's own client to see why" if plan.query else None
    return ctx.error(f"reading {plan.label} failed: {text}", hint)


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split("\n")[:3]).strip()
    return re.sub(r"\s+", " ", text)[:500] or type(exc).__name__


def where_of(url: str) -> str:
    return safe_url(url)


# -- DuckDB's scanners (the fast path) -----------------------------------------------------------------------------

# The extension packages ship "<name>.duckdb_extension", but DuckDB looks for the init function named after the
# extension's real name: the file must be called "<entrypoint>.duckdb_extension".
_ENTRYPOINTS = {"postgres": "postgres_scanner", "mysql": "mysql_scanner"}


def extension_file(name: Literal["postgres", "mysql"]) -> Path | None:
    """The extension for the installed DuckDB, copied once under the entry point's name; None when absent."""
    import importlib.util

    import duckdb

    version = duckdb.__version__
    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    if spec is None or not spec.submodule_search_locations:
        return None
    shipped = Path(next(iter(spec.submodule_search_locations))) / "extensions" / f"v{version}" / \
        f"{name}.duckdb_extension"
    if not shipped.is_file():
        return None
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kiban" / "duckdb-extensions" / version
    target = cache / f"{_ENTRYPOINTS[name]}.duckdb_extension"
    if target.is_file() and target.stat().st_size == shipped.stat().st_size:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=cache, suffix=".part")  # concurrent loads each copy, one rename wins
    os.close(fd)
    shutil.copyfile(shipped, temporary)
    os.chmod(temporary, 0o644)
    os.replace(temporary, target)
    return target


def use_duckdb(ctx: ReadContext, options: Options, name: Literal["postgres", "mysql"], slow: str) -> Path | None:
    """The extension file when the fast path is to be used; notes (or refuses) when it is missing."""
    if options.reader == "driver":
        return None
    path = extension_file(name)
    if path is None:
        import duckdb

        missing = f"DuckDB's {name} scanner for DuckDB {duckdb.__version__} is not installed"
        if options.reader == "duckdb":
            raise ctx.error(f"{missing} (reader: duckdb)",
                            f"pip install 'duckdb-extension-{name}=={duckdb.__version__}', or set reader: auto")
        ctx.note(f"{missing}: reading with {slow} (slower; pip install "
                 f"'duckdb-extension-{name}=={duckdb.__version__}' for the fast path)")
    return path


def duckdb_with(extension: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one scanner loaded; sorts spill to a temporary folder, not to memory."""
    import duckdb

    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False,
                                 "memory_limit": os.environ.get("KIBAN_COLLECT_MEMORY", "512MB"), "threads": 2})
    con.execute("set enable_progress_bar = false")
    con.execute("set TimeZone = 'UTC'")  # naive timestamps and timestamptz values read the same on any machine
    con.execute(f"load {literal(str(extension))}")
    con.execute(f"set temp_directory = {literal(tempfile.gettempdir() + '/kiban-duckdb-spill')}")
    return con


def stream(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any], batch_rows: int,
           ctx: ReadContext) -> Iterator[pa.RecordBatch]:
    """The result of ``sql`` in batches of at most ``batch_rows`` rows (DuckDB vectors are 2048 rows: batches
    are cut by the reader, memory stays one batch)."""
    reader = con.execute(sql, params).to_arrow_reader(batch_rows)
    for batch in reader:
        if ctx.cancel.is_set():
            return
        if batch.num_rows:
            yield batch


def ident(name: str, quote: str = '"') -> str:
    return quote + name.replace(quote, quote * 2) + quote
