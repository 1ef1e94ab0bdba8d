"""The contract between the loader and the connectors.

A connector reads one table of one source and yields Arrow record batches, in bounded memory
(``ctx.batch_rows`` rows at a time). It never writes to the lake and never touches the state
store: the loader (``kiban.collect.load``) types, de-duplicates, lands and commits what it yields.

Each connector is a module in ``kiban.collect.connectors`` with

- ``Options``: a Pydantic model of its own keys (``extra="forbid"``), validated from the source's
  and the table's leftover keys (the table's win);
- ``check(ctx, options) -> None`` (optional): cheap validation before any data moves (a folder that
  does not exist, a missing cursor column) — raise :class:`SourceError`;
- ``read(ctx, options) -> Iterator[pa.RecordBatch]``: the rows, in batches. Rows it cannot parse go
  to ``ctx.quarantine`` with their location, raw text and reason — never dropped, never a crash.

A number the source keeps exactly and Arrow cannot hold as a decimal of its own (PostgreSQL ``numeric``
without a precision, a precision past 38) is yielded as its exact text, marked with :func:`exact_number`: the
loader casts it to :data:`EXACT_DECIMAL` (or the declared type, or the type the lake table has already) and
quarantines a value that does not fit — never rounded through a double.

File sources add the columns ``_source_file`` and ``_source_line`` (1-based line, or record number);
every connector reports the files it consumed with ``ctx.add_file`` so that a landing folder loads
each file exactly once.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from kiban.collect.secrets import redact
from kiban.errors import KibanError

if TYPE_CHECKING:
    import pyarrow as pa

    from kiban.collect.spec import SourceSpec, TableSpec

CONNECTORS = {
    "files": "kiban.collect.connectors.files",
    "logs": "kiban.collect.connectors.logs",
    "xlsx": "kiban.collect.connectors.xlsx",
    "postgres": "kiban.collect.connectors.postgres",
    "mysql": "kiban.collect.connectors.mysql",
    "sqlite": "kiban.collect.connectors.sqlite",
    "http": "kiban.collect.connectors.http",
}


class SourceError(KibanError):
    """A source cannot be read: bad options, a missing variable, an unreachable server, wrong credentials.

    The message names the source and the table, never a secret (URLs are redacted by the caller's
    ``ctx.redact``)."""

    exit_code = 2

    def __init__(self, source: str, table: str | None, message: str, hint: str | None = None) -> None:
        where = f"source {source}" + (f", table {table}" if table else "")
        super().__init__(f"{where}: {message}", hint)
        self.source, self.table = source, table


EXACT_NUMBER = b"kiban.exact_number"  # Arrow field metadata: this text column is a number; the value: what type
EXACT_DECIMAL = "DECIMAL(38,9)"  # such a column's type in the lake by default (29 integer digits, 9 decimals)


def exact_number(field: pa.Field, source_type: str) -> pa.Field:
    """``field`` (text: the source's exact digits) marked as a number of ``source_type`` (e.g. "PostgreSQL
    numeric") for the loader to cast exactly."""
    return field.with_metadata({**(field.metadata or {}), EXACT_NUMBER: source_type.encode()})


def exact_numbers(schema: pa.Schema) -> dict[str, str]:
    """The columns of ``schema`` marked by :func:`exact_number`: name → the source's type."""
    return {f.name: f.metadata[EXACT_NUMBER].decode() for f in schema if f.metadata and EXACT_NUMBER in f.metadata}


@dataclass(frozen=True)
class BadRow:
    """A row that could not be landed: where it was, what it said, why it was refused."""

    location: str  # "orders.csv:17", "page 3 record 12", "order_id=42"
    raw: str  # the row as the source gave it (text), cut to a sane length by the loader
    reason: str  # "column amount: '12,5' is not a decimal(12,2)", "ragged row: 7 fields, expected 9"
    column: str | None = None
    file: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class LandedFile:
    """A file a load consumed; a landing folder loads each (path, size, sha256) once."""

    path: str  # relative to the project root where possible
    size: int
    sha256: str


@dataclass
class ReadContext:
    """What a connector gets for one load of one table."""

    source_name: str
    table_name: str
    source: SourceSpec
    table: TableSpec
    project_root: Path
    url: str | None = None  # the resolved connection URL (a secret: never log it, use redact())
    # incremental: the last committed cursor value, and the value to read from (cursor minus lookback);
    # read rows with cursor > since (or all rows when since is None)
    cursor: Any = None
    since: Any = None
    batch_rows: int = 100_000
    # databases, incremental: how long (seconds) the oldest transaction open in the source had been running when
    # the read began — rows it commits later may carry a cursor up to that far behind what this load reads.
    # None: not measured (not a database, or the source does not show other sessions' transactions)
    open_for: float | None = None
    open_seen_at: float | None = None  # time.monotonic() when open_for was measured (see saw_open_transactions)
    landed: Callable[[LandedFile], bool] = lambda f: False  # was this exact file committed before?
    landed_paths: frozenset[str] = frozenset()  # paths of files committed before (any content)
    landed_contents: dict[tuple[int, str], str] = field(default_factory=dict)  # (size, sha256) → a path it had
    # on_change: replace — path → the committed loads that read it, and load id → the paths it read
    landed_by: dict[str, frozenset[str]] = field(default_factory=dict)
    load_sources: dict[str, frozenset[str]] = field(default_factory=dict)
    superseded: dict[str, str] = field(default_factory=dict)  # earlier loads this load replaces: id → why
    cancel: threading.Event = field(default_factory=threading.Event)
    bad_rows: list[BadRow] = field(default_factory=list)
    files: list[LandedFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # warnings for the run's output

    def saw_open_transactions(self, seconds: float | None) -> None:
        """Record what the source said of its open transactions, and when: the read's snapshot is taken later,
        and a transaction that began in between is not in the answer — the next load also reads back the time
        that passed from this answer to the end of the read (see ``load.late_commits``)."""
        self.open_for, self.open_seen_at = seconds, time.monotonic()

    def quarantine(self, rows: Iterable[BadRow]) -> None:
        self.bad_rows.extend(rows)

    def add_file(self, landed: LandedFile) -> None:
        self.files.append(landed)

    def supersede(self, load_id: str, why: str) -> None:
        """This load replaces an earlier one (a file it read changed, ``on_change: replace``): the earlier load is
        retracted in this load's commit — never before, never without it."""
        self.superseded[load_id] = why

    def note(self, message: str) -> None:
        self.notes.append(message)

    def redact(self, text: str) -> str:
        """``text`` with the connection URL (and its password) replaced, for messages."""
        return redact(text, self.url)

    def error(self, message: str, hint: str | None = None) -> SourceError:
        return SourceError(self.source_name, self.table_name, self.redact(message), hint)


def connector_module(source_type: str) -> ModuleType:
    """The connector module of a source type (imported on first use)."""
    return importlib.import_module(CONNECTORS[source_type])


def read_batches(ctx: ReadContext) -> Iterator[pa.RecordBatch]:
    """Validate the connector's options, check, then read."""
    module = connector_module(ctx.source.type)
    options = connector_options(ctx.source, ctx.table, module, ctx.source_name, ctx.table_name)
    check = getattr(module, "check", None)
    if check is not None:
        check(ctx, options)
    yield from module.read(ctx, options)


def connector_options(source: SourceSpec, table: TableSpec, module: ModuleType, source_name: str,
                      table_name: str) -> Any:
    from pydantic import ValidationError

    merged = {**source.options, **table.options}
    try:
        return module.Options.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SourceError(source_name, table_name, f"{where}: {first['msg']}") from None
