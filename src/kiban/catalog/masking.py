"""The masked session: personal data is masked where a query reads it, not where its result is shown.

A person's query runs in a fresh in-memory DuckDB. The warehouse is ATTACHed ``READ_ONLY`` under an internal,
unguessable alias, and the session's own catalog gets the schemas ``lake``, ``warehouse`` and ``mart`` whose
objects are *views*: projections of the published relations in which every PII column is replaced by its
mask. Before the query runs, :func:`kiban.catalog.safety.prove_reads` has shown with DuckDB's own parser
that every table reference resolves to one of these views (never to the alias, a file, a table function
that reads, or the system catalog). So every operator of the query — filter, sort, join, aggregate,
UNPIVOT, SUMMARIZE, cast, even an error message — only ever sees masked values.

Masks:
- ``redact`` (the default): one constant for every non-null value. Nothing is learnt from it, not equality,
  not length, not order.
- ``hash`` (``pii: {mask: hash}`` on the column): a keyed HMAC-SHA-256 (first 16 hex digits) with a key kept
  in the state folder (``.kiban/console.key``, 0600). Equal values stay equal, so joins and distinct
  counts work; nobody can compute it for a guess, because the function is internal to the session and the
  key never enters SQL.

NULL stays NULL (whether a value is present is not the value). The session is then locked: no file access
but the lake folder, no spilling, a memory limit and a thread count per query, configuration locked.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiban.catalog.warehouse import SCHEMAS, attach_source, lock_down, new_session, source_alias

if TYPE_CHECKING:
    from kiban.catalog.pii import MaskPlan
    from kiban.project import Project

REDACTED = "•••"
KEY_FILE = "console.key"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def mask_key(project: Project) -> bytes:
    """The project's masking key, made once (0600) in the state folder."""
    path = Path(project.state_dir) / KEY_FILE
    with contextlib.suppress(FileNotFoundError):
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as handle:
        handle.write(secrets.token_bytes(32))
    return path.read_bytes()


@dataclass
class MaskedSession:
    """An open masked session: the connection, and the names to hide from people (the alias, the hash)."""

    con: Any
    alias: str
    hash_function: str

    def clean(self, text: str) -> str:
        """An engine message without the internal names."""
        return text.replace(f"{self.alias}.", "").replace(self.alias, "warehouse").replace(self.hash_function,
                                                                                            "mask")


def _mask_expression(column: str, kind: str | None, hash_function: str) -> str:
    col = quote(column)
    if kind is None:
        return col
    redacted = f"cast({_literal(REDACTED)} as varchar)"
    value = f"{hash_function}(cast({col} as varchar))" if kind == "hash" else redacted
    return f"case when {col} is null then null else {value} end as {col}"


@contextlib.contextmanager
def open_masked(project: Project, relations: Iterable[str], masks: MaskPlan | None,
                *, memory_limit: str | None, threads: int | None) -> Iterator[MaskedSession]:
    """A locked session whose ``lake``/``warehouse``/``mart`` views are the masked ``relations``.

    ``masks`` is a :class:`kiban.catalog.pii.MaskPlan` (or None: every column clear, for people with clearance).
    """
    con = new_session()
    alias = source_alias()
    hash_function = f"__kiban_mask_{secrets.token_hex(6)}"
    try:
        attach_source(con, project, alias)
        wanted = sorted({r.lower() for r in relations})
        found: dict[tuple[str, str], tuple[str, list[str]]] = {}
        if wanted:
            rows = con.execute(
                "select schema_name, table_name, column_name from duckdb_columns() where database_name = ? "
                "and lower(schema_name) in ('lake', 'warehouse', 'mart') order by schema_name, table_name, "
                "column_index", [alias]).fetchall()
            for schema, table, column in rows:
                key = (schema.lower(), table.lower())
                if f"{key[0]}.{key[1]}" in wanted:
                    found.setdefault(key, (table, []))[1].append(column)
        plans = {k: ({} if masks is None else masks.masks(f"{k[0]}.{k[1]}", cols)) for k, (_, cols) in found.items()}
        if any(kind == "hash" for plan in plans.values() for kind in plan.values()):
            secret = mask_key(project)

            def keyed(value: str) -> str:
                return hmac.new(secret, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:16]

            con.create_function(hash_function, keyed, ["VARCHAR"], "VARCHAR")
        ddl = [f"create schema {quote(s)}" for s in SCHEMAS]
        for (schema, _), (table, columns) in sorted(found.items()):
            select = ", ".join(_mask_expression(c, plans[(schema, table.lower())].get(c), hash_function)
                               for c in columns)
            ddl.append(f"create view {quote(schema)}.{quote(table)} as select {select} "
                       f"from {alias}.{quote(schema)}.{quote(table)}")
        con.execute("; ".join(ddl))
        lock_down(con, project, search_path="mart,warehouse,lake", memory_limit=memory_limit, threads=threads)
    except BaseException:
        con.close()
        raise
    try:
        yield MaskedSession(con, alias, hash_function)
    finally:
        con.close()


_reserved: frozenset[str] | None = None


def reserved_names() -> frozenset[str]:
    """Relations DuckDB itself offers without a schema (duckdb_views, pg_class, …): no CTE may take their names."""
    global _reserved
    if _reserved is None:
        con = new_session()
        try:
            rows = con.execute(
                "select lower(view_name) from duckdb_views() where database_name in ('system', 'temp') union "
                "select lower(table_name) from duckdb_tables() where database_name in ('system', 'temp')"
            ).fetchall()
        finally:
            con.close()
        _reserved = frozenset(r[0] for r in rows)
    return _reserved
