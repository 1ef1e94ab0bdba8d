"""PostgreSQL tables and queries → Arrow batches (docs/connectors/databases.md).

Example ``sources/pos.yml``::

    type: postgres
    url: env:POS_DB_URL            # postgresql://user:password@host:5432/db
    tables:
      orders:
        table: sales.orders        # default: the key (orders), in the search path's schema (public)
        mode: incremental
        cursor: updated_at
        lookback: 10m
        primary_key: [order_id]

Fast path: DuckDB's postgres scanner (binary COPY, filter pushed to the server as a bound parameter).
Fallback: psycopg ``COPY … TO STDOUT (FORMAT CSV)`` parsed by pyarrow's CSV reader block by block, nothing
read ahead (one stream, or several over ctid ranges of one snapshot).

``numeric`` without a precision (or with one past 38) is read as its text on both paths — the scanner would
read a double (rounded past 15–17 digits, NaN as 0) — and the loader casts it exactly (``exact_number``).
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from kiban.collect.connector import ReadContext, exact_number
from kiban.collect.connectors.database import (
    Options,
    SourceRead,
    check_columns,
    connection_error,
    duckdb_with,
    ident,
    literal,
    missing_table,
    plan_of,
    query_error,
    require_url,
    scanned,
    stream,
    use_duckdb,
    where_of,
)
from kiban.quoting import quote as _quote

if TYPE_CHECKING:
    import psycopg
    import pyarrow as pa

__all__ = ["Options", "check", "read"]
EXAMPLE = "postgresql://user:password@host:5432/database"
XMIN = "xmin"  # the system column: the id of the transaction that wrote this version of the row


def _plan(ctx: ReadContext, options: Options) -> SourceRead:
    """The read plan; an unqualified table is in schema public (for both readers, whatever the search path)."""
    plan = plan_of(ctx, options)
    return replace(plan, schema="public") if plan.table is not None and plan.schema is None else plan


def check(ctx: ReadContext, options: Options) -> None:
    """Connect, find the table (or run the query for no rows), check the selected and cursor columns."""
    url = require_url(ctx, "postgres", EXAMPLE)
    plan = _plan(ctx, options)
    if _xmin(ctx) and plan.query is not None:
        raise ctx.error("`version: xmin` reads PostgreSQL's row version of a table, and this table reads a `query:`",
                        "read the table with `table:` (and `select:`), or declare a version column the query returns")
    with _connect(ctx, url, options) as conn:
        check_columns(ctx, plan, [c.name for c in _describe(ctx, conn, plan)])
        if plan.cursor:
            ctx.saw_open_transactions(_open_for(conn))


def _xmin(ctx: ReadContext) -> bool:
    """``version: xmin``: each row's version is PostgreSQL's own — the id of the transaction that wrote it (a
    table cannot have a column of that name, so the landed column ``xmin`` is never a source column's)."""
    return ctx.table.version == XMIN


def _open_for(conn: psycopg.Connection[Any]) -> float | None:
    """Seconds the oldest other transaction on this database has been running (0: none); None when this role
    cannot see other sessions (it needs pg_read_all_stats). A row it writes carries now() — its start — or a
    later time, and becomes visible only when it commits."""
    import psycopg

    try:
        row = conn.execute(
            "select coalesce(extract(epoch from clock_timestamp() - min(xact_start)), 0)::float8, "
            "pg_has_role('pg_read_all_stats', 'member') or (select rolsuper from pg_roles "
            "where rolname = current_user) from pg_stat_activity where pid <> pg_backend_pid() "
            "and datname = current_database() and xact_start is not null").fetchone()
    except psycopg.Error:
        conn.rollback()
        return None
    if not row or not row[1]:
        return None
    return max(0.0, float(row[0]))


def read(ctx: ReadContext, options: Options) -> Iterator[pa.RecordBatch]:
    url = require_url(ctx, "postgres", EXAMPLE)
    plan = _plan(ctx, options)
    # xmin is not a column DuckDB's scanner reads: a table versioned by it is read by COPY
    extension = None if _xmin(ctx) else use_duckdb(ctx, options, "postgres", "psycopg COPY (CSV)")
    if extension is not None:
        yield from _read_duckdb(ctx, plan, url, options, extension)
    else:
        yield from _read_copy(ctx, plan, url, options)


# -- the fast path: DuckDB's scanner ------------------------------------------------------------------------------


def _read_duckdb(ctx: ReadContext, plan: SourceRead, url: str, options: Options,
                 extension: Any) -> Iterator[pa.RecordBatch]:
    import duckdb

    numbers = _exact_columns(ctx, plan, url, options)
    con = duckdb_with(extension)
    try:
        con.execute("set TimeZone = 'UTC'")
        try:
            con.execute(f"attach {literal(_with_timeout(url, options.connect_timeout))} as src "
                        "(type postgres, read_only)")
        except duckdb.Error as exc:
            raise connection_error(ctx, exc, where_of(url)) from None
        params: list[Any] = []
        if numbers is not None:  # the server sends those numbers' text: the read is one statement it runs
            sql = f"select * from postgres_query('src', {literal(numbers[1])})"
        elif plan.query is not None:  # the query runs once; DuckDB filters what it returns
            sql = f"select * from postgres_query('src', {literal(plan.query)})"
            if plan.filtered:
                sql += f" where {plan.condition(ident(plan.cursor or ''), '?')}"
                params.append(plan.since)
        else:
            columns = ", ".join(ident(c) for c in plan.select) or "*"
            sql = f"select {columns} from src.{ident(plan.schema or 'public')}.{ident(plan.table or '')}"
            if plan.filtered:  # a bound parameter; DuckDB pushes the filter into the COPY it sends
                sql = scanned(sql, plan, ident(plan.cursor or ""))
                params.append(plan.since)
        # no ORDER BY here: DuckDB would have to read everything before the first row (the scanner cannot push
        # it down); the loader takes the newest cursor of the whole load, so the order does not matter
        try:
            for batch in stream(con, sql, params, ctx.batch_rows, ctx):
                yield _marked(_utc(batch), numbers[0] if numbers else ())
        except duckdb.Error as exc:
            raise query_error(ctx, plan, exc) from None
    finally:
        con.close()


def _exact(column: Any) -> bool:
    """A ``numeric`` column without a precision, or with more than 38 digits: no Arrow decimal holds it."""
    return column.type_code == NUMERIC and not (column.precision and column.precision <= 38)


def _exact_columns(ctx: ReadContext, plan: SourceRead, url: str,
                   options: Options) -> tuple[tuple[str, ...], str] | None:
    """For the fast path: the columns of the read that are :func:`_exact` numbers, and the statement the server
    runs instead of the scan — those columns as ``::text``, the incremental filter a literal (psycopg's typed
    quoting, as for COPY) — or None when there are none (the scan as usual)."""
    from psycopg import sql

    with _connect(ctx, url, options) as conn:
        described = _describe(ctx, conn, plan)
        if plan.select:
            by_name = {c.name: c for c in described}
            described = [by_name[n] for n in plan.select if n in by_name]
        exact = tuple(c.name for c in described if _exact(c))
        if not exact:
            return None
        items = [sql.SQL("{}::text as {}").format(sql.Identifier(c.name), sql.Identifier(c.name)) if _exact(c)
                 else sql.Identifier(c.name) for c in described]
        query = sql.SQL("select {} from {}").format(sql.SQL(", ").join(items), _relation(plan))
        if plan.filtered:
            query += sql.SQL(" where " + plan.condition("{c}", "{v}")).format(
                c=sql.Identifier(plan.cursor or ""), v=sql.Literal(plan.since))
        return exact, query.as_string(conn)


def _marked(batch: pa.RecordBatch, numbers: tuple[str, ...]) -> pa.RecordBatch:
    """``batch`` with its exact numbers' text columns marked for the loader (:func:`exact_number`)."""
    import pyarrow as pa

    if not numbers:
        return batch
    schema = pa.schema([exact_number(f, "PostgreSQL numeric") if f.name in numbers else f for f in batch.schema])
    return pa.RecordBatch.from_arrays(batch.columns, schema=schema)


def _with_timeout(url: str, seconds: int) -> str:
    if "connect_timeout" in url:
        return url
    if "://" in url:
        return url + ("&" if "?" in url else "?") + f"connect_timeout={seconds}"
    return f"{url} connect_timeout={seconds}"


def _utc(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Timestamps with a time zone are labelled UTC (DuckDB says Etc/UTC: the same instants)."""
    import pyarrow as pa

    fields = [pa.field(f.name, pa.timestamp(f.type.unit, "UTC"), f.nullable)
              if pa.types.is_timestamp(f.type) and f.type.tz and f.type.tz != "UTC" else f for f in batch.schema]
    if all(a is b for a, b in zip(fields, batch.schema, strict=True)):
        return batch
    return batch.cast(pa.schema(fields))


# -- connecting and describing with psycopg (the check, and the fallback) -----------------------------------------


def _connect(ctx: ReadContext, url: str, options: Options) -> psycopg.Connection[Any]:
    import psycopg

    try:
        conn = psycopg.connect(url, connect_timeout=options.connect_timeout, autocommit=False)
    except psycopg.Error as exc:
        raise connection_error(ctx, exc, where_of(url)) from None
    conn.execute("set time zone 'UTC'")
    conn.execute("set datestyle = 'ISO, YMD'")
    return conn


def _relation(plan: SourceRead) -> Any:
    from psycopg import sql

    if plan.query is not None:
        return sql.SQL("({}) as _kiban_query").format(sql.SQL(plan.query))
    table = sql.Identifier(plan.table or "")
    return sql.SQL("{}.{}").format(sql.Identifier(plan.schema), table) if plan.schema else table


def _describe(ctx: ReadContext, conn: psycopg.Connection[Any], plan: SourceRead) -> list[Any]:
    """The result's columns (psycopg ``Column``: name, type_code, precision, scale)."""
    import psycopg
    from psycopg import sql

    if plan.table is not None:
        name = f"{_quote(plan.schema)}.{_quote(plan.table)}" if plan.schema else _quote(plan.table)
        row = conn.execute("select to_regclass(%s)", [name]).fetchone()
        if not row or row[0] is None:
            tables = [r[0] for r in conn.execute(
                "select case when table_schema = current_schema() then table_name "
                "else table_schema || '.' || table_name end from information_schema.tables "
                "where table_schema not in ('pg_catalog', 'information_schema')").fetchall()]
            raise missing_table(ctx, plan, tables)
    try:
        cur = conn.execute(sql.SQL("select * from {} limit 0").format(_relation(plan)))
    except psycopg.Error as exc:
        conn.rollback()
        raise query_error(ctx, plan, exc) from None
    return list(cur.description or [])


# -- the fallback: COPY … (FORMAT CSV) → pyarrow.csv ---------------------------------------------------------------

# PostgreSQL type OIDs → Arrow; anything else is read as its text form
_TYPES: dict[int, str] = {16: "bool", 21: "int16", 23: "int32", 20: "int64", 26: "int64", 700: "float32",
                          701: "float64", 1082: "date", 1114: "timestamp", 1184: "timestamptz", 1083: "time",
                          17: "binary", 1700: "numeric"}
NUMERIC = 1700


def _arrow_type(column: Any) -> pa.DataType:
    import pyarrow as pa

    kind = _TYPES.get(column.type_code, "string")
    if kind == "numeric":
        if not _exact(column):
            return pa.decimal128(column.precision, column.scale or 0)
        return pa.string()  # its exact text (COPY's CSV), cast exactly by the loader
    simple = {"bool": pa.bool_(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
              "float32": pa.float32(), "float64": pa.float64(), "date": pa.date32(), "timestamp": pa.timestamp("us"),
              "timestamptz": pa.timestamp("us"), "time": pa.time64("us"), "binary": pa.string(),
              "string": pa.string()}
    return simple[kind]


CSV_BLOCK = 4 << 20  # at most this much COPY output is parsed at once (a batch's worth of CSV)
CSV_BUDGET = 16 << 20  # parallel streams share this: each parses blocks of at most CSV_BUDGET / streams
FIRST_BLOCK = 256 << 10  # a read's first block, small: it measures the rows' width for the next ones
MIN_BLOCK = 64 << 10


def _csv_blocks(chunks: Iterator[Any], batch_rows: int, most: int) -> Iterator[bytearray]:
    """COPY's output in blocks of whole rows, each about ``batch_rows`` rows and at most ``most`` bytes (plus
    one row): the first block measures how wide a row is. PostgreSQL sends one CopyData message
    per row (protocol: "messages sent from the backend will always correspond to single data rows"), so a block
    ends where a message does. Nothing is read ahead: the next block is read when the last one's batches were
    taken — a slow consumer stops the stream (pyarrow's streaming reader read up to 32 blocks ahead on its own
    threads: the parallel load's peak memory grew with the table; bench/RESULTS.md). Rows are appended to one
    buffer as they come (a list of them would hold an object per row: ~2.5× the bytes)."""
    target = min(FIRST_BLOCK, most)
    block = bytearray()
    rows = 0
    for chunk in chunks:
        block += chunk
        rows += 1
        if len(block) >= target or rows >= batch_rows:
            yield block
            target = max(MIN_BLOCK, min(most, len(block) * batch_rows // rows))
            block, rows = bytearray(), 0
    if rows:
        yield block


@dataclass(frozen=True)
class _Copy:
    """What a COPY read selects and how its CSV becomes Arrow (the same for every stream of a load)."""

    query: Any  # psycopg.sql.Composed: SELECT … FROM relation [WHERE cursor op since] (no ORDER BY)
    names: list[str]
    types: dict[str, pa.DataType]
    final: pa.Schema
    plan: SourceRead


def _copy_of(ctx: ReadContext, conn: psycopg.Connection[Any], plan: SourceRead) -> _Copy:
    import pyarrow as pa
    from psycopg import sql

    described = _describe(ctx, conn, plan)
    if plan.select:
        by_name = {c.name: c for c in described}
        described = [by_name[n] for n in plan.select]
    names = [c.name for c in described]
    items: list[Any] = []
    xmin = _xmin(ctx) and XMIN not in names
    for column in described:
        kind = _TYPES.get(column.type_code, "string")
        name = sql.Identifier(column.name)
        if kind == "timestamptz":  # CSV says "+00"; as a plain UTC timestamp it parses, then is labelled UTC
            items.append(sql.SQL("({} at time zone 'UTC') as {}").format(name, name))
        elif kind == "string" and column.type_code not in (25, 1043, 1042, 19):
            items.append(sql.SQL("{}::text as {}").format(name, name))
        else:
            items.append(name)
    if xmin:  # xid → text → bigint: 32 bits, compared with the key's newest landed version only
        items.append(sql.SQL("xmin::text::bigint as xmin"))
        names.append(XMIN)
    query = sql.SQL("select {} from {}").format(sql.SQL(", ").join(items), _relation(plan))
    if plan.filtered:
        # COPY takes no parameters: psycopg quotes the value as a typed literal (never our own formatting)
        query += sql.SQL(" where " + plan.condition("{c}", "{v}")).format(
            c=sql.Identifier(plan.cursor or ""), v=sql.Literal(plan.since))
    types = {c.name: _arrow_type(c) for c in described}
    final = pa.schema([pa.field(c.name, pa.timestamp("us", "UTC")) if _TYPES.get(c.type_code) == "timestamptz"
                       else pa.field(c.name, pa.binary()) if c.type_code == 17
                       else exact_number(pa.field(c.name, pa.string()), "PostgreSQL numeric") if _exact(c)
                       else pa.field(c.name, types[c.name]) for c in described])
    if xmin:
        types[XMIN] = pa.int64()
        final = final.append(pa.field(XMIN, pa.int64()))
    return _Copy(query, names, types, final, plan)


def _read_copy(ctx: ReadContext, plan: SourceRead, url: str, options: Options) -> Iterator[pa.RecordBatch]:
    streams = options.streams
    if plan.table is not None and streams != 1:
        coordinator = _connect_snapshot(ctx, url, options, None)
        try:
            blocks = _blocks(coordinator, plan)
            if streams is None and blocks * 8192 >= PARALLEL_FROM_BYTES:
                streams = AUTO_STREAMS
            if streams is not None and streams > 1 and blocks > 1:
                yield from _read_parallel(ctx, coordinator, plan, url, options, (streams, blocks))
                return
            copy = _copy_of(ctx, coordinator, plan)
            yield from _copy_batches(ctx, coordinator, copy, _ordered(copy))
            return
        finally:
            coordinator.close()
    with _connect(ctx, url, options) as conn:
        copy = _copy_of(ctx, conn, plan)
        yield from _copy_batches(ctx, conn, copy, _ordered(copy) if plan.cursor else copy.query)


def _ordered(copy: _Copy) -> Any:
    from psycopg import sql

    if not copy.plan.cursor:
        return copy.query
    return copy.query + sql.SQL(" order by {}").format(sql.Identifier(copy.plan.cursor))


def _copy_batches(ctx: ReadContext, conn: psycopg.Connection[Any], copy: _Copy, query: Any,
                  parallel: tuple[threading.Event, int] | None = None) -> Generator[pa.RecordBatch, None, None]:
    """One COPY … (FORMAT CSV) parsed by pyarrow block by block (:func:`_csv_blocks`): batches of at most
    ``ctx.batch_rows`` rows. ``parallel``: the streams' stop event and their number — the streams share
    :data:`CSV_BUDGET`, so their memory does not grow with how many there are."""
    import psycopg
    import pyarrow as pa
    import pyarrow.csv as csv
    from psycopg import sql

    plan = copy.plan
    parse_options = csv.ParseOptions(newlines_in_values=True)
    convert_options = csv.ConvertOptions(column_types=copy.types, null_values=[""], true_values=["t"],
                                         false_values=["f"], strings_can_be_null=True,
                                         quoted_strings_can_be_null=False)
    stop, streams = parallel or (None, 1)
    pool = _stream_pool() if parallel is not None else None
    most = max(MIN_BLOCK, min(CSV_BLOCK, CSV_BUDGET // streams))
    try:
        with conn.cursor().copy(sql.SQL("copy ({}) to stdout (format csv)").format(query)) as stream:
            for block in _csv_blocks(iter(stream), ctx.batch_rows, most):
                if ctx.cancel.is_set() or (stop is not None and stop.is_set()):
                    return
                # one parsing block, one batch (a row longer than a block is no error); the streams are the
                # parallelism: each parses on its own thread
                read_options = csv.ReadOptions(column_names=copy.names, block_size=len(block) + 1,
                                               use_threads=False)
                table = csv.read_csv(pa.py_buffer(block), read_options=read_options, parse_options=parse_options,
                                     convert_options=convert_options, memory_pool=pool)
                del block  # the parsed rows do not refer to it
                for batch in table.to_batches(max_chunksize=ctx.batch_rows):
                    yield _finish(batch, copy.final)
                del table
    except psycopg.Error as exc:
        raise query_error(ctx, plan, exc) from None
    except pa.ArrowInvalid as exc:
        raise query_error(ctx, plan, exc) from None


# -- parallel: several COPY streams over ctid ranges of one snapshot -----------------------------------------------

PARALLEL_FROM_BYTES = 256 << 20  # automatic: a table this big on disk (pg_relation_size) is read in several streams
AUTO_STREAMS = 4
RANGES_PER_STREAM = 4  # ranges are handed out as streams free up: a slow range does not hold the others back
MIN_RANGE_BLOCKS = 256  # 2 MB of pages
_DONE = object()


def _stream_pool() -> Any:
    """The memory pool of a parallel stream's parsing: jemalloc when pyarrow has it. With mimalloc (pyarrow's
    default) the blocks each stream thread frees stayed cached per thread, and the load's peak RSS grew with
    the table (501–552 MB at 10M rows with 4 streams, against 389 MB with jemalloc; bench/RESULTS.md). jemalloc
    returns freed pages at once (decay 0; only these streams use its pool): 318–320 MB against 341–343 MB in two
    interleaved pairs of 10M-row loads, the same CPU."""
    import pyarrow as pa

    try:
        pool = pa.jemalloc_memory_pool()
        pa.jemalloc_set_decay_ms(0)  # freed pages go back to the OS at once: the streams' peaks do not pile up
        return pool
    except NotImplementedError:
        return pa.default_memory_pool()


def _connect_snapshot(ctx: ReadContext, url: str, options: Options,
                      snapshot: str | None) -> psycopg.Connection[Any]:
    """A connection inside a REPEATABLE READ, READ ONLY transaction: its own snapshot (the coordinator's), or
    the exported ``snapshot`` (SET TRANSACTION SNAPSHOT, before any query of the transaction)."""
    import psycopg
    from psycopg import sql

    try:
        conn = psycopg.connect(url, connect_timeout=options.connect_timeout, autocommit=True)
    except psycopg.Error as exc:
        raise connection_error(ctx, exc, where_of(url)) from None
    try:
        conn.execute("begin isolation level repeatable read, read only")
        if snapshot is not None:
            conn.execute(sql.SQL("set transaction snapshot {}").format(sql.Literal(snapshot)))
        conn.execute("set local time zone 'UTC'")
        conn.execute("set local datestyle = 'ISO, YMD'")
    except psycopg.Error as exc:
        conn.close()
        raise connection_error(ctx, exc, where_of(url)) from None
    return conn


def _blocks(conn: psycopg.Connection[Any], plan: SourceRead) -> int:
    """The table's size in pages now (0 for a view: it has no ctid ranges of its own)."""
    name = f"{_quote(plan.schema)}.{_quote(plan.table or '')}" if plan.schema else _quote(plan.table or "")
    row = conn.execute("select c.relkind::text, pg_relation_size(c.oid) / current_setting('block_size')::int "
                       "from pg_class c where c.oid = to_regclass(%s)", [name]).fetchone()
    if not row or row[0] not in ("r", "m"):  # a view or foreign table: one stream
        return 0
    return int(row[1])


def _ranges(blocks: int, streams: int) -> list[tuple[int, int | None]]:
    """ctid page ranges [start, end) covering the table; the last has no end (pages added since are read
    too: rows of the snapshot can only be on pages that existed when it was taken, later ones hold none)."""
    size = max(MIN_RANGE_BLOCKS, -(-blocks // (streams * RANGES_PER_STREAM)))
    starts = list(range(0, blocks, size)) or [0]
    return [(s, starts[i + 1] if i + 1 < len(starts) else None) for i, s in enumerate(starts)]


def _read_parallel(ctx: ReadContext, coordinator: psycopg.Connection[Any], plan: SourceRead, url: str, options: Options,
                   size: tuple[int, int]) -> Iterator[pa.RecordBatch]:
    """``streams`` connections read ctid ranges of the coordinator's exported snapshot into a bounded queue.

    Memory stays flat: each stream holds one CSV block (the streams share :data:`CSV_BUDGET`) and its batch, and
    the queue at most one batch per stream. The coordinator keeps its transaction open — the snapshot can be
    imported only while it is — and reads ranges itself. The first error (or the consumer stopping) stops every
    stream."""
    import queue

    from psycopg import sql

    streams, blocks = size
    pool = _stream_pool()
    copy = _copy_of(ctx, coordinator, plan)
    row = coordinator.execute("select pg_export_snapshot()").fetchone()
    snapshot = str(row[0]) if row else ""
    ranges = _ranges(blocks, streams)
    streams = min(streams, len(ranges))
    todo: queue.SimpleQueue[tuple[int, int | None]] = queue.SimpleQueue()
    for item in ranges:
        todo.put(item)
    out: queue.Queue[Any] = queue.Queue(maxsize=streams)
    stop = threading.Event()
    # every stream imports the snapshot before any reads: the coordinator (stream 0) may finish its ranges and
    # end its transaction first, after which the snapshot could no longer be imported
    conns = [coordinator]
    try:
        for _ in range(streams - 1):
            conns.append(_connect_snapshot(ctx, url, options, snapshot))
    except BaseException:
        for conn in conns[1:]:
            conn.close()
        raise

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work(conn: psycopg.Connection[Any]) -> None:
        # the connection is closed, never committed: a stream stopped in the middle of its COPY leaves the
        # connection busy, and a commit then fails before the close (`with conn:`) — the backend stayed
        try:
            while not stop.is_set():
                try:
                    start, end = todo.get_nowait()
                except queue.Empty:
                    break
                where = sql.SQL("ctid >= {}::tid").format(sql.Literal(f"({start},0)"))
                if end is not None:
                    where += sql.SQL(" and ctid < {}::tid").format(sql.Literal(f"({end},0)"))
                joiner = " and " if plan.filtered else " where "
                batches = _copy_batches(ctx, conn, copy, copy.query + sql.SQL(joiner) + where, (stop, streams))
                try:
                    for batch in batches:
                        if not put(batch):
                            return
                finally:
                    batches.close()  # a COPY stopped midway is cancelled here, on this thread
                pool.release_unused()  # this thread's freed blocks back to the OS: RSS stays flat
        except BaseException as exc:
            put(exc)
        finally:
            conn.close()
            put(_DONE)

    threads = [threading.Thread(target=work, args=(conn,), daemon=True, name=f"kiban-pg-stream-{i}")
               for i, conn in enumerate(conns)]
    for thread in threads:
        thread.start()
    running = len(threads)
    try:
        while running:
            item = out.get()
            if item is _DONE:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            elif ctx.cancel.is_set():
                return
            else:
                yield item
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)


def _finish(batch: pa.RecordBatch, final: pa.Schema) -> pa.RecordBatch:
    import pyarrow as pa

    columns = []
    for column, field in zip(batch.columns, final, strict=True):
        if pa.types.is_binary(field.type):  # bytea's text form is \x followed by hex
            column = pa.array([None if v is None else bytes.fromhex(v[2:]) for v in column.to_pylist()], pa.binary())
        elif column.type != field.type:
            column = column.cast(field.type)
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=final)
